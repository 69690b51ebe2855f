"""GPU check at the paper's scale: ResNet-50 (D = 23,508,032) with a rank-5 prior in the authors'
four-file format, every method for a few steps on synthetic 224x224 data held on the device,
and the time per step with and without the prior term.

Usage: python benchmarks/gpu_check.py [--device cuda] [--steps 40] [--image-size 224]. Prints one
line per check (`--image-size 32 --steps 4`: a quick run of the same code on a CPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from bprior_core.data.tasks import TensorTask
from bprior_core.priors.files import (
    load_authors_model_state,
    load_authors_prior,
    save_authors_prior,
)
from bprior_core.priors.gaussian import GaussianPrior, rescale
from bprior_core.training.models import build_model, flat_parameters, num_prior_parameters
from bprior_core.training.run import TrainSettings, train_and_evaluate


def synthetic_prior(model, rank: int, gen: torch.Generator) -> GaussianPrior:
    mean = flat_parameters(model.backbone).detach().cpu()
    variance = torch.rand(mean.numel(), generator=gen) * 1e-4 + 1e-6
    factor = torch.randn(rank, mean.numel(), generator=gen) * 1e-3
    return GaussianPrior(mean, variance, factor)


def build_parser() -> argparse.ArgumentParser:
    """The command line (also checked by tests/test_gpu_session.py)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=224)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        print("device:", torch.cuda.get_device_name(device), "torch", torch.__version__)
    gen = torch.Generator().manual_seed(0)
    model = build_model("resnet50", 102)
    print("D =", num_prior_parameters(model.backbone))

    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"{tmp}/resnet50_synthetic"
        save_authors_prior(synthetic_prior(model, 5, gen), prefix, model.backbone.state_dict())
        prior = load_authors_prior(prefix, rank=5)
        state = load_authors_model_state(prefix)
    print("authors' files round trip: rank", prior.rank, "dim", prior.dim)

    side = args.image_size
    images = torch.randn(64, 3, side, side, generator=gen)
    labels = torch.randint(0, 102, (64,), generator=gen)
    train = TensorTask(images[:32], labels[:32], 102)
    test = TensorTask(images[32:], labels[32:], 102)
    settings = TrainSettings(steps=args.steps, batch_size=16, lr=0.01, cycles=2,
                             samples_per_cycle=1, temperature=1e-3,
                             bn_refresh_batches=2, eval_batch_size=32)
    timings = {}
    for method in ("sgd", "sgd_prior", "sgld", "sghmc"):
        model = build_model("resnet50", 102)
        model.backbone.load_state_dict(state)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = train_and_evaluate(model, train, test, method, settings, rescale(prior, 1e5),
                                 seed=0, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings[method] = (time.perf_counter() - start) / args.steps
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        print(f"{method:10s} status={out.status} samples={out.n_samples} "
              f"final_acc={out.final and round(out.final['accuracy'], 3)} "
              f"{timings[method] * 1e3:.1f} ms/step (incl. evaluation) peak {peak:.2f} GiB")
    print(f"prior term overhead (sgd_prior / sgd time per step): "
          f"{timings['sgd_prior'] / timings['sgd']:.2f}x")
    per_step = timings["sghmc"]
    print(f"estimate for one 30,000-step Flowers-102 run: {per_step * 30000 / 60:.0f} min")


if __name__ == "__main__":
    main()
