"""How much arithmetic a finished study's runs did, and the least time it needs on a machine.

For every stored run record of a study (`outputs/<profile>/runs/*.json`) it counts forward-pass
equivalents of one image through the profile's network, from what the run did:

- training: `steps_done x batch x 3` (a forward and a backward pass, about twice the
  forward's arithmetic; the batch is `batch_size`, or all `n_train` images where there are
  fewer, as the engine draws them); a linear probe trains its head on a frozen backbone: `x 1`;
- evaluation: one per sample of a sampler (`n_samples`), else one, each a BatchNorm refresh
  (at most `bn_refresh_batches` batches, as many as the training images fill) and a pass over
  the run's stored test and validation predictions (their lengths read from its predictions
  file).

One forward pass costs the FLOPs torch's `FlopCounterMode` counts for the profile's model (a
multiply-add is 2 FLOPs). With the rates measured here (GFLOP/s of one core: a packed training
step and a fused evaluation pass, as the study runs them) the least wall clock of the study's
runs on `--cores` cores follows: the arithmetic divided by the rates, every core busy all the
time. It says whether a time target can be met by a faster engine at all, or needs less
arithmetic (fewer or shorter runs, fewer or smaller evaluations). Prior learning and the
reference experiment (HMC and its comparisons on the head's fixed features, not the network)
are not counted; the reference's run-seconds are listed beside.

    python benchmarks/arithmetic.py --outputs outputs/cpu
    python benchmarks/arithmetic.py --outputs outputs/cpu --train-gflops 31 --eval-gflops 55
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import torch
from throughput import _timed  # the benchmark beside this one

from bprior_core.training.models import build_model
from bprior_core.training.pack import fused_for_inference
from bprior_core.training.packing import PackedClassifier


def forward_flops(model_name: str, image: tuple[int, ...], classes: int) -> float:
    """FLOPs of one image through the model (backbone and head), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(model_name, classes).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *image))
    return float(counter.get_total_flops())


def measured_rates(model_name: str, image: tuple[int, ...], classes: int, flops: float,
                   runs: int = 4, batch: int = 16, chunk: int = 32) -> tuple[float, float]:
    """GFLOP/s of one thread for a packed training step (forward, backward, SGD update) and a
    fused evaluation pass of `runs` runs, as the engine packs them."""
    torch.set_num_threads(1)
    net = PackedClassifier(build_model(model_name, classes), runs, channels_last=True)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(runs, batch, *image)
    y = torch.randint(0, classes, (runs, batch))

    def step(_: int) -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x).flatten(0, 1), y.flatten()).backward()
        opt.step()

    cpu = torch.device("cpu")
    train_ms = _timed(step, cpu, warmup=5, steps=30)
    net.eval()
    fused = fused_for_inference(net.backbone)
    folded = net.fold(torch.randn(runs, chunk, *image))
    with torch.no_grad():
        eval_ms = _timed(lambda _: net.head_logits(fused(folded)), cpu, warmup=5, steps=30)
    return (3 * runs * batch * flops / train_ms / 1e6, runs * chunk * flops / eval_ms / 1e6)


def run_images(record: dict, folder: Path) -> tuple[float, float]:
    """Forward-pass equivalents (images) of one run's training and of its evaluations."""
    cfg, train = record["config"], record["config"]["train"]
    passes = 1 if cfg["method"] == "probe" else 3
    batch = min(train["batch_size"], cfg["n_train"])
    training = (record.get("steps_done") or 0) * batch * passes
    evaluated = 0
    if record.get("predictions"):
        with np.load(folder / record["predictions"]) as stored:
            evaluated = sum(len(stored[key]) for key in stored.files if key.endswith("labels"))
    refresh = min(train.get("bn_refresh_batches", 1), -(-cfg["n_train"] // batch)) * batch
    evaluations = max(1, record.get("n_samples") or 1)
    return float(training), float(evaluations * (evaluated + refresh))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", required=True, help="a study's folder, e.g. outputs/cpu")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--train-gflops", type=float, help="rate of a packed training step")
    parser.add_argument("--eval-gflops", type=float, help="rate of a fused evaluation pass")
    args = parser.parse_args()
    folder = Path(args.outputs) / "runs"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    reference = sum(r.get("wall_time_s") or 0.0 for r in records
                    if r["config"]["experiment"] == "reference")
    records = [r for r in records if r.get("status") == "ok" and "train" in r["config"]
               and r["config"]["experiment"] != "reference"]
    if not records:
        raise SystemExit(f"no trained run records in {folder}")
    model = records[0]["config"]["model"]
    image, classes = (1, 28, 28), 5
    with np.load(folder / next(r for r in records if r.get("predictions"))["predictions"]) as p:
        classes = p[[k for k in p.files if k.endswith("log_probs")][0]].shape[-1]
    flops = forward_flops(model, image, classes)
    rates = (args.train_gflops, args.eval_gflops)
    if None in rates:
        rates = measured_rates(model, image, classes, flops)
    parts: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in records:
        cfg = r["config"]
        train_images, eval_images = run_images(r, folder)
        part = parts[f"{cfg['experiment']}/{cfg.get('phase') or 'single'}/{cfg['method']}"]
        part[0] += train_images * flops / 1e12
        part[1] += eval_images * flops / 1e12
        part[2] += r.get("wall_time_s") or 0.0
    train_tf, eval_tf = (sum(p[i] for p in parts.values()) for i in (0, 1))
    least_s = (train_tf * 1e3 / rates[0] + eval_tf * 1e3 / rates[1]) / args.cores
    print(json.dumps({
        "model": model, "forward_mflop_per_image": round(flops / 1e6, 2), "runs": len(records),
        "train_tflop": round(train_tf, 1), "eval_tflop": round(eval_tf, 1),
        "train_gflops_per_core": round(rates[0], 1), "eval_gflops_per_core": round(rates[1], 1),
        "cores": args.cores, "least_seconds": round(least_s),
        "run_seconds": round(sum(p[2] for p in parts.values())),
        "reference_run_seconds": round(reference),
        "by_part_tflop_train_eval_runseconds": {
            k: [round(v, 1) for v in p] for k, p in sorted(parts.items(),
                                                          key=lambda kv: -kv[1][0] - kv[1][1])},
    }, indent=1))


if __name__ == "__main__":
    main()
