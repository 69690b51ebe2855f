"""Small HTML and Markdown pieces of the report: escaping, verdict badges, effects, intervals."""

from __future__ import annotations

import html
from collections.abc import Mapping

from ..claims.text import VERDICT_COLOURS
from ..formatting import magnitude_cell

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
        small = f"<br><small>mde {_esc(magnitude_cell(mde, metric))}" + (
            f", {_esc(seeds)} seeds" if seeds else "")
        needed = evidence.get("seeds_needed")
        margin = evidence.get("margin")
        if needed and margin:
            small += (f"; {_esc(needed)} for an mde of "
                      f"{_esc(magnitude_cell(margin, metric))}")
        small += "</small>"
    return f"{verdict_badge(verdict)}{label}{small}"


