"""Tests for bprior_core.analysis.bootstrap: per-point metrics against `metrics`, resampled metrics
against the metrics of explicitly resampled test sets, the two-way bootstrap's variance against
an exact enumeration, and its standard error against the crossed random-effects (ANOVA)
estimator."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bprior_core.analysis import bootstrap, metrics, paired
from bprior_core.analysis.bootstrap import (
    PerPoint,
    per_point,
    point_counts,
    resampled_metric,
    seed_counts,
    spread,
    two_way_replicates,
    two_way_variance,
)


def random_probs(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    logits = rng.normal(0.0, 2.0, size=(n, classes))
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def rows_as_runs(x: np.ndarray) -> list[PerPoint]:
    """Runs whose per-point 'correct' quantity is each row of x (accuracy = the row mean)."""
    n = x.shape[1]
    zeros = np.zeros(n)
    return [PerPoint(row.astype(float), zeros, zeros, zeros.astype(np.int64), zeros,
                     np.zeros(n, np.int64)) for row in x]


# ----------------------------------------------------------------------------- per point


def test_per_point_quantities_average_to_the_metrics():
    rng = np.random.default_rng(0)
    probs = random_probs(rng, 60, 4)
    probs[0] = [0.4, 0.2, 0.2, 0.2]  # confidence 0.4 = 6/15, on a bin edge: the lower bin
    probs[1] = [0.3, 0.3, 0.2, 0.2]  # a tie: the first class is the prediction
    probs[2] = [1.0, 0.0, 0.0, 0.0]  # p_label = 0 for a label != 0: the NLL floor
    labels = rng.integers(0, 4, 60)
    labels[2] = 3
    pts = per_point(probs, labels)
    assert pts.correct.mean() == pytest.approx(metrics.accuracy(probs, labels))
    assert pts.nll.mean() == pytest.approx(metrics.nll(probs, labels))
    assert pts.brier.mean() == pytest.approx(metrics.brier(probs, labels))
    ece = sum(abs(pts.gap[pts.bins == k].sum()) for k in range(15)) / 60
    assert ece == pytest.approx(metrics.ece(probs, labels))
    assert pts.bins[0] == 5 and pts.correct[1] == float(labels[1] == 0)
    assert pts.nll[2] == pytest.approx(-math.log(1e-12))


def test_point_counts_are_reproducible_multinomial_draws():
    blocks = list(point_counts(7, 300, seed=3))
    counts = np.concatenate(blocks)
    assert counts.shape == (300, 7) and len(blocks) == math.ceil(300 / bootstrap.CHUNK)
    assert (counts.sum(axis=1) == 7).all() and (counts >= 0).all()
    assert np.array_equal(counts, np.concatenate(list(point_counts(7, 300, seed=3))))
    assert not np.array_equal(counts, np.concatenate(list(point_counts(7, 300, seed=4))))
    # each count is Binomial(7, 1/7): mean 1, variance 6/7
    assert counts.mean() == pytest.approx(1.0, abs=4 * math.sqrt(6 / 7 / counts.size))
    seeds = seed_counts(5, 300, seed=3)
    assert seeds.shape == (300, 5) and (seeds.sum(axis=1) == 5).all()
    with pytest.raises(ValueError):
        seeds[0, 0] = 1.0  # shared between comparisons: read-only


@pytest.mark.parametrize("metric", ["accuracy", "nll", "brier", "ece"])
def test_resampled_metrics_are_the_metrics_of_the_resampled_test_sets(metric):
    """Replicate b of each run = `metrics.<metric>` on the test points drawn in replicate b
    (the same points for every run)."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 40)
    probs = [random_probs(rng, 40, 3) for _ in range(3)]
    reps = resampled_metric([per_point(p, labels) for p in probs], metric, n_boot=6, seed=9)
    counts = np.concatenate(list(point_counts(40, 6, seed=9)))
    reference = getattr(metrics, metric)
    for b in range(6):
        drawn = np.repeat(np.arange(40), counts[b].astype(int))
        for r, p in enumerate(probs):
            assert reps[r, b] == pytest.approx(reference(p[drawn], labels[drawn]), abs=1e-12)


# ----------------------------------------------------------------------------- two-way


def compositions(total: int, parts: int):
    """Every vector of `parts` non-negative counts summing to `total`, with its multinomial
    probability under equal cell probabilities."""
    for cut in itertools.combinations_with_replacement(range(parts), total):
        counts = np.bincount(cut, minlength=parts)
        prob = math.factorial(total) / np.prod([math.factorial(c) for c in counts])
        yield counts.astype(float), prob / parts ** total


def enumerated(x: np.ndarray) -> tuple[float, float, float]:
    """Exact mean, variance and fourth central moment of the two-way bootstrap mean of x,
    by enumerating every seed and point multiset."""
    s, n = x.shape
    values, probs = [], []
    for v, pv in compositions(s, s):
        for w, pw in compositions(n, n):
            values.append(v @ x @ w / (s * n))
            probs.append(pv * pw)
    values, probs = np.array(values), np.array(probs)
    assert probs.sum() == pytest.approx(1.0)
    mean = float(probs @ values)
    return mean, float(probs @ (values - mean) ** 2), float(probs @ (values - mean) ** 4)


def test_two_way_variance_is_the_enumerated_variance():
    # hand check: x = [[0, 1, 2], [1, 1, 4]]: row means 1, 2 (plug-in var 0.25), column means
    # 0.5, 1, 3 (var 7/6), residuals +-[0, 0.5, -0.5] (mean square 1/6):
    # 0.25 / 2 + (7/6) / 3 + (1/6) / 6 = 0.125 + 0.388889 + 0.027778 = 0.541667
    x = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 4.0]])
    assert two_way_variance(x) == pytest.approx(0.125 + 7 / 18 + 1 / 36)
    assert enumerated(x)[1] == pytest.approx(two_way_variance(x), rel=1e-12)
    y = np.random.default_rng(2).normal(size=(3, 4))
    assert enumerated(y)[1] == pytest.approx(two_way_variance(y), rel=1e-12)


