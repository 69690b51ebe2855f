"""Small HTML and Markdown pieces of the report: escaping, verdict badges, effects, intervals."""

from __future__ import annotations

import html
from collections.abc import Mapping

from .. import tables
from ..claim_text import (
    VERDICT_COLOURS,
)

_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~")


def _md(text) -> str:
    """Text from a profile or a record as literal Markdown: HTML-escaped (nbconvert passes
    raw HTML in Markdown through) and every Markdown character backslash-escaped (no links,
    no emphasis, no code spans can be made by it)."""
    escaped = html.escape(str(text if text is not None else ""), quote=False)
    return "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in escaped)


def _esc(text) -> str:
    return html.escape(str(text if text is not None else ""))


def verdict_badge(verdict: str) -> str:
    colour = VERDICT_COLOURS.get(verdict, "#57606a")
    return (f'<span style="background:{colour};color:white;padding:2px 8px;border-radius:10px;'
            f'white-space:nowrap">{_esc(verdict)}</span>')


def uninformative_badge() -> str:
    """The label beside a verdict the positive control makes uninformative."""
    return ('<span style="border:2px solid #cf222e;color:#cf222e;padding:0 6px;'
            'border-radius:10px;white-space:nowrap;font-weight:bold">uninformative</span>')


def _verdict_cell(verdict: str, evidence: Mapping, metric: str, quiet: bool = False) -> str:
    """A verdict badge, the uninformative label where a control failed (`quiet`: in small
    grey words, for the secondary metrics' columns), the mde with its seeds, and the seeds an
    mde of one margin would have needed."""
    label = ""
    if evidence.get("uninformative"):
        label = (f" <small style='color:#57606a'>(the controls are not supported on "
                 f"{_esc(metric.upper())}: uninformative)</small>" if quiet
                 else f" {uninformative_badge()}")
    mde = evidence.get("mde")
    small = ""
    if mde is not None:
        seeds = evidence.get("n_seeds")
        small = f"<br><small>mde {_esc(_magnitude(mde, metric))}" + (
            f", {_esc(seeds)} seeds" if seeds else "")
        needed = evidence.get("seeds_needed")
        margin = evidence.get("margin")
        if needed and margin:
            small += (f"; {_esc(needed)} for an mde of "
                      f"{_esc(_magnitude(margin, metric))}")
        small += "</small>"
    return f"{verdict_badge(verdict)}{label}{small}"


def _magnitude(x: float | None, metric: str) -> str:
    """An unsigned size of effect: accuracy in points, other metrics as they are."""
    if x is None:
        return "-"
    return f"{100 * x:.2f} points" if metric == "accuracy" else f"{x:.4f}"


def _effect(x: float | None, metric: str) -> str:
    """A signed effect: accuracy in points (x 100), other metrics as they are."""
    if x is None:
        return "-"
    return f"{100 * x:+.2f}" if metric == "accuracy" else f"{x:+.4f}"


def _interval(d: Mapping, metric: str) -> str:
    """'lo .. hi'; an accuracy interval that reaches past what accuracy allows (a difference of
    two accuracies lies in [-100, 100] points; too few seeds) is cut there and says so."""
    if d.get("ci_low") is None or d.get("ci_high") is None:
        return "no interval (fewer than 2 seeds)"
    lo, hi = d["ci_low"], d["ci_high"]
    if metric == "accuracy" and (lo < -1 or hi > 1):
        return (f"{_effect(max(lo, -1), metric)} .. {_effect(min(hi, 1), metric)} (cut: wider "
                "than accuracy allows)")
    return f"{_effect(lo, metric)} .. {_effect(hi, metric)}"


def _se_text(d: Mapping, metric: str) -> str:
    """The standard error, and its parts where the bootstrap gave them."""
    if d.get("se") is None:
        return "-"
    se = _magnitude(d["se"], metric).replace(" points", "")
    if d.get("se_points") is None:
        return f"{se} (seeds)"
    parts = "/".join(_magnitude(d[k], metric).replace(" points", "")
                     for k in ("se_seeds", "se_points"))
    return f"{se} ({parts})"


def _size(n) -> str:
    return tables.size_label(n)


def _p_text(p: float | None) -> str:
    """'= 0.0123', or '<= 1e-06' at the floor of the claims' p-values (their bisection's)."""
    if p is None:
        return "= -"
    return "<= 1e-06" if p <= 1e-6 else f"= {p:.3g}"
