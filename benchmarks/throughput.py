"""Training throughput of the packed engine against a plain torch step, in one process.

For each model, method, pack size R and precision, prints one JSON object per line:
  device, model, method, pack, precision, channels_last, threads, batch,
  ms_per_step          one packed step (all R runs), evaluation excluded,
  ms_per_run_step      ms_per_step / R,
  raw_ms_per_step      a plain torch step of ONE unpacked model (cross-entropy + Nesterov SGD,
                       same batch, device, precision and layout), measured in this process,
  ratio                ms_per_run_step / raw_ms_per_step (the engine's cost per run vs plain torch),
  prior_ms, prior_fraction   the prior term (log p, its gradient and the preconditioner, fused,
                       for all R runs) alone, and its share of the packed step,
  alone_ms_per_step    the same R runs as R packs of one, each stepped in turn (one engine
                       step of every run), and packed_speedup = alone_ms_per_step / ms_per_step
                       (null for packs over `--alone-up-to`),
  stacked              whether the backbone was stacked (vmap) rather than packed by channel
                       (`--packing stacked` stacks one that could be packed, to compare the two).
Ratios measured in one run are what to compare on a noisy machine. Data and prior are synthetic
(a rank-K prior around the initial weights with SWAG-sized variances): speed does not depend on
their values. Usage:
    python benchmarks/throughput.py                          # CPU: small_resnet, R = 1, 2, 4, 8
    python benchmarks/throughput.py --device cuda --model resnet50 --packs 1,8,16 --precision bf16
    python benchmarks/throughput.py --model torchvision:densenet121 --image-size 32 --packs 4
    python benchmarks/throughput.py --device cuda --model resnet50 --packing stacked --packs 16
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from bprior_core.data.device import DeviceTask
from bprior_core.priors.gaussian import GaussianPrior
from bprior_core.training.models import build_model, flat_parameters
from bprior_core.training.pack import Pack
from bprior_core.training.run import TrainSettings
from bprior_core.training.spec import RunSpec
from bprior_core.vocabulary import METHODS

SHAPES = {"small_resnet": ((1, 28, 28), 5), "resnet50": ((3, 224, 224), 102)}
IMAGE_SIZE = 32  # torchvision:<name> models: RGB images of this side (--image-size), 10 classes
SHAPE_OVERRIDE = {"image_size": IMAGE_SIZE}


def shape_of(model_name: str) -> tuple[tuple[int, ...], int]:
    """(input shape, classes) of a model's benchmark data."""
    side = SHAPE_OVERRIDE["image_size"]
    return SHAPES.get(model_name, ((3, side, side), 10))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, warmup: int, steps: int) -> float:
    """Mean milliseconds per call of fn(k) after `warmup` calls."""
    for k in range(warmup):
        fn(k)
    _sync(device)
    start = time.perf_counter()
    for k in range(warmup, warmup + steps):
        fn(k)
    _sync(device)
    return (time.perf_counter() - start) * 1e3 / steps


def raw_step_ms(model_name, batch, device, precision, channels_last, warmup, steps) -> float:
    """A plain torch training step of one unpacked model: the baseline."""
    shape, classes = shape_of(model_name)
    model = build_model(model_name, classes).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, *shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, classes, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

    def step(_k):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        opt.step()

    return _timed(step, device, warmup, steps)


