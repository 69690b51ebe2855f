"""How the report, the claims and the tables write numbers: training sizes, effects and their
intervals, standard errors, levels and p-values. One place, so a number reads the same in a
claim's sentence, its evidence table and the explorer.

Accuracy effects are in percentage points (x 100); other metrics as they are. Prose
(`effect_text`, `comparison_text`) rounds more than table cells (`effect_cell` and the other
`*_cell` functions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .vocabulary import ACCURACY


def size_key(n: float | None) -> float:
    """Sort key for training sizes: 0 (or None) means the full set, the largest."""
    return math.inf if not n else float(n)


def size_label(n: float | None) -> str:
    """A training size as text: `full` for the full set (0, None or inf), else the integer."""
    return "full" if not n or n == math.inf or (isinstance(n, float) and math.isnan(n)) \
        else str(int(n))


def sizes_text(sizes: Sequence[int]) -> str:
    """`size 10`, `sizes 10-full` or `no sizes`."""
    if not sizes:
        return "no sizes"
    ordered = sorted(sizes, key=size_key)
    lo, hi = size_label(ordered[0]), size_label(ordered[-1])
    return f"size {lo}" if lo == hi else f"sizes {lo}-{hi}"


def _effect(x: float | None, metric: str, accuracy_spec: str, other_spec: str,
            missing: str) -> str:
    """An effect with its own format spec: accuracy in percentage points (x 100), other
    metrics as they are; `missing` for None."""
    if x is None:
        return missing
    return format(100 * x, accuracy_spec) if metric == ACCURACY else format(x, other_spec)


def effect_text(x: float | None, metric: str) -> str:
    """Signed effect in prose: accuracy in percentage points, other metrics as they are."""
    return _effect(x, metric, "+.1f", "+.3f", "n/a")


def comparison_text(c: Any, metric: str) -> str:
    """E.g. '+2.1 points accuracy (95% CI +0.8..+3.4, 5 seeds x test points)' for a
    comparison (`paired.Comparison`) or its `to_dict` form."""
    d = c.to_dict() if hasattr(c, "to_dict") else c
    if d.get("effect") is None:
        return f"no paired seeds for {metric}"
    unit = "points accuracy" if metric == ACCURACY else f"{metric} reduction"
    ci = (f"{100 * d['level']:.4g}% CI {effect_text(d['ci_low'], metric)}.."
          f"{effect_text(d['ci_high'], metric)}" if d.get("ci_low") is not None
          else "no interval")
    over = "seeds" if d.get("uncertainty", "seeds") == "seeds" else "seeds x test points"
    return f"{effect_text(d['effect'], metric)} {unit} ({ci}, {d['n_seeds']} {over})"


def magnitude_cell(x: float | None, metric: str) -> str:
    """An unsigned size of effect: accuracy in points, other metrics as they are."""
    text = _effect(x, metric, ".2f", ".4f", "-")
    return f"{text} points" if metric == ACCURACY and x is not None else text


def effect_cell(x: float | None, metric: str) -> str:
    """A signed effect: accuracy in points (x 100), other metrics as they are."""
    return _effect(x, metric, "+.2f", "+.4f", "-")


def interval_cell(d: Mapping, metric: str) -> str:
    """'lo .. hi'; an accuracy interval that reaches past what accuracy allows (a difference of
    two accuracies lies in [-100, 100] points; too few seeds) is cut there and says so."""
    if d.get("ci_low") is None or d.get("ci_high") is None:
        return "no interval (fewer than 2 seeds)"
    lo, hi = d["ci_low"], d["ci_high"]
    if metric == ACCURACY and (lo < -1 or hi > 1):
        return (f"{effect_cell(max(lo, -1), metric)} .. {effect_cell(min(hi, 1), metric)} "
                "(cut: wider than accuracy allows)")
    return f"{effect_cell(lo, metric)} .. {effect_cell(hi, metric)}"


def se_cell(d: Mapping, metric: str) -> str:
    """The standard error, and its parts where the bootstrap gave them."""
    if d.get("se") is None:
        return "-"
    se = magnitude_cell(d["se"], metric).replace(" points", "")
    if d.get("se_points") is None:
        return f"{se} (seeds)"
    parts = "/".join(magnitude_cell(d[k], metric).replace(" points", "")
                     for k in ("se_seeds", "se_points"))
    return f"{se} ({parts})"


def p_text(p: float | None) -> str:
    """'= 0.0123', or '<= 1e-06' at the floor of the claims' p-values (their bisection's)."""
    if p is None:
        return "= -"
    return "<= 1e-06" if p <= 1e-6 else f"= {p:.3g}"


def format_level(level: float | None) -> str:
    """A confidence level as a percentage with the digits it needs (95 %, 99.29 %)."""
    if _missing(level):
        return "-"
    return f"{100 * level:.4g} %"


def format_mean_se(mean: float, se: float, digits: int = 2) -> str:
    """`12.34 ± 0.56` (or just the mean when the error is undefined)."""
    if _missing(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def _missing(x: Any) -> bool:
    """None, NaN, or a missing value of pandas (`pd.NA`)."""
    if x is None:
        return True
    try:
        return math.isnan(x)
    except TypeError:
        return True
