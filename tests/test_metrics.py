"""Tests for bprior_core.analysis.metrics: hand-computed cases, a numpy reference, and BMA
averaging."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bprior_core.analysis.metrics import (
    NLL_FLOOR,
    ProbabilityAverage,
    accuracy,
    average_probabilities,
    brier,
    classification_metrics,
    ece,
    nll,
)

# Four examples, three classes.
#   row                 label  arg-max  correct  p(label)  top conf
#   [0.7, 0.2, 0.1]     0      0        yes      0.7       0.7
#   [0.1, 0.8, 0.1]     1      1        yes      0.8       0.8
#   [0.3, 0.3, 0.4]     0      2        no       0.3       0.4
#   [0.5, 0.25, 0.25]   2      0        no       0.25      0.5
# accuracy = 2 / 4 = 0.5
# NLL = -(log 0.7 + log 0.8 + log 0.3 + log 0.25) / 4
# Brier per row: 0.3^2 + 0.2^2 + 0.1^2 = 0.14;  0.1^2 + 0.2^2 + 0.1^2 = 0.06;
#                0.7^2 + 0.3^2 + 0.4^2 = 0.74;  0.5^2 + 0.25^2 + 0.75^2 = 0.875
#   mean = (0.14 + 0.06 + 0.74 + 0.875) / 4 = 1.815 / 4 = 0.45375
# ECE with 4 bins (0, .25], (.25, .5], (.5, .75], (.75, 1]: confidence 0.5 lies exactly on an
# edge and belongs to the lower bin (.25, .5].
#   bin (.25, .5]: rows 3, 4 (conf 0.4, 0.5, both wrong): acc 0, conf 0.45 -> 2/4 * 0.45 = 0.225
#   bin (.5, .75]: row 1 (conf 0.7, right):              acc 1, conf 0.7  -> 1/4 * 0.3  = 0.075
#   bin (.75, 1]:  row 2 (conf 0.8, right):              acc 1, conf 0.8  -> 1/4 * 0.2  = 0.05
#   ECE = 0.35  (putting 0.5 in the upper bin would give 0.1 + 0.05 + 0.05 = 0.2)
PROBS = torch.tensor(
    [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]], dtype=torch.float64
)
LABELS = torch.tensor([0, 1, 0, 2])


def test_hand_computed_case() -> None:
    assert accuracy(PROBS, LABELS) == pytest.approx(0.5, abs=1e-15)
    expected_nll = -(math.log(0.7) + math.log(0.8) + math.log(0.3) + math.log(0.25)) / 4
    assert nll(PROBS, LABELS) == pytest.approx(expected_nll, abs=1e-12)
    assert brier(PROBS, LABELS) == pytest.approx(0.45375, abs=1e-12)
    assert ece(PROBS, LABELS, n_bins=4) == pytest.approx(0.35, abs=1e-12)


def test_classification_metrics_dict_of_floats() -> None:
    out = classification_metrics(PROBS, LABELS, n_bins=4)
    assert set(out) == {"accuracy", "nll", "ece", "brier"}
    assert all(type(v) is float for v in out.values())
    assert out["ece"] == pytest.approx(0.35, abs=1e-12)
    assert out["brier"] == pytest.approx(0.45375, abs=1e-12)


def test_ece_with_fifteen_bins_edge() -> None:
    # Uniform over 3 classes: conf = 1/3 = 5/15 exactly on an edge -> bin (4/15, 5/15].
    # Labels [0, 1, 2]; arg-max is class 0 (first on ties): acc = 1/3, conf = 1/3 -> ECE 0.
    uniform = torch.full((3, 3), 1 / 3, dtype=torch.float64)
    assert ece(uniform, torch.tensor([0, 1, 2])) == pytest.approx(0.0, abs=1e-15)
    # All labels 0: acc 1, conf 1/3 -> ECE = 2/3 whatever the bin.
    assert ece(uniform, torch.tensor([0, 0, 0])) == pytest.approx(2 / 3, abs=1e-12)
    # conf 0.2 (= 3/15, an edge) and 0.21 (in (3/15, 4/15]) land in different bins:
    # bin (2/15, 3/15]: conf 0.2 right -> 1/2 * 0.8; bin (3/15, 4/15]: conf 0.21 wrong
    # -> 1/2 * 0.21; ECE = 0.4 + 0.105 = 0.505 (one shared bin would give |0.5 - 0.205| / 1).
    probs = torch.tensor([[0.2] * 5, [0.21, 0.2, 0.2, 0.2, 0.19]], dtype=torch.float64)
    assert ece(probs, torch.tensor([0, 4])) == pytest.approx(0.505, abs=1e-12)


def test_perfect_confident_predictions() -> None:
    labels = torch.tensor([2, 0, 1, 1, 3])
    probs = torch.nn.functional.one_hot(labels, 4).double()
    assert accuracy(probs, labels) == 1.0
    assert ece(probs, labels) == pytest.approx(0.0, abs=1e-15)
    assert brier(probs, labels) == pytest.approx(0.0, abs=1e-15)
    assert nll(probs, labels) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("n_classes", [2, 10, 102])
def test_uniform_predictions(n_classes: int) -> None:
    labels = torch.arange(20) % n_classes
    probs = torch.full((20, n_classes), 1.0 / n_classes, dtype=torch.float64)
    assert nll(probs, labels) == pytest.approx(math.log(n_classes), rel=1e-12)
    assert brier(probs, labels) == pytest.approx(1 - 1 / n_classes, rel=1e-12)


def test_nll_floor_keeps_it_finite() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    labels = torch.tensor([1, 0])
    expected = (-math.log(NLL_FLOOR) + math.log(2)) / 2  # p = 0 is clamped to 1e-12
    assert nll(probs, labels) == pytest.approx(expected, rel=1e-12)


def _numpy_reference(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[str, float]:
    """Straightforward loop re-implementation of the documented conventions."""
    n, c = probs.shape
    pred = probs.argmax(1)
    conf = probs.max(1)
    correct = (pred == labels).astype(float)
    ece_sum = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf > lo) & (conf <= hi)
        if b == 0:
            in_bin |= conf == 0
        if in_bin.any():
            ece_sum += in_bin.sum() / n * abs(correct[in_bin].mean() - conf[in_bin].mean())
    onehot = np.eye(c)[labels]
    return {
        "accuracy": correct.mean(),
        "nll": -np.log(np.maximum(probs[np.arange(n), labels], 1e-12)).mean(),
        "ece": ece_sum,
        "brier": ((probs - onehot) ** 2).sum(1).mean(),
    }


@pytest.mark.parametrize(("n", "c", "n_bins", "seed"), [(500, 10, 15, 0), (257, 3, 10, 1)])
def test_matches_numpy_reference(n: int, c: int, n_bins: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(c, 0.3), size=n)
    labels = rng.integers(0, c, size=n)
    labels[: n // 2] = probs[: n // 2].argmax(1)  # make half right so accuracy is not trivial
    ours = classification_metrics(torch.from_numpy(probs), torch.from_numpy(labels), n_bins)
    ref = _numpy_reference(probs, labels, n_bins)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    assert classification_metrics(probs, labels, n_bins) == ours  # numpy input works too


def test_float32_input_gives_float_output() -> None:
    out = classification_metrics(PROBS.float(), LABELS, n_bins=4)
    assert all(type(v) is float for v in out.values())
    assert out["brier"] == pytest.approx(0.45375, abs=1e-6)


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (torch.ones(3) / 3, torch.tensor([0]), "2-D"),
        (PROBS, LABELS[:, None], "1-D"),
        (PROBS, LABELS[:3], "rows"),
        (PROBS, torch.tensor([0, 1, 3, 0]), r"\[0, 3\)"),
        (PROBS, torch.tensor([0, 1, -1, 0]), r"\[0, 3\)"),
        (PROBS, LABELS.double(), "integer"),
        (torch.log(PROBS), LABELS, "logits"),
        (PROBS * 2, LABELS, "sum to 1"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "at least one"),
    ],
)
def test_invalid_inputs_raise(probs, labels, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_metrics(probs, labels)


def test_ece_rejects_bad_bins() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        ece(PROBS, LABELS, n_bins=0)


def test_bma_averages_probabilities_not_logits() -> None:
    # Two samples say class 1 with p = sigmoid(2) = 0.881; one says class 0 with logit gap 12.
    logits = [torch.tensor([[0.0, 2.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([[12.0, 0.0]])]
    probs = [lg.softmax(-1) for lg in logits]
    bma = average_probabilities(probs)
    from_logits = torch.stack(logits).mean(0).softmax(-1)  # mean logits [4, 4/3]
    # Probability average: p1 = (0.881 + 0.881 + 6e-6) / 3 = 0.587 -> predicts class 1;
    # logit average: softmax([4, 1.333]) = [0.935, 0.065] -> predicts class 0.
    p1 = (2 * torch.sigmoid(torch.tensor(2.0)) + torch.sigmoid(torch.tensor(-12.0))) / 3
    torch.testing.assert_close(bma[0, 1], p1)
    assert bma.argmax(-1).item() == 1 and from_logits.argmax(-1).item() == 0
    label = torch.tensor([1])
    assert accuracy(bma, label) == 1.0 and accuracy(from_logits, label) == 0.0


def test_probability_average_accumulator() -> None:
    g = torch.Generator().manual_seed(0)
    samples = [torch.randn(6, 4, generator=g).softmax(-1) for _ in range(5)]
    acc = ProbabilityAverage()
    for s in samples:
        acc.update(s)
    assert acc.count == 5
    mean = acc.mean()
    assert mean.dtype == torch.float32
    torch.testing.assert_close(mean, torch.stack(samples).mean(0))
    torch.testing.assert_close(mean.sum(-1), torch.ones(6))
    with pytest.raises(ValueError, match="shape"):
        acc.update(torch.ones(6, 3) / 3)
    with pytest.raises(ValueError, match="no probabilities"):
        ProbabilityAverage().mean()
    with pytest.raises(ValueError):
        average_probabilities([])