class _Opaque(nn.Module):
    """A backbone behind a module the packer does not know, so that it is stacked (vmap)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def _pack(model_name, method, runs, batch, device, precision, channels_last, rank,
          alone: bool = False, stacked: bool = False):
    """A pack of `runs` runs, or (alone) a list of `runs` packs of one run each; `stacked`
    stacks the backbone even where it could be packed by channels."""
    shape, classes = shape_of(model_name)
    torch.manual_seed(0)
    model = build_model(model_name, classes)
    if stacked:
        model.backbone = _Opaque(model.backbone)
    mean = flat_parameters(model.backbone).detach()
    gen = torch.Generator().manual_seed(0)
    prior = GaussianPrior(mean, torch.rand(mean.shape, generator=gen) * 1e-6 + 1e-7,
                          1e-4 * torch.randn(rank, mean.numel(), generator=gen)).to(device)
    pool_size = max(64, batch)
    pool = DeviceTask(torch.randn(pool_size, *shape, device=device),
                      torch.randint(0, classes, (pool_size,), device=device), classes)
    settings = TrainSettings(steps=10_000, batch_size=batch, lr=1e-3, temperature=1e-3,
                             cycles=4, samples_per_cycle=1)
    specs = [RunSpec(torch.arange(pool_size), seed, None if method == "sgd" else prior)
             for seed in range(runs)]
    if alone:
        return [Pack(model, pool, pool, method, settings, [s], device, precision, channels_last)
                for s in specs]
    return Pack(model, pool, pool, method, settings, specs, device, precision, channels_last)


def measure(args, model_name, method, runs, precision, device) -> dict:
    channels_last = args.channels_last == "on" or (args.channels_last == "auto"
                                                  and device.type in ("cuda", "cpu"))
    stacked = args.packing == "stacked"
    pack = _pack(model_name, method, runs, args.batch, device, precision, channels_last,
                 args.rank, stacked=stacked)
    ms = _timed(pack.step, device, args.warmup, args.steps)
    prior_ms = 0.0
    if pack.prior is not None:
        weight = 1.0 / pack.num_data
        theta, grad = pack.weights[:, : pack.dim], pack.grads[:, : pack.dim]
        term = (pack.precond.prior_step_ if pack.precond is not None
                else pack.prior.add_neg_log_prob_grad_)
        prior_ms = _timed(lambda _k: term(theta, grad, weight), device, 2, args.steps)
    raw = raw_step_ms(model_name, args.batch, device, precision, channels_last, args.warmup,
                      args.steps)
    alone_ms = None  # not measured
    if args.alone_up_to is None or runs <= args.alone_up_to:
        singles = _pack(model_name, method, runs, args.batch, device, precision, channels_last,
                        args.rank, alone=True, stacked=stacked)

        def one_by_one(k: int) -> None:
            for single in singles:
                single.step(k)

        alone_ms = _timed(one_by_one, device, args.warmup, args.steps)
    return {
        "device": str(device), "model": model_name, "method": method, "pack": runs,
        "precision": precision, "channels_last": pack.net.channels_last,
        "threads": torch.get_num_threads(), "batch": args.batch,
        "ms_per_step": round(ms, 3), "ms_per_run_step": round(ms / runs, 3),
        "raw_ms_per_step": round(raw, 3), "ratio": round(ms / runs / raw, 3),
        "prior_ms": round(prior_ms, 3), "prior_fraction": round(prior_ms / ms, 4),
        "alone_ms_per_step": alone_ms and round(alone_ms, 3),
        "packed_speedup": alone_ms and round(alone_ms / ms, 3),
        "stacked": pack.net.stacked,
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line (also checked by tests/test_gpu_session.py)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, or both (default: cpu, and cuda when present)")
    parser.add_argument("--model", default="small_resnet",
                        help="small_resnet, resnet50 or torchvision:<name>")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE,
                        help="side of the RGB images for torchvision:<name> models")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--packs", default="1,2,4,8")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or both: fp32,bf16")
    parser.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                        help="auto: as the engine (on for CUDA and CPU)")
    parser.add_argument("--packing", default="auto", choices=("auto", "stacked"),
                        help="auto: as the engine (channels where it can); stacked: vmap always")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--alone-up-to", type=int, default=None,
                        help="time the runs one by one only for packs of at most this many "
                             "(default: every pack; a pack of 64 is 64 packs of one)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    SHAPE_OVERRIDE["image_size"] = args.image_size
    torch.backends.cudnn.benchmark = True
    devices = (args.device.split(",") if args.device
               else ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    for name in devices:
        device = torch.device(name)
        for precision in args.precision.split(","):
            for method in args.methods.split(","):
                for runs in (int(r) for r in args.packs.split(",")):
                    try:
                        row = measure(args, args.model, method, runs, precision, device)
                    except (torch.OutOfMemoryError, RuntimeError) as exc:  # OOM, or vmap
                        row = {"device": name, "model": args.model, "method": method,
                               "pack": runs, "precision": precision, "error": repr(exc)[:200]}
                    print(json.dumps(row), flush=True)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
