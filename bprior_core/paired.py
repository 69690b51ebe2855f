"""Paired statistics over seeds: effects, Student-t intervals, verdicts, multiple testing.

Values are keyed by seed ({seed: value}); two arms are compared on the seeds present in both,
d_s = A(s) - B(s), oriented so that positive means "A is better". An effect is the mean of the
d_s, its standard error the sample std (ddof=1) over sqrt(n), its interval Student's t at the
given level. A `margin` is the smallest effect that matters; `verdict` reads an oriented
interval against 0 and the margin:

- supported: the interval is above 0;
- contradicted: the interval is below 0;
- not supported: it contains 0 and its upper bound stays below the margin (too small to matter);
- inconclusive: it contains 0 and reaches the margin, there is no margin, or fewer than
  MIN_SEEDS seeds.

This module is the mathematics only: it knows nothing of claims, arms or result records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

MIN_SEEDS = 3
LEVEL = 0.95
VERDICTS = ("supported", "not supported", "contradicted", "inconclusive")

Seeded = dict[int, float]  # seed -> value


@dataclass(frozen=True)
class Comparison:
    """A paired effect over seeds (positive = the direction tested) with its t interval."""

    effect: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    seeds: tuple[int, ...]
    level: float = LEVEL
    margin: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, with the verdict this comparison alone gives."""
        return {"effect": self.effect, "se": self.se, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "n_seeds": self.n, "seeds": list(self.seeds),
                "level": self.level, "margin": self.margin, "verdict": verdict(self)}


def one_sample(values: Mapping[int, float], level: float = LEVEL,
               margin: float | None = None) -> Comparison:
    """Mean of per-seed values with its standard error and Student-t interval at `level`."""
    seeds = tuple(sorted(values))
    x = np.array([values[s] for s in seeds], dtype=float)
    if x.size == 0:
        return Comparison(None, None, None, None, 0, seeds, level, margin)
    effect = float(x.mean())
    if x.size < 2:
        return Comparison(effect, None, None, None, 1, seeds, level, margin)
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1)) * se
    return Comparison(effect, se, effect - half, effect + half, int(x.size), seeds, level,
                      margin)


def contrast(terms: Sequence[tuple[float, Mapping[int, float]]]) -> Seeded:
    """Per-seed linear combination sum(coef * values[seed]) over seeds present in every term."""
    if not terms:
        return {}
    common = set.intersection(*(set(values) for _, values in terms))
    return {s: float(sum(coef * values[s] for coef, values in terms)) for s in sorted(common)}


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], higher_is_better: bool = True,
    level: float = LEVEL, margin: float | None = None,
) -> Comparison:
    """Paired A - B over common seeds, oriented so that positive means A is better."""
    sign = 1.0 if higher_is_better else -1.0
    return one_sample(contrast([(sign, a), (-sign, b)]), level, margin)


def slopes(x: Sequence[float], series: Sequence[Mapping[int, float]]) -> Seeded:
    """Per seed, the least-squares slope of series[i][seed] against x[i], for the seeds present
    in every series."""
    if len(x) != len(series):
        raise ValueError(f"{len(x)} x values but {len(series)} series")
    seeds = set.intersection(*(set(s) for s in series)) if series else set()
    xs = np.asarray(x, dtype=float)
    return {seed: float(np.polyfit(xs, [s[seed] for s in series], 1)[0])
            for seed in sorted(seeds)}


def verdict(c: Comparison) -> str:
    """Verdict of one oriented comparison (see the module docstring)."""
    if c.n < MIN_SEEDS or c.ci_low is None or c.ci_high is None:
        return "inconclusive"
    if c.ci_low > 0:
        return "supported"
    if c.ci_high < 0:
        return "contradicted"
    if c.margin is not None and c.ci_high < c.margin:
        return "not supported"
    return "inconclusive"


def combine(verdicts: Sequence[str]) -> str:
    """Verdict of a compound hypothesis from its parts' verdicts: contradicted if any part is
    contradicted; else inconclusive if any is (or there are no parts); else supported if all
    are supported; else not supported."""
    if not verdicts or "contradicted" in verdicts:
        return "contradicted" if verdicts else "inconclusive"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "supported" if all(v == "supported" for v in verdicts) else "not supported"


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
