"""Classification metrics from predicted probabilities, and Bayesian model averaging.

Conventions (state them in reports):

- ``probs`` is ``(n, C)`` with rows summing to 1 (softmax outputs, not logits); ``labels`` is
  ``(n,)`` with integer classes in ``[0, C)``. All metrics are computed in float64 and returned as
  Python floats.
- accuracy: fraction of examples whose arg-max class (first one on ties) is the label.
- NLL: per-example MEAN of ``-log p(label)``, with ``p`` clamped below at ``1e-12`` so a
  confidently wrong prediction costs at most ``-log(1e-12) ~= 27.6`` instead of infinity.
- ECE: ``n_bins`` (default 15) equal-width bins over top-label confidence on ``[0, 1]``; bin ``b``
  is ``(b / n_bins, (b + 1) / n_bins]`` and the first bin also holds confidence 0.
  ``ECE = sum_b |B_b| / n * |acc_b - conf_b|``; empty bins contribute 0.
- Brier: sum over classes of ``(p_c - onehot_c)^2``, averaged over examples (range ``[0, 2]``).
- Bayesian model averaging: the mean of the samples' probabilities, never of their logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "NLL_FLOOR",
    "accuracy",
    "nll",
    "ece",
    "brier",
    "classification_metrics",
    "average_probabilities",
    "ProbabilityAverage",
]

NLL_FLOOR = 1e-12
_ROW_SUM_ATOL = 1e-3


def _as_inputs(probs: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and convert ``probs`` (n, C) and ``labels`` (n,) to float64 / int64 tensors."""
    probs = torch.as_tensor(probs)
    labels = torch.as_tensor(labels, device=probs.device)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (n, C), got shape {tuple(probs.shape)}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (n,), got shape {tuple(labels.shape)}")
    n, n_classes = probs.shape
    if labels.shape[0] != n:
        raise ValueError(f"probs has {n} rows but labels has {labels.shape[0]} entries")
    if n == 0 or n_classes == 0:
        raise ValueError(f"need at least one example and one class, got shape {(n, n_classes)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    labels = labels.long()
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got range "
                         f"[{labels.min().item()}, {labels.max().item()}]")
    return _check_probs(probs.double()), labels


def _check_probs(probs: torch.Tensor) -> torch.Tensor:
    """Raise unless ``probs`` are finite, non-negative rows summing to 1 (catches logits)."""
    if not torch.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("probs must be finite and non-negative (pass softmax outputs, not logits)")
    worst = (probs.sum(dim=1) - 1.0).abs().max().item()
    if worst > _ROW_SUM_ATOL:
        raise ValueError(f"rows of probs must sum to 1 (max deviation {worst:.3g}); "
                         "pass softmax outputs, not logits")
    return probs


def accuracy(probs: Any, labels: Any) -> float:
    """Fraction of examples whose arg-max class equals the label."""
    probs, labels = _as_inputs(probs, labels)
    return (probs.argmax(dim=1) == labels).double().mean().item()


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log probability of the true label (probabilities floored at 1e-12)."""
    probs, labels = _as_inputs(probs, labels)
    p_true = probs.gather(1, labels[:, None]).squeeze(1)
    return (-p_true.clamp_min(NLL_FLOOR).log()).mean().item()


def _confidence_bins(probs: Any, labels: Any, n_bins: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per bin of top-label confidence (``(lo, hi]``, edges ``b / n_bins``, the first bin
    including 0): the number of examples, the sum of their confidences, the number correct
    (float64, length ``n_bins``)."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins}")
    probs, labels = _as_inputs(probs, labels)
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    edges = torch.arange(n_bins + 1, dtype=torch.float64, device=probs.device) / n_bins
    bins = (torch.bucketize(conf, edges, right=False) - 1).clamp(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64, device=probs.device)
    count.index_add_(0, bins, torch.ones_like(conf))
    conf_sum = torch.zeros_like(count).index_add_(0, bins, conf)
    return count, conf_sum, torch.zeros_like(count).index_add_(0, bins, correct)


def ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Expected calibration error over ``n_bins`` equal-width top-label confidence bins.

    Bins are ``(lo, hi]`` with edges ``b / n_bins`` (the first bin includes 0), so a confidence
    exactly on an edge goes to the lower bin.
    """
    count, conf_sum, correct = _confidence_bins(probs, labels, n_bins)
    return ((correct - conf_sum).abs().sum() / count.sum()).item()


def brier(probs: Any, labels: Any) -> float:
    """Sum over classes of squared error to the one-hot label, averaged over examples."""
    probs, labels = _as_inputs(probs, labels)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return ((probs - onehot) ** 2).sum(dim=1).mean().item()


def reliability_bins(probs: Any, labels: Any, n_bins: int = 15) -> dict[str, list]:
    """The per-bin data behind `ece` (the same bins): mean top-label confidence, fraction
    correct (None for an empty bin) and count, for a reliability diagram."""
    count, conf_sum, correct = (t.tolist() for t in _confidence_bins(probs, labels, n_bins))
    return {"confidence": [c / n if n else None for c, n in zip(conf_sum, count, strict=True)],
            "accuracy": [a / n if n else None for a, n in zip(correct, count, strict=True)],
            "count": [int(n) for n in count]}


def classification_metrics(probs: Any, labels: Any, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL, ECE and Brier score in one dict (keys as the function names)."""
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "ece": ece(probs, labels, n_bins=n_bins),
        "brier": brier(probs, labels),
    }


def average_probabilities(probs_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """Bayesian model average: element-wise mean of the samples' probability tensors."""
    average = ProbabilityAverage()
    for probs in probs_list:
        average.update(probs)
    return average.mean()


class ProbabilityAverage:
    """Running Bayesian model average of predicted probabilities (not logits).

    Accumulates in float64 so many samples do not lose precision; :meth:`mean` returns the
    dtype of the first update.
    """

    def __init__(self) -> None:
        self._sum: torch.Tensor | None = None
        self._dtype: torch.dtype | None = None
        self.count = 0

    def update(self, probs: torch.Tensor) -> None:
        """Add one sample's probabilities (any shape, the same for every update)."""
        probs = torch.as_tensor(probs)
        if self._sum is None:
            self._sum = torch.zeros_like(probs, dtype=torch.float64)
            self._dtype = probs.dtype
        elif probs.shape != self._sum.shape:
            raise ValueError(
                f"shape mismatch: expected {tuple(self._sum.shape)}, got {tuple(probs.shape)}"
            )
        self._sum += probs.detach().to(self._sum.device, torch.float64)
        self.count += 1

    def mean(self) -> torch.Tensor:
        """The average of all probabilities added so far."""
        if self._sum is None:
            raise ValueError("no probabilities were added")
        return (self._sum / self.count).to(self._dtype)