def test_bootstrap_replicates_have_the_enumerated_moments():
    """The code's replicates (point resampling per run, then seed resampling) against the exact
    distribution: mean and variance within 4 Monte-Carlo standard errors of B replicates."""
    x = np.random.default_rng(3).normal(size=(3, 5)) + np.array([[0.0], [1.0], [3.0]])
    b = 6000
    reps = resampled_metric(rows_as_runs(x), "accuracy", n_boot=b, seed=11)
    t = two_way_replicates(reps, seed=11)
    mean, var, mu4 = enumerated(x)
    assert t.mean() == pytest.approx(mean, abs=4 * math.sqrt(var / b))
    assert t.var(ddof=1) == pytest.approx(var, abs=4 * math.sqrt((mu4 - var ** 2) / b))


def anova_variance(x: np.ndarray) -> tuple[float, float]:
    """(seed part, test-point part) of the unbiased crossed random-effects variance of the mean
    of x: MS_seed / (S n) and (MS_point - MS_resid) / (S n)."""
    s, n = x.shape
    grand, rows, cols = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ms_row = n * ((rows - grand) ** 2).sum() / (s - 1)
    ms_col = s * ((cols - grand) ** 2).sum() / (n - 1)
    ms_res = ((x - rows[:, None] - cols[None, :] + grand) ** 2).sum() / ((s - 1) * (n - 1))
    return ms_row / (s * n), (ms_col - ms_res) / (s * n)


def test_spread_is_the_crossed_random_effects_variance():
    """Seed x point data with a seed effect, a shared per-point effect (the test-set error)
    and noise: the seed part is the t standard error exactly; the test-point part is the
    unbiased ANOVA estimate (with n for n - 1) within the Monte-Carlo error of B replicates;
    the plain two-way bootstrap is larger (it counts the interaction three times)."""
    rng = np.random.default_rng(4)
    s, n, b = 6, 300, 8000
    x = (rng.normal(0, 0.05, (s, 1)) + rng.normal(0, 0.3, (1, n)) + rng.normal(0, 0.8, (s, n)))
    reps = resampled_metric(rows_as_runs(x), "accuracy", n_boot=b)
    out = spread(x.mean(axis=1), reps)
    seed_part, point_part = anova_variance(x)
    assert out.se_seeds ** 2 == pytest.approx(seed_part, rel=1e-12)
    assert out.se_seeds == pytest.approx(x.mean(axis=1).std(ddof=1) / math.sqrt(s))
    # the bootstrap estimates V_point and V_inter, each with relative error ~ sqrt(2 / B); the
    # interaction taken out (about 3.5e-4 here) is over 5 times this tolerance, so leaving it
    # in would fail
    rows, cols = x.mean(axis=1), x.mean(axis=0)
    v_point = cols.var() / n
    v_inter = ((x - rows[:, None] - cols[None, :] + x.mean()) ** 2).mean() / (s * n)
    tolerance = 4 * math.sqrt(2 / b) * (v_point + s / (s - 1) * v_inter)
    assert s / (s - 1) * v_inter > 5 * tolerance
    assert out.se_points ** 2 == pytest.approx((n - 1) / n * point_part, abs=tolerance)
    assert out.se ** 2 == pytest.approx(out.se_seeds ** 2 + out.se_points ** 2)
    plain = s / (s - 1) * two_way_variance(x)
    assert out.se_two_way ** 2 == pytest.approx(plain, rel=4 * math.sqrt(2 / b))
    assert out.se_two_way > out.se > out.se_seeds


def test_without_test_point_error_the_interval_is_the_t_interval():
    """Every point gives the seed's value: no test-set error, so the bootstrap comparison is
    exactly the t comparison over seeds."""
    d = np.array([0.03, 0.01, 0.04, 0.02, 0.025])
    x = np.repeat(d[:, None], 50, axis=1)
    reps = resampled_metric(rows_as_runs(x), "accuracy", n_boot=500)
    values = {s: np.concatenate([[d[s]], reps[s]]) for s in range(5)}
    boot, plain = paired.one_sample(values), paired.one_sample(dict(enumerate(d)))
    assert boot.uncertainty == "seeds x test points" and plain.uncertainty == "seeds"
    assert boot.se_points == pytest.approx(0.0, abs=1e-12) and boot.n_boot == 500
    for key in ("effect", "se", "ci_low", "ci_high"):
        assert getattr(boot, key) == pytest.approx(getattr(plain, key), rel=1e-12)


def test_runs_on_different_test_sets_are_refused():
    rng = np.random.default_rng(5)
    probs = random_probs(rng, 10, 3)
    runs = [{"id": "a", "status": "ok"}, {"id": "b", "status": "ok"},
            {"id": "c", "status": "diverged"}]
    labels = {"a": np.zeros(10, np.int64), "b": np.ones(10, np.int64)}

    def loader(record):
        return {"test": {"probs": probs, "labels": labels[record["id"]]}}

    with pytest.raises(ValueError, match="run 'b' was scored on a different test set"):
        bootstrap.load_points(runs, loader)
    labels["b"] = labels["a"]
    points = bootstrap.load_points(runs, loader)
    assert points[0] is not None and points[2] is None  # a diverged run has no predictions
    reps = bootstrap.replicates(points, ["accuracy", "ece"], n_boot=50)
    assert set(reps[0]) == {"accuracy", "ece"} and reps[0]["ece"].shape == (50,)
    assert reps[2] == {}
