"""One downstream run: data subset + model + prior + method + seed -> metrics.

Loss (all methods) = mean cross-entropy over the batch - log p(theta_backbone) / N
                     + weight_decay / 2 * ||head||^2,
with N the downstream training-set size. The head has no prior term (a fresh linear layer); it
gets plain weight decay. Method `sgd` has no prior term: it is ordinary fine-tuning with weight
decay on every parameter. Methods:
- `sgd`:       SGD (Nesterov momentum) with a cosine learning rate, weight decay, no prior.
- `sgd_prior`: the same optimiser on the loss with the prior: the MAP estimate.
- `sgld`, `sghmc`: the cyclical samplers of `bprior_core.samplers`; predictions are the Bayesian
  model average (mean of softmax probabilities) over the collected samples, each sample evaluated
  with its own BatchNorm statistics recomputed on the training set.
A non-finite loss stops the run and marks it `diverged` instead of raising.

Gradient clipping (`grad_clip`, off unless set) caps the norm of the BACKBONE's gradient only. The
authors clip the whole gradient at norm 2 because a tight prior (small scale) is stiff: the prior's
curvature 1/(N * variance) makes explicit steps unstable. Clipping the head too would let the
prior's huge gradient starve the head of updates; clipping only the backbone lets a tight prior
freeze the backbone near its mean (as the prior asks) while the head still learns.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import TensorTask, eval_batches, infinite_batches
from .metrics import classification_metrics
from .models import Classifier, flat_parameters, num_prior_parameters, refresh_batchnorm
from .prior import GaussianPrior
from .samplers import SGHMC, SGLD, CosineSchedule, CyclicalSchedule

METHODS = ("sgd", "sgd_prior", "sgld", "sghmc")
BAYESIAN_METHODS = ("sgld", "sghmc")


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one downstream run (the profile's `train` section)."""

    steps: int = 300
    batch_size: int = 16
    lr: float = 0.01
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = True
    temperature: float = 1.0
    cycles: int = 4
    explore_fraction: float = 0.5
    samples_per_cycle: int = 1
    grad_clip: float | None = None
    bn_refresh_batches: int = 8
    eval_batch_size: int = 500

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0 and math.isfinite(self.lr),
            "weight_decay": self.weight_decay >= 0,
            "momentum": 0 <= self.momentum < 1,
            "temperature": self.temperature >= 0,
            "cycles": 1 <= self.cycles <= self.steps,
            "explore_fraction": 0 <= self.explore_fraction < 1,
            "samples_per_cycle": self.samples_per_cycle >= 1,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "bn_refresh_batches": self.bn_refresh_batches >= 1,
            "eval_batch_size": self.eval_batch_size >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                "invalid training settings: "
                + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
                + " (need steps, batch_size >= 1; lr > 0; weight_decay, temperature >= 0; "
                "0 <= momentum < 1; 1 <= cycles <= steps; 0 <= explore_fraction < 1; "
                "grad_clip > 0 or null)"
            )


