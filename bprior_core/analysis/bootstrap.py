"""Two-way bootstrap over seeds and test points: the standard errors of the claims' effects
with the test set's sampling error included.

Every run scores the same test set (the same images in the same order), so the error of having
drawn THAT test set is shared by all runs and does not average out over seeds: a per-seed t
interval misses it. A replicate b resamples

- the n test points once, with replacement, for every run alike: counts w_b ~ Multinomial(n,
  1/n) (a comparison stays paired on test points), and
- the S paired seeds with replacement, independently of the points: counts v_b ~
  Multinomial(S, 1/S), the same counts for every size (a pooled or per-size-slope effect keeps
  its seeds together).

Per run, the metric is recomputed on the resampled points from per-point quantities
(`per_point`): accuracy, NLL and Brier are means, M_b = sum_i w_bi q_i / n of q = correct
(0/1), -log max(p_label, 1e-12), sum_c (p_c - onehot_c)^2; ECE is not a mean of per-point
terms and is recomputed with the run's bins, ECE_b = sum_k |sum_{i in bin k} w_bi (correct_i -
conf_i)| / n (15 equal-width bins over the top-label confidence, as `metrics.ece`). A
comparison's per-seed value x_s (a contrast of runs, a mean over sizes, a slope over sizes:
`paired`) is computed replicate by replicate from these, x_s[b], and the two-way replicate is
T_b = sum_s v_bs x_s[b] / S. For a mean over an (S x n) array X, Var(T) is exactly (see
`two_way_variance`)

    V_seed / S + V_point / n + V_inter / (S n),

with V_seed the plug-in variance of the seed means, V_point that of the point means (over
seeds) and V_inter the mean squared double-centred residual. The seed x point interaction
(each seed's own luck on each image) is counted in all three terms, where the variance of the
mean counts it once (Owen 2007, "the pigeonhole bootstrap": conservative), and the per-seed
spread already holds it. `spread` therefore splits the replicates into their uncorrelated seed,
point and interaction parts and uses

    SE^2 = sd(x_s)^2 / S + max(0, V_point - S / (S - 1) V_inter):

the per-seed t variance plus the test set's own sampling error (V_point with the interaction
taken out): the unbiased crossed random-effects (ANOVA) variance (MS_seed + MS_point -
MS_resid) / (S n), up to n / (n - 1). With no test-point error it is the t standard error
exactly; it is never below it. Intervals keep the t reference with S - 1 degrees of freedom
(`paired`): conservative when the test-set part dominates.

Everything is seeded (`SEED`): the same records give the same standard errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..vocabulary import METRICS

N_BOOT = 2000  # replicates; the SE's relative Monte-Carlo error is about 1 / sqrt(2 N_BOOT)
SEED = 15
N_BINS = 15  # ECE bins, as `metrics.ece`
NLL_FLOOR = 1e-12  # as `metrics.NLL_FLOOR`
CHUNK = 128  # replicates per block of point counts (memory: CHUNK x n floats)

Loader = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]


@dataclass(frozen=True)
class PerPoint:
    """One run's per-test-point quantities: what its metrics are computed from."""

    correct: np.ndarray  # (n,) 1.0 where the arg-max class is the label
    nll: np.ndarray  # (n,) -log max(p_label, 1e-12)
    brier: np.ndarray  # (n,) sum_c (p_c - onehot_c)^2
    bins: np.ndarray  # (n,) ECE bin of the top-label confidence
    gap: np.ndarray  # (n,) correct - top-label confidence
    labels: np.ndarray  # (n,) the test labels (every run must have the same)

    def quantity(self, metric: str) -> np.ndarray:
        """The per-point quantity whose mean is `metric` (not ECE)."""
        return {"accuracy": self.correct, "nll": self.nll, "brier": self.brier}[metric]


