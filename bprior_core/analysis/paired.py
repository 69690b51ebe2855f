"""Paired statistics over seeds: effects, intervals, p-values, verdicts, multiple testing.

Values are keyed by seed ({seed: value}); two arms are compared on the seeds present in both,
d_s = A(s) - B(s), oriented so that positive means "A is better". A value is a number, or a
vector [observed, r_1, ..., r_B]: the run's metric followed by its B bootstrap replicates over
test points (`bootstrap`); contrasts, means over sizes and slopes work on either, replicate by
replicate, and fall back to the observed numbers where only some values carry replicates.

For S paired seeds with per-seed values x_s, the effect is e = mean(x_s) and

- SE = sd(x_s) / sqrt(S) (ddof 1) when the values are numbers (a t interval over seeds);
- SE = the two-way bootstrap standard error over seeds and test points when every value
  carries replicates (`bootstrap.spread`: the seed part above plus the test-set part);
- interval at level 1 - a: e -/+ t_{1 - a/2, S - 1} SE;
- p = 2 P(T_{S-1} > |e| / SE): the interval at level 1 - a excludes 0 exactly when p < a;
- mde = (t_{1 - a/2, S - 1} + t_{0.80, S - 1}) SE: the true effect the interval excludes 0 for
  with about 80 % power at that level (the usual approximation; the other tail ignored).

`verdict` reads the oriented interval [L, U], the estimate e and the margin m (the smallest
effect that matters; 0 when None):

- supported: L > 0 and e >= m;
- contradicted: U < 0 and e <= -m;
- not supported: U < m and not contradicted (no effect that matters is left);
- inconclusive: everything else, and fewer than MIN_SEEDS seeds.

A compound hypothesis judges each of its k parts at level 1 - a/k (Bonferroni, `bonferroni`)
and combines the parts' verdicts with `combine`. This module is the mathematics only: it knows
nothing of claims, arms or result records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from . import bootstrap

MIN_SEEDS = 3
LEVEL = 0.95
POWER = 0.80  # the power `mde` is computed at
VERDICTS = ("supported", "not supported", "contradicted", "inconclusive", "not converged",
            "not run")
# a Bayesian claim whose samplers' chains did not converge (`chains.converged`) is not judged;
# a claim whose experiment the profile does not run has no records at all: "not run"
DECISIVE = ("supported", "contradicted")

Value = float | np.ndarray  # a number, or [observed, replicate_1, ..., replicate_B]
Seeded = dict[int, Value]  # seed -> value


@dataclass(frozen=True)
class Comparison:
    """A paired effect over seeds (positive = the direction tested) with its interval.

    `df` is the t reference's degrees of freedom (n - 1); `uncertainty` says where SE comes
    from ("seeds": t over seeds, "seeds x test points": the two-way bootstrap, then with its
    seed and test-point parts `se_seeds`, `se_points` and the replicate count `n_boot`)."""

    effect: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    seeds: tuple[int, ...]
    level: float = LEVEL
    margin: float | None = None
    uncertainty: str = "seeds"
    se_seeds: float | None = None
    se_points: float | None = None
    n_boot: int | None = None
    dof: float | None = None  # degrees of freedom where they are not n - 1 (Welch)

    @property
    def df(self) -> float | None:
        if self.dof is not None:
            return self.dof
        return self.n - 1 if self.n >= 2 else None

    @property
    def p_value(self) -> float | None:
        """Two-sided p-value of e = 0 against the t reference (1 without an interval)."""
        if self.se is None or self.effect is None or self.df is None:
            return None
        return t_p_value(self.effect, self.se, self.df)

    @property
    def mde(self) -> float | None:
        """Minimum detectable effect at 80 % power at this comparison's level."""
        if self.se is None or self.df is None:
            return None
        return mde(self.se, self.df, self.level)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, with the p-value, mde and the verdict this comparison alone gives."""
        out = {"effect": self.effect, "se": self.se, "ci_low": self.ci_low,
               "ci_high": self.ci_high, "n_seeds": self.n, "seeds": list(self.seeds),
               "level": self.level, "margin": self.margin, "p_value": self.p_value,
               "mde": self.mde, "df": self.df, "uncertainty": self.uncertainty,
               "verdict": verdict(self)}
        if self.uncertainty != "seeds":
            out.update(se_seeds=self.se_seeds, se_points=self.se_points, n_boot=self.n_boot)
        return out


# ----------------------------------------------------------------------------- values


def observed(value: Value) -> float:
    """A value's observed number (the first entry of a replicate vector)."""
    return float(np.ravel(value)[0])