@dataclass
class RunOutcome:
    """What one run produced: status, metrics of the final iterate and of the model average."""

    status: str
    final: dict[str, float] | None
    bma: dict[str, float] | None
    n_samples: int
    steps_done: int
    final_loss: float | None
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def predict_probs(
    model: nn.Module, data, batch_size: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (on the CPU) and labels over one ordered pass in eval mode."""
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for x, y in eval_batches(data, batch_size, device):
        probs.append(torch.softmax(model(x).float(), dim=-1).cpu())
        labels.append(y.cpu())
    model.train(was_training)
    return torch.cat(probs), torch.cat(labels)


def _loss(
    model: Classifier, x, y, prior: GaussianPrior | None, num_data: int, weight_decay: float
) -> torch.Tensor:
    loss = F.cross_entropy(model(x), y)
    if prior is not None:
        loss = loss - prior.log_prob(flat_parameters(model.backbone)) / num_data
        decayed = list(model.head.parameters())
    else:
        decayed = list(model.parameters())
    if weight_decay:
        loss = loss + 0.5 * weight_decay * sum((p * p).sum() for p in decayed)
    return loss


def _make_optimizer(method: str, model: nn.Module, s: TrainSettings, num_data: int, gen):
    params = [p for p in model.parameters() if p.requires_grad]
    if method in ("sgd", "sgd_prior"):
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov)
    if method == "sgld":
        return SGLD(params, lr=s.lr, num_data=num_data, temperature=s.temperature, generator=gen)
    return SGHMC(
        params, lr=s.lr, num_data=num_data, momentum=s.momentum, temperature=s.temperature,
        generator=gen,
    )


def _make_schedule(method: str, s: TrainSettings):
    if method in BAYESIAN_METHODS:
        return CyclicalSchedule(s.steps, s.cycles, s.lr, s.explore_fraction, s.samples_per_cycle)
    return CosineSchedule(s.steps, s.lr)


def _sample_probs(model, train_data, test_data, s: TrainSettings, gen, device) -> torch.Tensor:
    """Test probabilities of the current weights with BatchNorm statistics of their own."""
    sample = copy.deepcopy(model)
    batches = infinite_batches(train_data, s.batch_size, gen, device)
    n_batches = min(s.bn_refresh_batches, max(1, math.ceil(len(train_data) / s.batch_size)))
    refresh_batchnorm(sample, (next(batches)[0] for _ in range(n_batches)))
    return predict_probs(sample, test_data, s.eval_batch_size, device)[0]


def train_and_evaluate(
    model: Classifier,
    train_data: TensorTask,
    test_data: TensorTask,
    method: str,
    settings: TrainSettings,
    prior: GaussianPrior | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> RunOutcome:
    """Train `model` (backbone already holding the initial weights) on `train_data` and evaluate.

    The head is re-initialised from `seed`; batches and sampler noise are drawn from generators
    seeded with `seed`, so a CPU run is bit-for-bit repeatable. Subnormal floats are flushed to
    zero during the run (tiny prior variances otherwise hit slow subnormal arithmetic on CPUs);
    the default (off) is restored afterwards.
    """
    torch.set_flush_denormal(True)
    try:
        return _run(model, train_data, test_data, method, settings, prior, seed, device, progress)
    finally:
        torch.set_flush_denormal(False)


def _run(model, train_data, test_data, method, settings, prior, seed, device, progress):
    """The body of `train_and_evaluate`."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if method != "sgd" and prior is None:
        raise ValueError(f"method {method!r} needs a prior; only 'sgd' runs without one")
    if prior is not None and prior.dim != num_prior_parameters(model.backbone):
        raise ValueError(
            f"prior has D={prior.dim} parameters but the model's backbone has "
            f"{num_prior_parameters(model.backbone)}"
        )
    start = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(seed)
    model.head.reset_parameters()
    model.to(device).train()
    prior = None if method == "sgd" else prior.to(device)
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    num_data = len(train_data)
    optimizer = _make_optimizer(method, model, settings, num_data, noise_gen)
    schedule = _make_schedule(method, settings)
    batches = infinite_batches(train_data, settings.batch_size, data_gen, device)
    sample_sum: torch.Tensor | None = None
    n_samples, loss_value = 0, None

    def diverged(steps_done: int) -> RunOutcome:
        return RunOutcome("diverged", None, None, n_samples, steps_done, loss_value,
                          time.perf_counter() - start)

    steps = range(settings.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=method, leave=False)
    for k in steps:
        plan = schedule.at(k)
        for group in optimizer.param_groups:
            group["lr"] = plan.lr
        x, y = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = _loss(model, x, y, prior, num_data, settings.weight_decay)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            return diverged(k)
        loss.backward()
        if settings.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.backbone.parameters(), settings.grad_clip)
        if method in BAYESIAN_METHODS:
            optimizer.step(noise=plan.noise)
            if plan.collect:
                probs = _sample_probs(model, train_data, test_data, settings, data_gen, device)
                if not torch.isfinite(probs).all():
                    return diverged(k + 1)
                sample_sum = probs if sample_sum is None else sample_sum + probs
                n_samples += 1
        else:
            optimizer.step()

    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return diverged(settings.steps)
    probs, labels = predict_probs(model, test_data, settings.eval_batch_size, device)
    if not torch.isfinite(probs).all():
        return diverged(settings.steps)
    final = classification_metrics(probs, labels)
    bma = None
    if sample_sum is not None:
        bma = classification_metrics(sample_sum / n_samples, labels)
    return RunOutcome(
        "ok", final, bma, n_samples, settings.steps, loss_value, time.perf_counter() - start
    )
