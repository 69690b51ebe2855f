"""Per-run diagnostics of a step: the share of coordinates the prior step frees, the test points
the samplers disagreement is measured on."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

DEFAULT_STEP_CAP = 0.05  # `TrainSettings.prior_step_cap`'s default: the free share's yardstick


def free_share(diagonal: torch.Tensor, lr: float, num_data: float, cap: float) -> float:
    """The share of coordinates whose prior variance is at least lr / (cap N): those the
    preconditioner M = a Sigma (I + a Sigma)^-1, a = cap N / lr, leaves at least half of a plain
    step (on the diagonal, a sigma^2 >= 1); the rest are pinned near the prior's mean."""
    return float((diagonal >= lr / (cap * num_data)).double().mean())


DIAGNOSTIC_POINTS = 500


def diagnostic_points(n_test: int) -> torch.Tensor:
    """The test points whose per-sample probabilities are kept for convergence diagnostics:
    every ceil(n_test / DIAGNOSTIC_POINTS)-th, a fixed spread subset (all of a small set)."""
    stride = max(1, math.ceil(n_test / DIAGNOSTIC_POINTS))
    return torch.arange(0, n_test, stride)


def sample_disagreement(classes: Sequence[torch.Tensor]) -> list[float]:
    """Per run, the mean over pairs of samples of the fraction of test points on which their
    predicted classes differ; `classes` holds one (R, n) tensor per sample (at least 2)."""
    stacked = torch.stack(list(classes), dim=1)  # (R, S, n)
    differ = (stacked.unsqueeze(1) != stacked.unsqueeze(2)).float().mean(-1)
    pairs = stacked.shape[1] * (stacked.shape[1] - 1)
    return (differ.sum((1, 2)) / pairs).tolist()