def per_point(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> PerPoint:
    """Per-point correctness, NLL, Brier term, ECE bin and calibration gap of (n, C)
    probabilities, with the conventions of `metrics` (arg-max first on ties; NLL floored at
    1e-12; bins (b/n_bins, (b+1)/n_bins], the first holding 0)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or y.shape != p.shape[:1]:
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} do not match")
    rows = np.arange(len(y))
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    nll = -np.log(np.maximum(p[rows, y], NLL_FLOOR))
    brier = (p ** 2).sum(axis=1) - 2 * p[rows, y] + 1.0
    conf = p.max(axis=1)
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    return PerPoint(correct, nll, brier, bins.astype(np.int64), correct - conf, y)


def _rng(kind: int, size: int, seed: int) -> np.random.Generator:
    """An independent, reproducible stream per kind (0: points, 1: seeds) and size."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(kind, size)))


def point_counts(n: int, n_boot: int = N_BOOT, seed: int = SEED) -> Iterator[np.ndarray]:
    """Blocks (at most CHUNK x n) of test-point counts w_b ~ Multinomial(n, 1/n), b = 1..n_boot:
    how often each test point is drawn in replicate b. The same n, n_boot and seed give the
    same counts, so every run of a study is resampled on the same points."""
    rng = _rng(0, n, seed)
    for start in range(0, n_boot, CHUNK):
        rows = min(CHUNK, n_boot - start)
        drawn = rng.integers(0, n, size=(rows, n))
        flat = (drawn + n * np.arange(rows)[:, None]).ravel()
        yield np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


@functools.lru_cache(maxsize=64)
def seed_counts(n_seeds: int, n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """(n_boot, S) seed counts v_b ~ Multinomial(S, 1/S), independent of the point counts
    (read-only: cached, shared by every comparison over S seeds)."""
    counts = _rng(1, n_seeds, seed).multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds),
                                               size=n_boot).astype(np.float64)
    counts.flags.writeable = False
    return counts


def resampled_metric(runs: Sequence[PerPoint], metric: str, n_boot: int = N_BOOT,
                     seed: int = SEED) -> np.ndarray:
    """(R, n_boot): each run's `metric` on each replicate's resampled test points, the same
    points for every run (see the module docstring for the formulas)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if not runs:
        return np.zeros((0, n_boot))
    n = len(runs[0].labels)
    if metric == "ece":
        return _resampled_ece(runs, n, n_boot, seed)
    q = np.stack([r.quantity(metric) for r in runs])  # (R, n)
    blocks = [q @ w.T for w in point_counts(n, n_boot, seed)]
    return np.concatenate(blocks, axis=1) / n


def _resampled_ece(runs: Sequence[PerPoint], n: int, n_boot: int, seed: int) -> np.ndarray:
    """ECE per run and replicate: the weighted gap summed within each of the run's bins (one
    sparse (n, R * bins) matrix holds every run's gap in its bin's column), then |.| summed
    over bins."""
    from scipy import sparse

    n_runs = len(runs)
    cols = np.concatenate([r.bins + N_BINS * j for j, r in enumerate(runs)])
    rows = np.tile(np.arange(n), n_runs)
    gaps = sparse.csc_matrix((np.concatenate([r.gap for r in runs]), (rows, cols)),
                             shape=(n, n_runs * N_BINS))
    out = []
    for w in point_counts(n, n_boot, seed):
        per_bin = np.asarray(gaps.T @ w.T)  # (R * bins, rows)
        out.append(np.abs(per_bin.reshape(n_runs, N_BINS, -1)).sum(axis=1))
    return np.concatenate(out, axis=1) / n


def two_way_replicates(reps: np.ndarray, seed: int = SEED) -> np.ndarray:
    """T_b = sum_s v_bs x_s[b] / S from per-seed replicates `reps` (..., S, B): each
    replicate's point-resampled per-seed values averaged over its resampled seeds."""
    n_seeds, n_boot = reps.shape[-2:]
    return np.einsum("bs,...sb->...b", seed_counts(n_seeds, n_boot, seed), reps) / n_seeds


@dataclass(frozen=True)
class Spread:
    """The standard error of a mean over seeds and its parts (see `spread`); numbers, or
    arrays for a batch of comparisons."""

    se: Any  # sqrt(se_seeds^2 + se_points^2): what the interval uses
    se_seeds: Any  # sd(x_s) / sqrt(S): the per-seed t standard error
    se_points: Any  # the test-point part, sqrt(max(0, V_point - S / (S - 1) V_inter))
    se_two_way: Any  # sqrt(S / (S - 1) Var_b(T_b)): the plain two-way bootstrap (larger)