def aligned(values: Sequence[Value]) -> list[Value]:
    """`values` as they are when all have the same length (all numbers, or all replicate
    vectors of one bootstrap), else their observed numbers: a computation mixes replicates
    only with replicates."""
    if all(isinstance(v, float) for v in values) or len({np.size(v) for v in values}) <= 1:
        return list(values)
    return [observed(v) for v in values]


def mean_values(values: Sequence[Value]) -> Value:
    """Element-wise mean of `values` (`aligned` first); a number for numbers."""
    if all(isinstance(v, float) for v in values):
        return sum(values) / len(values)
    values = aligned(values)
    out = np.mean(np.asarray(values, dtype=float), axis=0)
    return float(out) if np.ndim(out) == 0 else out


def _has_replicates(values: Sequence[Value]) -> bool:
    return bool(values) and all(np.size(v) > 1 for v in values)


# ----------------------------------------------------------------------------- comparisons


def t_p_value(effect: Any, se: Any, df: Any) -> Any:
    """2 P(T_df > |effect| / se); 1 for a zero effect, 0 for a non-zero one with se = 0
    (numbers, or arrays of comparisons)."""
    effect, se = np.asarray(effect, dtype=float), np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * special.stdtr(df, -np.abs(effect) / se)
    p = np.where(se > 0, p, np.where(effect == 0, 1.0, 0.0))
    return float(p) if p.ndim == 0 else p


def half_width(se: Any, df: Any, level: Any) -> Any:
    """t_{(1 + level)/2, df} se: half the interval at `level` (numbers or arrays)."""
    return t_quantile(0.5 + np.asarray(level) / 2, df) * se


def t_quantile(q: Any, df: Any) -> Any:
    """The q-quantile of Student's t with df degrees of freedom (`scipy.special.stdtrit`)."""
    return special.stdtrit(df, q)


def mde(se: float, df: int, level: float = LEVEL, power: float = POWER) -> float:
    """(t_{(1 + level)/2, df} + t_{power, df}) se: the true effect a two-sided interval at
    `level` excludes 0 for with probability about `power`."""
    return float((t_quantile(0.5 + level / 2, df) + t_quantile(power, df)) * se)


def one_sample(values: Mapping[int, Value], level: float = LEVEL,
               margin: float | None = None) -> Comparison:
    """Mean of per-seed values with its standard error and t interval at `level`: over seeds,
    or over seeds and test points when every value carries bootstrap replicates."""
    seeds = tuple(sorted(values))
    vals = aligned([values[s] for s in seeds])
    x = np.array([observed(v) for v in vals], dtype=float)
    if x.size == 0:
        return Comparison(None, None, None, None, 0, seeds, level, margin)
    effect = float(x.mean())
    if x.size < 2:
        return Comparison(effect, None, None, None, 1, seeds, level, margin)
    extra: dict[str, Any] = {}
    if _has_replicates(vals):
        reps = np.stack([np.asarray(v, dtype=float)[1:] for v in vals])
        s = bootstrap.spread(x, reps)
        se = s.se
        extra = {"uncertainty": "seeds x test points", "se_seeds": s.se_seeds,
                 "se_points": s.se_points, "n_boot": reps.shape[1]}
    else:
        se = float(bootstrap.seed_se(x))
    half = float(half_width(se, x.size - 1, level))
    return Comparison(effect, se, effect - half, effect + half, int(x.size), seeds, level,
                      margin, **extra)


