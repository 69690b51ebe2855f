"""What one run of a pack is (`RunSpec`: seed, subset, prior, learning rate, ...) and what it
returns (`RunOutcome`), with the checks a pack makes of its runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..priors.gaussian import GaussianPrior, check_covers
from ..settings import PRECISIONS
from ..sgmcmc.schedules import CosineSchedule, CyclicalSchedule, Schedule
from ..vocabulary import METHODS, PRIORLESS_METHODS, SAMPLER_METHODS
from .models import Classifier, prior_parameters

CHAIN_STRIDE = 1_000_003  # seed offset between chains of one run


@dataclass(frozen=True)
class RunSpec:
    """What one run of a pack owns. `None` hyper-parameters take the pack's settings."""

    train_indices: torch.Tensor
    seed: int
    prior: GaussianPrior | None = None
    init_state: Mapping[str, torch.Tensor] | None = None
    lr: float | None = None
    weight_decay: float | None = None
    temperature: float | None = None
    chain: int = 0  # another chain on the same data: own batch order, head init and noise
    # pool indices of the run's own held-out images (a training subset's split for selection,
    # scored as `RunOutcome.heldout_*`), or None
    heldout: torch.Tensor | None = None

    def stream_seed(self, offset: int) -> int:
        """Seed of one of the run's random streams (0: batches and head, 1: noise, 2: BatchNorm
        refresh); chain c > 0 shifts all of them, chain 0 keeps the seed's own."""
        return self.seed + offset + CHAIN_STRIDE * self.chain


@dataclass
class RunOutcome:
    """What one run produced: status, test metrics of the final iterate and of the model
    average, and the same on the validation set (None without one)."""

    status: str
    final: dict[str, float] | None
    bma: dict[str, float] | None
    n_samples: int
    steps_done: int
    final_loss: float | None
    wall_time_s: float
    diagnostics: dict[str, Any] = field(default_factory=dict)
    val_final: dict[str, float] | None = None
    val_bma: dict[str, float] | None = None
    # the headline prediction's probabilities (model average, else final iterate), float16,
    # with the labels: what later analyses (bootstraps over test points, ensembles) need
    predictions: dict[str, Any] | None = None
    # the test set's reliability-diagram bins (`metrics.reliability_bins`) of each prediction
    reliability: dict[str, Any] | None = None
    # metrics on the run's own held-out images (`RunSpec.heldout`), None without them
    heldout_final: dict[str, float] | None = None
    heldout_bma: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "predictions"}


def make_schedule(method: str, settings) -> Schedule:
    """The cyclical schedule of the samplers, or one cosine decay for SGD."""
    if method in SAMPLER_METHODS:
        s = settings
        return CyclicalSchedule(s.steps, s.cycles, s.lr, s.explore_fraction,
                                s.samples_per_cycle, s.burn_in_cycles)
    return CosineSchedule(settings.steps, settings.lr)


def _per_run(specs: Sequence[RunSpec], name: str, default: float, device) -> torch.Tensor:
    values = [default if getattr(s, name) is None else getattr(s, name) for s in specs]
    return torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1)


def _check_pack(method: str, specs: Sequence[RunSpec], model: Classifier, precision: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if not specs:
        raise ValueError("a pack needs at least one run")
    dim = sum(p.numel() for p in prior_parameters(model.backbone))
    for i, spec in enumerate(specs):
        if method not in PRIORLESS_METHODS and spec.prior is None:
            raise ValueError(f"method {method!r} needs a prior (run {i} has none); only "
                             f"{' and '.join(repr(m) for m in PRIORLESS_METHODS)} run without "
                             "one")
        if spec.prior is not None:
            check_covers(spec.prior, dim, f"the prior of run {i}")