def spread(observed: np.ndarray, reps: np.ndarray, seed: int = SEED) -> Spread:
    """Standard error of the mean over seeds of per-seed values `observed` (..., S) whose
    point-resampled replicates are `reps` (..., S, B), from the two-way bootstrap (leading
    axes: a batch of comparisons).

    A replicate splits as T_b = seed part + point part + interaction, uncorrelated terms:
    with d_s[b] = reps[s, b] - mean_b reps[s, b] (the point-resampling deviations),
    V_point = Var_b(mean_s d_s[b]) and V_inter = mean_b((1/S) sum_s (v_bs - 1) d_s[b])^2.
    The seed x point interaction is already in the per-seed spread, so it is taken out of the
    point part once (the S / (S - 1) undoes the plug-in divisor, as for the seeds):

        SE^2 = sd(observed)^2 / S + max(0, V_point - S / (S - 1) V_inter),

    for a mean of an (S x n) array the unbiased crossed random-effects variance
    (MS_seed + MS_point - MS_resid) / (S n), with n for n - 1 (`two_way_variance` gives the
    plain bootstrap's). Never below the per-seed t standard error."""
    observed, reps = np.asarray(observed, dtype=float), np.asarray(reps, dtype=float)
    n_seeds, n_boot = reps.shape[-2:]
    counts = seed_counts(n_seeds, n_boot, seed)
    dev = reps - reps.mean(axis=-1, keepdims=True)
    v_point = dev.mean(axis=-2).var(axis=-1, ddof=1)
    inter = np.einsum("bs,...sb->...b", counts - 1.0, dev) / n_seeds
    v_inter = (inter ** 2).mean(axis=-1)
    se_seeds = seed_se(observed)
    se_points = np.sqrt(np.maximum(0.0, v_point - n_seeds / (n_seeds - 1) * v_inter))
    two_way = np.sqrt(n_seeds / (n_seeds - 1) * two_way_replicates(reps, seed).var(axis=-1,
                                                                                  ddof=1))
    out = (np.hypot(se_seeds, se_points), se_seeds, se_points, two_way)
    return Spread(*(float(v) if np.ndim(v) == 0 else v for v in out))


def seed_se(observed: np.ndarray) -> Any:
    """sd(x_s) / sqrt(S) (ddof 1) over the last axis: the t standard error over seeds."""
    observed = np.asarray(observed, dtype=float)
    return observed.std(axis=-1, ddof=1) / np.sqrt(observed.shape[-1])


def two_way_variance(x: np.ndarray) -> float:
    """The exact variance of the two-way bootstrap mean of an (S, n) array (independent
    multinomial seed and point counts): V_seed / S + V_point / n + V_inter / (S n), plug-in
    (ddof 0) variances of the row means, of the column means and of the double-centred
    residuals. A reference for the tests; the claims use the replicates."""
    x = np.asarray(x, dtype=np.float64)
    s, n = x.shape
    rows, cols = x.mean(axis=1), x.mean(axis=0)
    inter = x - rows[:, None] - cols[None, :] + x.mean()
    return float(rows.var() / s + cols.var() / n + (inter ** 2).mean() / (s * n))


# ----------------------------------------------------------------------------- runs


def load_points(records: Sequence[Mapping[str, Any]], predictions: Loader
                ) -> list[PerPoint | None]:
    """Per-point quantities of each record's test predictions (`predictions(record)`: the
    `study.predictions.read_predictions` mapping, or its `test` part; None where missing).
    Raises when two runs were scored on different test sets (a paired bootstrap over test
    points needs the same points in the same order)."""
    out: list[PerPoint | None] = []
    labels = None
    for record in records:
        found = predictions(record) if record.get("status") == "ok" else None
        part = (found.get("test", found) if isinstance(found, Mapping) else None)
        if not part or "probs" not in part:
            out.append(None)
            continue
        points = per_point(part["probs"], part["labels"])
        if labels is None:
            labels = points.labels
        elif not np.array_equal(labels, points.labels):
            raise ValueError(f"run {record.get('id')!r} was scored on a different test set "
                             "(labels differ): the bootstrap over test points needs every run "
                             "scored on the same test images in the same order")
        out.append(points)
    return out


def replicates(points: Sequence[PerPoint | None], metrics: Sequence[str],
               n_boot: int = N_BOOT, seed: int = SEED) -> list[dict[str, np.ndarray]]:
    """Per run, {metric: (n_boot,) replicates} (empty where the run has no predictions)."""
    present = [i for i, p in enumerate(points) if p is not None]
    out: list[dict[str, np.ndarray]] = [{} for _ in points]
    for metric in metrics:
        reps = resampled_metric([points[i] for i in present], metric, n_boot, seed)
        for row, i in enumerate(present):
            out[i][metric] = reps[row]
    return out