def difference_of(a: Comparison, b: Comparison, level: float = LEVEL,
                  margin: float | None = None) -> Comparison:
    """a - b for two comparisons over independent sets of seeds (e.g. a gain at two training
    sizes, each evaluated on its own seeds): SE = sqrt(SE_a^2 + SE_b^2), the t interval at
    Welch-Satterthwaite's degrees of freedom. Without an SE on either side (fewer than 2 seeds)
    there is no interval; `n` is the smaller seed count, so that fewer than MIN_SEEDS seeds on
    either side read as inconclusive."""
    n = min(a.n, b.n)
    seeds = tuple(sorted(set(a.seeds) | set(b.seeds)))
    if a.effect is None or b.effect is None:
        return Comparison(None, None, None, None, n, seeds, level, margin)
    effect = a.effect - b.effect
    if a.se is None or b.se is None:
        return Comparison(effect, None, None, None, n, seeds, level, margin)
    va, vb = a.se ** 2, b.se ** 2
    se = float(np.sqrt(va + vb))
    denominator = va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1)
    dof = float((va + vb) ** 2 / denominator) if denominator > 0 else float(a.n + b.n - 2)
    half = float(half_width(se, dof, level))
    extra: dict[str, Any] = {}
    if a.uncertainty == b.uncertainty == "seeds x test points":
        extra = {"uncertainty": a.uncertainty, "n_boot": a.n_boot,
                 "se_seeds": float(np.hypot(a.se_seeds, b.se_seeds)),
                 "se_points": float(np.hypot(a.se_points, b.se_points))}
    return Comparison(effect, se, effect - half, effect + half, n, seeds, level, margin,
                      dof=dof, **extra)


def contrast(terms: Sequence[tuple[float, Mapping[int, Value]]]) -> Seeded:
    """Per-seed linear combination sum(coef * values[seed]) over seeds present in every term
    (replicate by replicate where every term carries replicates)."""
    if not terms:
        return {}
    common = set.intersection(*(set(values) for _, values in terms))
    out: Seeded = {}
    for s in sorted(common):
        vals = aligned([values[s] for _, values in terms])
        total = sum(coef * np.asarray(v, dtype=float)
                    for (coef, _), v in zip(terms, vals, strict=True))
        out[s] = float(total) if np.ndim(total) == 0 else total
    return out


def paired_difference(
    a: Mapping[int, Value], b: Mapping[int, Value], higher_is_better: bool = True,
    level: float = LEVEL, margin: float | None = None,
) -> Comparison:
    """Paired A - B over common seeds, oriented so that positive means A is better."""
    sign = 1.0 if higher_is_better else -1.0
    return one_sample(contrast([(sign, a), (-sign, b)]), level, margin)


def slopes(x: Sequence[float], series: Sequence[Mapping[int, Value]]) -> Seeded:
    """Per seed, the least-squares slope of series[i][seed] against x[i], for the seeds present
    in every series (replicate by replicate where every value carries replicates)."""
    if len(x) != len(series):
        raise ValueError(f"{len(x)} x values but {len(series)} series")
    seeds = set.intersection(*(set(s) for s in series)) if series else set()
    xs = np.asarray(x, dtype=float)
    out: Seeded = {}
    for seed in sorted(seeds):
        ys = np.asarray(aligned([s[seed] for s in series]), dtype=float)
        slope = np.polyfit(xs, ys, 1)[0]
        out[seed] = float(slope) if np.ndim(slope) == 0 else slope
    return out


# ----------------------------------------------------------------------------- verdicts


def verdicts(effect: Any, ci_low: Any, ci_high: Any, margin: float | None, n: Any) -> Any:
    """The verdict rule (module docstring) on numbers or arrays of comparisons: supported if
    L > 0 and e >= m; contradicted if U < 0 and e <= -m; not supported if U < m; else (and
    below MIN_SEEDS seeds) inconclusive."""
    m = margin or 0.0
    if all(np.ndim(v) == 0 for v in (effect, ci_low, ci_high, n)):
        return _verdict_word(float(effect), float(ci_low), float(ci_high), m, int(n))
    e, lo, hi = (np.asarray(v, dtype=float) for v in (effect, ci_low, ci_high))
    return np.select([np.asarray(n) < MIN_SEEDS, (lo > 0) & (e >= m), (hi < 0) & (e <= -m),
                      hi < m], ["inconclusive", "supported", "contradicted", "not supported"],
                     "inconclusive")


def _verdict_word(e: float, lo: float, hi: float, m: float, n: int) -> str:
    """`verdicts` for one comparison."""
    if n < MIN_SEEDS:
        return "inconclusive"
    if lo > 0 and e >= m:
        return "supported"
    if hi < 0 and e <= -m:
        return "contradicted"
    return "not supported" if hi < m else "inconclusive"


def verdict(c: Comparison) -> str:
    """Verdict of one oriented comparison (see the module docstring)."""
    if c.ci_low is None or c.ci_high is None or c.effect is None:
        return "inconclusive"
    return verdicts(c.effect, c.ci_low, c.ci_high, c.margin, c.n)


def combine(verdicts: Sequence[str]) -> str:
    """Verdict of a compound hypothesis from its parts' verdicts, each judged at the corrected
    level (`bonferroni`): contradicted if any part is contradicted; else inconclusive if any
    is (or there are no parts); else supported if all are supported; else not supported."""
    if not verdicts or "contradicted" in verdicts:
        return "contradicted" if verdicts else "inconclusive"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "supported" if all(v == "supported" for v in verdicts) else "not supported"


def decisive_p(c: Comparison) -> float:
    """The smallest a at which `c` is decisive (supported or contradicted) at level 1 - a:
    its p-value when the estimate reaches the margin, else 1 (never decisive)."""
    if c.effect is None or c.se is None or c.df is None:
        return 1.0
    if c.dof is not None:
        if abs(c.effect) < (c.margin or 0.0) or c.n < MIN_SEEDS:
            return 1.0
        return float(t_p_value(c.effect, c.se, c.dof))
    return float(decisive_p_values(c.effect, c.se, c.n, c.margin))


def decisive_p_values(effect: Any, se: Any, n: Any, margin: float | None) -> Any:
    """`decisive_p` on numbers or arrays: the t p-value (df n - 1) where |e| >= margin and
    n >= MIN_SEEDS, else 1."""
    effect, n = np.asarray(effect, dtype=float), np.asarray(n)
    p = np.where((np.abs(effect) >= (margin or 0.0)) & (n >= MIN_SEEDS),
                 t_p_value(effect, se, np.maximum(n - 1, 1)), 1.0)
    return float(p) if p.ndim == 0 else p


def bonferroni(m: int, level: float = LEVEL) -> float:
    """Per-comparison confidence level keeping the family-wise level over m comparisons."""
    return 1.0 - (1.0 - level) / max(m, 1)


def holm_levels(p_values: Sequence[float], alpha: float = 1.0 - LEVEL) -> list[float]:
    """Confidence levels of Holm's step-down procedure: the hypothesis with the i-th smallest
    p-value (i = 1..m) is tested at alpha / (m - i + 1) until the first that fails; that one and
    every later one are tested at the failing level (so none of them is rejected)."""
    m = len(p_values)
    levels = [0.0] * m
    stop = None
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        a = alpha / (m - rank)
        if stop is None and not p_values[i] < a:
            stop = a
        levels[i] = 1.0 - (a if stop is None else stop)
    return levels
