"""The report: run the notebooks with papermill, render them with nbconvert, link them up.

`build_report` validates the profile and checks prior files BEFORE writing anything, then runs
`notebooks/01_learn_prior` ... `06_report` in order (executed copies in
`outputs/<profile>/notebooks/`), renders each to HTML with code hidden (`outputs/<profile>/html/`),
and writes `outputs/<profile>/report.html`: the rendered `06_report` with links to the
experiment pages. The pages are self-contained: figures are embedded as PNG, tables are plain
HTML, and nbconvert's lab template is rendered without the scripts it loads from a CDN
(require.js, MathJax, mermaid, widgets), so a page reads offline and a published report calls
out to nothing. TeX in markdown shows as source; the report's own prose writes no TeX.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import paired, tables
from .atomic import atomic_write_text
from .chains import RHAT_MAX
from .claim_text import (
    HOLM_RULE,
    INTERVAL_RULE,
    NONLEARNED_TEXT,
    PARTS_RULE,
    PER_SIZE_RULE,
    UNINFORMATIVE_TEXT,
    VERDICT_COLOURS,
    VERDICT_RULE,
    scale_label,
)
from .claims import (
    CONTROL_ID,
    COVARIANCE_ID,
    MARGINS,
    comparison_label,
    forest_rows,
)
from .config import (
    evaluation_seeds,
    fixed_protocol,
    load_profile,
    profile_path,
    validation_from_pool,
)
from .mcmc import MIN_DRAWS
from .study import output_dir, plan
from .study.execution import counts_text
from .study.planning import control_size
from .study.preflight import random_start
from .study.runner import run_study
from .vocabulary import ONE_PRIOR_EXPERIMENTS, TUNED_EXPERIMENTS, VIEWED_EXPERIMENTS

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ("01_learn_prior", "02_rank", "03_scale", "04_inference", "05_temperature",
             "06_report")
PAGE_TITLES = {
    "01_learn_prior": "1. Learned priors",
    "02_rank": "2. Rank",
    "03_scale": "3. Scale",
    "04_inference": "4. Inference comparison",
    "05_temperature": "5. Temperature",
    "06_report": "Report",
    "explore": "Explore",
}

# ----------------------------------------------------------------------------- HTML pieces


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


def control_banner_html(claims: Sequence[Mapping]) -> str:
    """A prominent warning when the positive control is not supported (the claims about a
    prior's effect are then uninformative); empty otherwise."""
    control = next((c for c in claims if c.get("id") == CONTROL_ID), None)
    if control is None or control.get("verdict") == "supported":
        return ""
    if control.get("verdict") == "not run":
        return ('<p class="control-note"><i>This profile runs no positive control '
                "(`experiments.control`): the verdicts below are not checked against a prior "
                "whose effect the testbed must show.</i></p>")
    state = control.get("verdict")
    return ('<div class="control-warning" style="border:3px solid #cf222e;background:#ffebe9;'
            'padding:10px;margin:8px 0;font-size:110%"><b>The testbed cannot detect a prior '
            f"effect</b> (positive control PC: {_esc(state)}). {_esc(UNINFORMATIVE_TEXT)}</div>")


def control_html(claims: Sequence[Mapping]) -> str:
    """The positive controls first: the warning when PC fails, then each control's verdict and
    evidence (PC: oracle vs zero-mean prior, and vs the isotropic prior as evidence only; PC2:
    the task-shaped vs the isotropic prior)."""
    out = control_banner_html(claims)
    for cid in (CONTROL_ID, COVARIANCE_ID):
        control = next((c for c in claims if c.get("id") == cid), None)
        if control is None:
            continue
        ev = control.get("evidence") or {}
        out += (f"<p><b>{_esc(cid)}</b> {_esc(control.get('title'))}: "
                f"{_verdict_cell(control['verdict'], ev, ev.get('metric', 'accuracy'))}</p>"
                f"<p>{_esc(control.get('summary'))}</p>" + claim_evidence_html(control))
    return out


def claim_sentence(claim: Mapping) -> str:
    """The verdict table's "this run" cell in one sentence: the claim's judged comparisons
    (effect and interval, in points), at most three, with a count of the rest."""
    rows = forest_rows([claim])
    if not rows:
        return str((claim.get("evidence") or {}).get("reason") or "no comparison to judge")
    parts = [f"{r['label']}: {100 * r['effect']:+.1f}" + (
        f" ({100 * r['ci_low']:+.1f}..{100 * r['ci_high']:+.1f})"
        if r["ci_low"] is not None else "") for r in rows[:3]]
    more = f", and {len(rows) - 3} more" if len(rows) > 3 else ""
    return f"{'; '.join(parts)}{more} (points, judged intervals)."


def verdict_table_html(claims: list[dict]) -> str:
    """One row per claim (the positive control PC first): the claim, the paper's and the
    reproduction's findings, this run's evidence and the verdict on accuracy with its minimum
    detectable effect (mde) and, where the control failed, the label 'uninformative'; then the
    verdicts on the other metrics where the claims carry them
    (`claims.evaluate_claims_by_metric`)."""
    others = list((claims[0]["evidence"].get("by_metric") or {}) if claims else {})
    head = ("<tr><th>claim</th><th>paper</th><th>reproduction (MLRC 2022)</th>"
            "<th>this run</th><th>verdict (accuracy), mde</th>"
            + "".join(f"<th>{_esc(m.upper())}</th>" for m in others) + "</tr>")
    cell = '<td style="text-align:left;vertical-align:top">'

    def other_cells(c: dict) -> str:
        by_metric = c["evidence"].get("by_metric") or {}
        return "".join(f"{cell}{_verdict_cell(by_metric[m]['verdict'], by_metric[m], m, True)}"
                       "</td>" if m in by_metric else f"{cell}not judged</td>" for m in others)

    def row(c: dict) -> str:
        ev = c["evidence"]
        what = ("testbed check, 95 %, outside the Holm family"
                if c["id"] in (CONTROL_ID, COVARIANCE_ID) else None)
        note = f"<br><small><i>{_esc(what)}</i></small>" if what else ""
        rule = (f"<details><summary><small>the rule</small></summary><small>"
                f"{_esc(c.get('rule'))}</small></details>" if c.get("rule") else "")
        return (f"<tr>{cell}<b>{_esc(c['id'])}</b> {_esc(c.get('title'))}{note}<br><small>"
                f"{_esc(c.get('statement'))}</small>{rule}</td>{cell}{_esc(c.get('paper'))}</td>"
                f"{cell}{_esc(c.get('reproduction'))}</td>{cell}{_esc(claim_sentence(c))}"
                f"<details><summary><small>in full</small></summary><small>"
                f"{_esc(c.get('summary'))}</small></details></td>"
                f"{cell}{_verdict_cell(c['verdict'], ev, ev.get('metric', 'accuracy'))}</td>"
                f"{other_cells(c)}</tr>")

    return (control_banner_html(claims)
            + '<table class="verdicts" border="1" style="border-collapse:collapse;'
            'font-size:90%">' + head + "".join(row(c) for c in claims) + "</table>")


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


def _verdict_of(d: Mapping) -> str:
    """The verdict a comparison carries, else the one `paired.verdict` gives its numbers."""
    if d.get("verdict"):
        return d["verdict"]
    c = paired.Comparison(d.get("effect"), d.get("se"), d.get("ci_low"), d.get("ci_high"),
                          int(d.get("n_seeds") or 0), (), d.get("level") or paired.LEVEL,
                          d.get("margin"))
    return paired.verdict(c)


EVIDENCE_HEAD = ("<tr><th>comparison</th><th>effect</th><th>interval</th><th>level</th>"
                 "<th>seeds</th><th>SE (seeds / test images)</th><th>mde</th><th>verdict</th>"
                 "</tr>")
_TD = '<td style="text-align:left">'
_NOWRAP = '<td style="white-space:nowrap">'


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


def _evidence_row(label: str, d: Mapping | None, metric: str, strong: bool = False) -> str:
    """One comparison as a table row: label, effect, interval, level, seeds, SE, mde and the
    verdict (a descriptive row, shown for information only, has none)."""
    d = d or {}
    text = f"<b>{_esc(label)}</b>" if strong else _esc(label)
    if d.get("effect") is None and d.get("reason"):
        return (f"<tr>{_TD}{text}</td><td colspan=6>{_esc(d['reason'])}</td>"
                f"<td>{verdict_badge(d.get('verdict', 'inconclusive'))}</td></tr>")
    mark = "<i>descriptive</i>" if d.get("descriptive") else verdict_badge(_verdict_of(d))
    return (f"<tr>{_TD}{text}</td><td>{_esc(_effect(d.get('effect'), metric))}</td>"
            f"{_NOWRAP}{_esc(_interval(d, metric))}</td>"
            f"{_NOWRAP}{_esc(tables.format_level(d.get('level')))}</td>"
            f"<td>{_esc(d.get('n_seeds', '-'))}</td>{_NOWRAP}{_esc(_se_text(d, metric))}</td>"
            f"{_NOWRAP}{_esc(_magnitude(d.get('mde'), metric))}</td><td>{mark}</td></tr>")


def _evidence_table(rows: Sequence[str], caption: str = "") -> str:
    cap = f"<caption style='text-align:left'>{caption}</caption>" if caption else ""
    return (f'<table class="bprior-table evidence" border="1" style="border-collapse:collapse;'
            f'font-size:85%;margin-bottom:8px">{cap}{EVIDENCE_HEAD}{"".join(rows)}</table>')


def _size(n) -> str:
    return tables.size_label(n)


def _per_size_rows(per_size: Sequence[Mapping] | None, metric: str, prefix: str = "") -> list:
    return [_evidence_row(f"{prefix}n = {_size(r['n_train'])}"
                          + (" (descriptive, the claim's level)" if r.get("descriptive")
                             else ""), r, metric)
            for r in per_size or []]


def _arms_label(arms: Sequence[str] | None) -> str:
    return comparison_label(arms) if arms else "comparison"


def _rank_scale_text(row: Mapping, judged: float | None) -> str:
    """'scale 1e+03: best rank's validation NLL 0.4123, 62.0 % of the coordinates bound
    (judged here)'."""
    nll = "-" if row.get("val_nll") is None else f"{row['val_nll']:.4f}"
    bound = "-" if row.get("bound_share") is None else f"{100 * row['bound_share']:.1f} %"
    here = " (judged here)" if row["scale"] == judged else ""
    return (f"scale {_scale_text(row['scale'])}: best rank's validation NLL {nll}, {bound} of "
            f"the coordinates bound{here}")


# part (b) of C1 reads each comparison of a smaller rank with the best one as "is it worse?"
SATURATION_WORDS = {"contradicted": "worse", "not supported": "not worse",
                    "supported": "better", "inconclusive": "undecided"}


def _rank_evidence(ev: Mapping, metric: str) -> str:
    """C1: the scales the ranks ran at (validation NLL of the best rank, share of coordinates
    the prior binds; the judged one marked), then per part every rank's comparison."""
    out = []
    scales = ev.get("scales") or []
    if len(scales) > 1 or any(x.get("bound_share") is not None for x in scales):
        items = "".join(f"<li>{_esc(_rank_scale_text(x, ev.get('scale')))}</li>"
                        for x in scales)
        out.append(f"<p>Scales of the rank experiment:</p><ul>{items}</ul>")
    titles = {"a": "(a) each rank >= 1 vs rank 0", "b": "(b) smaller ranks vs the best rank",
              "c": "(c) each rank >= 1 vs rank 0 at fixed total variance"}
    for key, part in (ev.get("parts") or {}).items():
        rows = []
        for r in part.get("per_rank") or []:
            vs = r.get("vs_rank", 0)
            best = " (best, chosen on " + str(part.get("chosen_on", "validation")) + ")" \
                if key != "b" and r["rank"] == part.get("best_rank") else ""
            if key == "b":  # the saturation test asks whether a smaller rank is worse
                r = {**r, "verdict": SATURATION_WORDS.get(r.get("verdict"), r.get("verdict"))}
            rows.append(_evidence_row(f"rank {r['rank']} vs rank {vs}{best}", r, metric))
        extra = ""
        if key == "b":
            saturation = part.get("saturation_rank")
            extra = (f"; saturation rank "
                     f"{_esc(saturation if saturation is not None else 'undetermined')} "
                     f"(small if <= {_esc(part.get('small_threshold'))})")
        if part.get("reason"):
            extra += f"; {_esc(part['reason'])}"
        caption = (f"{_esc(titles.get(key, key))}: {verdict_badge(part.get('verdict', '-'))}"
                   f"{extra}")
        out.append(_evidence_table(rows, caption) if rows else f"<p>{caption}</p>")
    return "".join(out)


def _scale_evidence(ev: Mapping, metric: str) -> str:
    """C2: per convention (the headline one first) and prior source, parts (a), (b), (c) and
    the un-rescaled prior against the from-scratch runs."""
    out = []
    conventions = ev.get("by_convention") or {}
    head = ev.get("convention")
    for label in sorted(conventions, key=lambda c: c != head):
        conv = conventions[label]
        rows = []
        for source, parts in (conv.get("sources") or {}).items():
            a, b, c = parts.get("a", {}), parts.get("b", {}), parts.get("c", {})
            rows.append(_evidence_row(f"{source}", {"verdict": parts["verdict"],
                                      "reason": "parts (a)-(c) combined"}, metric, True))
            if "best_scale" in a:
                sc = _scale_text
                segment = b.get("segment") or [a["vs_scale"]]
                rows += [
                    _evidence_row(f"{source} (a) best {sc(a['best_scale'])} vs un-rescaled "
                                  f"{sc(a['vs_scale'])}", a, metric),
                    _evidence_row(f"{source} (b) rise over the sweep, {sc(segment[0])} to "
                                  f"{sc(segment[-1])} (fitted slope x "
                                  f"{b.get('decades', 0):g} decades)", b, metric),
                    _evidence_row(f"{source} (c) best {sc(c['best_scale'])} vs largest "
                                  f"{sc(c['vs_scale'])}", c, metric)]
            else:
                rows.append(_evidence_row(f"{source} (a)-(c)", a, metric))
            if parts.get("scratch"):
                rows.append(_evidence_row(f"{source}: un-rescaled vs from scratch "
                                          "(evidence only)", parts["scratch"], metric))
        caption = (f"convention {_esc(label)}{' (headline)' if label == head else ''}: "
                   f"{verdict_badge(conv.get('verdict', '-'))}")
        out.append(_evidence_table(rows, caption))
    return "".join(out)


def _scale_text(x: float) -> str:
    """A prior scale as text (1e+06, 1000)."""
    return f"{x:g}"


def _unit_label(unit: Mapping, judged: str) -> str:
    if unit.get("n_train") is not None:
        return f"n = {_size(unit['n_train'])} (judged)"
    return f"{judged} (judged)"


def _part_table(part: Mapping, metric: str) -> str:
    """One comparison of a claim: its judged rows (per size, at the smallest size, pooled or
    the fall over sizes, at the part level, with verdicts), then the other rows: the sizes
    beside a judged size (same level, not entering the verdict), the pooled comparison's sizes
    (descriptive, at the claim's level) or C5's gain per size."""
    judged = part.get("judged", "pooled")
    units = part.get("units") or []
    rows = [_evidence_row(_unit_label(u, judged), u, metric, True) for u in units]
    judged_sizes = {u.get("n_train") for u in units}
    prefix = "gain at " if "gain_per_size" in part else "beside it, at "
    others = [r for r in (part.get("per_size") or part.get("gain_per_size") or [])
              if "gain_per_size" in part or r.get("n_train") not in judged_sizes]
    rows += _per_size_rows(others, metric, prefix)
    role = part.get("role", "claim")
    caption = (f"{_esc(part.get('label') or _arms_label(part.get('arms')))}"
               + (f" ({_esc(role)})" if role != "claim" else "")
               + f": {verdict_badge(part.get('verdict', '-'))}; judged {_esc(judged)}"
               + (f": {_esc(part['why'])}" if part.get("why") and judged == "per size" else "")
               + (f"; each judged row at {_esc(tables.format_level(part.get('part_level')))}"
                  if part.get("part_level") else ""))
    return _evidence_table(rows, caption)


def _pair_evidence(ev: Mapping, claim: Mapping, metric: str) -> str:
    """PC, C3, C4, C4b, C5, H1: per comparison (part), the judged rows (per size, pooled or
    the slope) with their verdicts, then the description at the claim's level. Evidence
    without parts (older claims) shows its pooled comparison and its sizes."""
    parts = [p for p in (ev.get("parts") or []) if isinstance(p, Mapping)]
    if parts and all("units" in p for p in parts):
        return "".join(_part_table(p, metric) for p in parts)
    sections = []
    if ev.get("per_size") is not None:
        pooled = {k: ev.get(k) for k in ("effect", "se", "ci_low", "ci_high", "n_seeds",
                                         "level", "margin", "mde")}
        pooled["verdict"] = claim["verdict"]
        sections.append((ev.get("arms"), pooled, ev.get("per_size"), "pooled over sizes"))
    for part in parts:
        if "gain_per_size" in part:
            sections.append((part.get("arms"), part.get("comparison"), part["gain_per_size"],
                             "fall of the gain per decade of n"))
        else:
            sections.append((part.get("arms"), part.get("comparison"), part.get("per_size"),
                             "pooled over sizes"))
    out = []
    for arms, pooled, per_size, what in sections:
        prefix = "gain at " if what.startswith("fall") else "at "
        rows = [_evidence_row(what, pooled, metric, True),
                *_per_size_rows(per_size, metric, prefix)]
        out.append(_evidence_table(rows, _esc(_arms_label(arms))))
    return "".join(out)


def _by_metric_table(by_metric: Mapping) -> str:
    """The same claim judged on other metrics: verdict, effect, interval, level, margin."""
    if not by_metric:
        return ""
    def effect(d: Mapping, m: str) -> str:
        if d.get("effect") is None:
            return "in its parts (summary)"
        return _effect(d["effect"], m)

    def interval(d: Mapping, m: str) -> str:
        return "in its parts" if d.get("ci_low") is None else _interval(d, m)

    rows = "".join(
        f"<tr>{_TD}{_esc(m.upper())}</td><td>{_esc(effect(d, m))}</td>"
        f"{_NOWRAP}{_esc(interval(d, m))}</td>"
        f"{_NOWRAP}{_esc(tables.format_level((d.get('holm') or {}).get('level')))}</td>"
        f"<td>{_esc(d.get('margin'))}</td><td>{_esc(_magnitude(d.get('mde'), m))}</td>"
        f"<td>{_verdict_cell(d.get('verdict', '-'), {'uninformative': d.get('uninformative')}, m)}"
        f"</td>{_TD}<small>{_esc(d.get('summary'))}</small></td></tr>"
        for m, d in by_metric.items())
    return ('<table class="bprior-table evidence" border="1" style="border-collapse:collapse;'
            'font-size:85%"><caption style="text-align:left">the same claim on other metrics '
            "(reduction = positive)</caption><tr><th>metric</th><th>effect</th><th>interval"
            "</th><th>level</th><th>margin</th><th>mde</th><th>verdict</th><th>summary</th></tr>"
            + rows + "</table>")


def claim_evidence_html(claim: Mapping) -> str:
    """One claim's evidence as small tables: its comparisons (per part, per size or per
    convention, as the claim has them) with effect, interval, level, seeds, standard error,
    mde and verdict, its verdicts on other metrics, and the raw evidence collapsed at the
    end."""
    ev = claim.get("evidence") or {}
    metric = ev.get("metric", "accuracy")
    unit = "accuracy points" if metric == "accuracy" else metric
    holm = ev.get("holm") or {}
    level = tables.format_level(holm.get("level") or ev.get("level"))
    where = ("the control's level" if claim["id"] in (CONTROL_ID, COVARIANCE_ID) else
             "the claim's Holm-adjusted level" if holm else "the claim's level")
    parts = ev.get("n_parts")
    split = (f", each of its {_esc(parts)} parts at "
             f"{_esc(tables.format_level(ev.get('part_level')))} (Bonferroni)"
             if parts and parts > 1 else "")
    mde = _magnitude(ev.get("mde"), metric)
    facts = (f"Effects in {unit}, positive = the claim's direction; margin "
             f"{_esc(ev.get('margin'))}; judged at {where} {_esc(level)}{split} (p "
             f"{_esc(_p_text(holm.get('p_value')))}); mde {_esc(mde)}; intervals over "
             f"{_esc(ev.get('uncertainty') or 'seeds')}; diverged runs left "
             f"out: {_esc(ev.get('n_diverged', 0))}.")
    if claim["id"] == "C1":
        body = _rank_evidence(ev, metric)
    elif claim["id"] == "C2":
        body = _scale_evidence(ev, metric)
    else:
        body = _pair_evidence(ev, claim, metric)
    if ev.get("reason"):
        body = f"<p>{_esc(ev['reason'])}</p>" + body
    if ev.get("uninformative"):
        body = (f"<p>{uninformative_badge()} {_esc(ev.get('uninformative_reason'))}</p>"
                + body)
    raw = json.dumps(ev, indent=1, default=str)
    return (f"<p><small>{facts}</small></p>{body}{_by_metric_table(ev.get('by_metric'))}"
            f"<details><summary>all evidence as JSON</summary><pre>{_esc(raw)}</pre>"
            "</details>")


def _p_text(p: float | None) -> str:
    """'= 0.0123', or '<= 1e-06' at the floor of the claims' p-values (their bisection's)."""
    if p is None:
        return "= -"
    return "<= 1e-06" if p <= 1e-6 else f"= {p:.3g}"


def evidence_html(claims: list[dict]) -> str:
    """How each verdict was decided, and the numbers behind it, as tables per claim."""
    parts = []
    for c in claims:
        label = f" {uninformative_badge()}" if c.get("evidence", {}).get("uninformative") else ""
        parts.append(
            f"<h4>{_esc(c['id'])}: {_esc(c.get('title'))} {verdict_badge(c['verdict'])}"
            f"{label}</h4>"
            f"<p>{_esc(c.get('summary'))}</p><p><i>Rule:</i> {_esc(c.get('rule'))}</p>"
            + claim_evidence_html(c)
        )
    return "".join(parts)


# ----------------------------------------------------------------------------- page lines

RELIABILITY_MISSING = (
    "No reliability diagram: these result records hold the ECE but not its per-bin data "
    "(records written before bprior stored `reliability`, the per-bin confidence, accuracy and "
    "count of each prediction on the test set; `tables.reliability_bins`).")


def profile_html(profile: Mapping) -> str:
    """The profile a page was run with, as one line."""
    return (f"<p>Profile <code>{_esc(profile['name'])}</code>: "
            f"{_esc(profile.get('description', ''))}</p>")


def sweep_html(counts: Mapping, experiment: str = "") -> str:
    """`run_sweep`'s counts as one sentence."""
    what = f" of the {_esc(experiment)} experiment" if experiment else ""
    ran, div = counts.get("ran", 0), counts.get("diverged", 0)
    trained = (f"{ran} trained now ({div} diverged) in {counts.get('wall_time_s', 0):g} s"
               if ran else "none trained now")
    return (f"<p>{counts.get('planned', 0)} runs{what} planned: "
            f"{counts.get('skipped', 0)} read from stored results, {trained}.</p>")


def results_status_html(profile: Mapping, folder: Path, records: Sequence, planned: int,
                        profile_arg: str | None = None, root: Path | None = None) -> str:
    """Where the stored results were read from and how many there are; with none, where it
    looked and the command that fills the folder."""
    name = profile_arg or profile["name"]
    if records:
        return (f"<p>Read {len(records)} stored runs (of {planned} planned) for profile "
                f"<code>{_esc(profile['name'])}</code> from <code>{_esc(folder)}</code>.</p>")
    outputs = f" --outputs {root}" if root else ""
    return (f"<p><b>No stored results</b> for profile <code>{_esc(profile['name'])}</code>: "
            f"looked in <code>{_esc(Path(folder) / 'runs')}</code>. Fill it with "
            f"<code>bprior run --profile {_esc(name)}{_esc(outputs)}</code> (or "
            f"<code>bprior report --profile {_esc(name)}{_esc(outputs)}</code> for the HTML "
            "report too), or set <code>outputs_root</code> in the parameters cell to the "
            "folder that holds your runs.</p>")


def choice_agreement_markdown(agreement: Mapping | None) -> str:
    """`selection.choice_agreement` in words (empty where it does not apply)."""
    if not agreement:
        return ""
    agree, total = agreement["agree"], agreement["total"]
    return (f"**Held-out split vs fixed validation set.** The tuning runs were scored on each "
            f"training subset's held-out fifth (Harvey et al.'s protocol); the fixed validation "
            f"set would have chosen the same grid point in {agree} of {total} cases "
            f"({100 * agree / total:.0f} %).")


def grid_edges_markdown(rows: list[dict], flat: float = MARGINS["nll"]) -> str:
    """`selection.grid_edges` in words: which tuned arms chose an end of their grid, how often,
    and whether the metric still improved there (a validation NLL gain over the next value
    inward of at least `flat` nats, the NLL margin) or had flattened out."""
    if not rows:
        return "No tuned arms in this profile."
    found, improving = [], False
    for r in rows:
        for side, count, value, inward, gain in (
                ("smallest", r["at_low"], r["grid"][0], r["grid"][1:2], r["low_gain"]),
                ("largest", r["at_high"], r["grid"][-1], r["grid"][-2:-1], r["high_gain"])):
            if not count:
                continue
            text = (f"`{r['arm']}` chose the {side} {r['parameter']} of its grid ({value:g}) in "
                    f"{count} of {r['choices']} choices")
            if gain is not None and inward:
                trend = "still improving" if gain >= flat else "flat"
                improving |= gain >= flat
                text += (f", on average {gain:.3f} nats of validation NLL better than "
                         f"{inward[0]:g} ({trend})")
            found.append(text)
    if not found:
        return "**Grid edges.** Every validation choice lies inside its arm's grid."
    advice = ("Where the metric is still improving at the edge, the best value may lie beyond "
              "the grid and that arm is tuned only as well as its grid allows: widen "
              "`experiments.inference.tuning` on that side." if improving else
              f"Every edge gain is below {flat:g} nats (the NLL margin): the metric has "
              "flattened out there, so a wider grid would change little.")
    return "**Grid edges.** " + "; ".join(found) + ". " + advice


def _head_prior_text(weight_decay: float) -> str:
    """What the head's weight decay means in the sampled posterior."""
    if weight_decay <= 0:
        return ("The head has no weight decay, so no prior: its posterior is improper where the "
                "training data are separable.")
    variance = 1 / (50 * weight_decay)
    text = (f"The head's weight decay {weight_decay:g} is its prior: Gaussian, of variance "
            f"T / (N x {weight_decay:g}) in the sampled posterior ({variance:.3g} at T = 1 and "
            "N = 50).")
    if variance > 10:
        text += (" Chains drift for many thousand steps towards a head prior that broad (the "
                 "README's convergence measurements).")
    return text


def methods_markdown(profile: dict, records: list[dict]) -> str:
    """The settings and conventions that change results, stated from the profile."""
    t, learning, exps = profile["train"], profile["priors"]["learning"], profile["experiments"]
    wall = sum(r.get("wall_time_s") or 0 for r in records)
    diverged = sum(r["status"] != "ok" for r in records)
    devices = sorted({_md(r.get("device", "?")) for r in records}) or ["-"]
    versions = sorted({_md(r.get("version", "?")) for r in records}) or ["-"]
    draws = profile["priors"]["draws"]
    start = ("from randomly initialised weights (no `model_weights`)"
             if random_start(profile) else
             f"from `{_md(profile['model_weights'])}`" if profile["model_weights"] else
             "from randomly initialised weights")
    prior_text = (
        f"learned here with SWAG on the source task, starting {start} "
        f"({learning['pretrain_steps']} pre-training "
        f"steps, then {learning['swag_steps']} SWAG steps at lr {learning['swag_lr']} "
        f"({learning['swag_schedule']}), a snapshot every {learning['collect_every']} steps, "
        f"rank {learning['max_rank']}, batch {learning['batch_size']}); **{draws} independent "
        f"draw(s) per source** (prior-learning seeds 0..{draws - 1}); downstream seed s uses draw "
        "s mod the number of draws, so paired differences over seeds carry prior-to-prior "
        "variation too. " + _sources_text(profile)
        if profile["priors"]["source"] == "learn"
        else "read from the authors' four-file format: "
        + "; ".join(f"{_md(name)} from {_md(prefix)}"
                    for name, prefix in profile["priors"]["files"].items() if prefix)
        + f", non-positive variances clamped to {profile['priors']['variance_floor']} (one "
        "draw per source: prior-to-prior variation is not measured)"
    )
    rule = profile["priors"]["rescaling_rule"]
    rule_text = {
        "same": "Sigma' = s (diag(variance) + F^T F) + eps I: variance and covariance scaled by "
                "the same factor s (the paper's text)",
        "authors": "Sigma' = s^2 F^T F + diag(s variance) + eps I (the authors' code)",
    }[rule]
    clip = ("no gradient clipping" if t["grad_clip"] is None else
            f"backbone gradient clipped at norm {t['grad_clip']}")
    cap = t["prior_step_cap"]
    step_text = ("plain explicit steps on the prior term" if cap is None else
                 f"steps preconditioned by the prior's whole covariance, M = a Sigma (I + a "
                 f"Sigma)^-1, so that no step on the prior sees more than lr x curvature = "
                 f"{cap:g} and its low-rank directions relax as fast as the others (target "
                 "density and MAP unchanged)")
    kept = t["cycles"] - t["burn_in_cycles"]
    protocol = ("; the reproduction's protocol draws one image from each of the first n classes "
                "for n <= 100 but tests on ALL classes, so few-shot models are scored on classes "
                "they never saw" if profile["data"]["subset_protocol"] == "reproduction" else "")
    val = profile["data"]["val_size"]
    origin = {"flowers102": "taken from the official validation split",
              "imagefolder": "taken from the val/ folder" if not validation_from_pool(profile)
              else None}.get(profile["data"]["dataset"]) or (
        "drawn once from the labelled pool and removed from it (never in a training subset)")
    val_text = (f"validation set of {val} images, class-balanced, {origin}; it only selects "
                "hyper-parameters, ranks and scales, and the test set only measures the "
                "selected runs" if val else
                "no validation set (best ranks and scales are then picked on test means with "
                "Bonferroni-corrected intervals)")
    margins = profile["claims"]["margins"]
    return f"""
- **Data**: `{profile['data']['dataset']}`,
  subsets `{profile['data']['subset_protocol']}`{protocol},
  test set of {profile['data']['test_size'] or 'all'} images (fixed); {val_text}.
  Model `{profile['model']}`.
- **Seeds**: {_seeds_text(profile)} A seed fixes the training subset, the head's
  initialisation, the batch order and the sampler noise, the same for every arm (common random
  numbers); mean ± standard error over seeds; claims use paired differences over seeds with t
  intervals whose standard error includes the test set's sampling error where the runs' test
  predictions are stored (see Intervals). Verdicts are conditional on the prior's source
  images and the recipe that learned it: each draw is one run of that recipe.
- **Priors**: {prior_text}. Covariance diag(variance) + F^T F; rank r keeps the top r principal
  directions of the SWAG deviations.
- **Rescaling rule**: `{rule}`: {rule_text}; eps = {profile['priors']['eps']:g}. The scale
  experiment also sweeps the conventions listed below; the headline C2 verdict uses this one.
- **Downstream training**: {_steps_text(profile)}, batch {t['batch_size']}, lr {t['lr']},
  momentum {t['momentum']}, weight decay {t['weight_decay']} (head only when a prior is used),
  {clip}; {step_text}. Loss = mean cross-entropy minus log p(theta) / N (N = training-set
  size). Samplers and SGD take the same number of gradient steps.
- **Samplers**: `{exps['inference']['bayes_method']}` with a cyclical cosine step size,
  {t['cycles']} cycles, exploration fraction {t['explore_fraction']} (no noise), then sampling;
  {t['samples_per_cycle']} sample(s) per cycle; the first {t['burn_in_cycles']} cycle(s) are
  burn-in (left out), so {kept * t['samples_per_cycle']} samples per chain are averaged, and a
  final run pools its {exps['inference']['chains']} chains.
  **Temperature T = {t['temperature']:g}** (posterior proportional to exp(-U/T); T = 1 is the
  Bayes posterior; the authors' default 2e-8 corresponds to T = 4e-8 here). The prior covers
  the backbone only. {_head_prior_text(t['weight_decay'])} The `ensemble`
  arm is the same schedule and samples at T = 0 (a cyclical snapshot ensemble): the control that
  separates "Bayesian" from "ensembling".
- **Prediction**: samplers predict with the Bayesian model average (mean of softmax
  probabilities over samples, each with its own BatchNorm statistics); SGD arms with the final
  iterate. Metrics: accuracy (shown as error %), NLL (mean per example), ECE (15 equal-width bins
  over top-label confidence), Brier (sum over classes, mean over examples).
{_experiments_text(profile)}
- **Verdicts**: each claim's effect is oriented so that positive = the claim's direction and
  compared with a margin, the smallest effect that matters (accuracy {margins['accuracy']:g},
  NLL {margins['nll']:g}, ECE {margins['ece']:g}). {VERDICT_RULE}
  {PARTS_RULE} {PER_SIZE_RULE}
  {HOLM_RULE} Each claim's adjusted level, its parts' level and its mde are in its evidence
  (`holm`, `part_level`, `mde`).
- **Intervals, p-values, mde**: {INTERVAL_RULE}
- **Positive control (PC)**: the oracle prior against the tuned zero-mean prior with SGD at
  the control's training size, judged first, at 95 %, outside the Holm family (a check of the
  testbed, not a claim of the paper); the isotropic prior at the same centre is compared as
  evidence only. If PC is not supported, C3, C4, C4b, C5 and H1 are labelled *uninformative*:
  the testbed could not show even the oracle prior's effect.
- **Covariance control (PC2)**: a prior with the isotropic prior's mean (the SimCLR weights) and
  total variance, part of it along the directions fine-tuning those weights takes on the
  labelled downstream rest, against that isotropic prior, both tuned over the same variances,
  judged like PC. Where it ran and is not supported, C1 and H1 (the learned covariance's
  claims) are labelled *uninformative*.
- **Baselines that say what a prior does**: `probe` (a linear probe: the pretrained backbone
  frozen, the head trained with tuned weight decay) and `sgd` (fine-tuning every weight without
  a prior, tuned weight decay). A prior whose chosen scale leaves few coordinates free acts as
  a probe: the tables give, per chosen setting, the share of backbone coordinates the prior
  leaves free (prior variance >= lr / (cap N), where its preconditioned step keeps at least half
  its size).
- **Non-learned comparison**: {NONLEARNED_TEXT}
- **This run**: {len(records)} runs ({diverged} diverged), {wall / 60:.1f} run-minutes of
  training (each run's own time, summed; runs train side by side in packs and worker processes,
  so the wall clock is shorter: see Timings), device {', '.join(devices)}, bprior
  {', '.join(versions)}.
"""


TIMINGS = "timings.json"  # wall-clock seconds per stage of `bprior report`, beside the report


def timings_markdown(folder: Path) -> str:
    """The wall clock of the report's stages (`timings.json`: priors, runs, each notebook as it
    finished the last time), or a line saying there is none yet."""
    try:
        timings = json.loads((Path(folder) / TIMINGS).read_text())
    except (OSError, ValueError):
        return ("No timings yet: `bprior report` writes them (`timings.json`); `bprior run` "
                "alone does not.")
    rows = "".join(f"| {_md(k)} | {float(v):.0f} s |\n" for k, v in timings.items()
                   if isinstance(v, (int, float)))
    total = sum(v for v in timings.values() if isinstance(v, (int, float)))
    return ("Wall clock of the stages of `bprior report` (`timings.json`; a notebook's time is "
            "that of its last run; a stage with nothing left to do takes a moment):\n\n"
            "| stage | time |\n|---|---|\n" + rows
            + f"| **all of these** | **{total / 60:.1f} min** |\n")


def run_seconds_table(records: Sequence[Mapping]) -> object:
    """Where the training time went: per experiment and phase (tuning, final, single), the runs
    and their run-seconds (each run's own time; packs and workers run them side by side)."""
    import pandas as pd

    rows: dict[tuple, list] = {}
    for r in records:
        cfg = r.get("config") or {}
        key = (cfg.get("experiment"), cfg.get("phase") or "single")
        rows.setdefault(key, []).append(float(r.get("wall_time_s") or 0.0))
    return pd.DataFrame([{"experiment": e, "phase": p, "runs": len(v),
                          "run-seconds": round(sum(v)), "per run (s)": round(sum(v) / len(v), 2)}
                         for (e, p), v in sorted(rows.items())])


METHOD_TEXT = {"sgd_prior": "SGD with the learned {prior} prior in its loss (MAP: the final "
                            "iterate)",
               "sghmc": "SGHMC with the learned {prior} prior (Bayesian model average over its "
                        "samples)",
               "sgld": "SGLD with the learned {prior} prior (Bayesian model average over its "
                       "samples)"}


def scales_text(scales) -> str:
    """Prior scales in one format: powers of ten as 1e5, others as %g."""
    return ", ".join(scale_label(s) for s in scales)


def experiment_intro(profile: dict, experiment: str) -> str:
    """What a notebook's experiment runs, from the profile that ran it."""
    e, seeds = profile["experiments"][experiment], profile["seeds"]
    if not e["enabled"]:
        return f"The {experiment} experiment is not run in this profile."
    if experiment == "rank":
        scales = e["scales"] or [e["scale"]]
        return (f"{METHOD_TEXT[e['method']].format(prior=e['prior'])} at n = "
                f"{e['n_train'] or 'full'}, {e['seeds'] or seeds} seeds, at scale"
                f"{'s' if len(scales) > 1 else ''} {scales_text(scales)}, with the low-rank "
                "part truncated to "
                f"ranks {', '.join(map(str, e['ranks']))} (rank 0: the diagonal alone; rank r "
                "keeps the top r principal directions of the SWAG deviations)"
                + (", at the scaled trace and at the full-rank prior's total variance (fixed "
                   "trace)" if e["fixed_trace"] else "")
                + ". Claim C1: performance improves with the rank and saturates at a small "
                "rank; it is judged at the scale where the prior is strongest on validation.")
    if experiment == "scale":
        rules = e["rules"] or [profile["priors"]["rescaling_rule"]]
        eps = e["eps"] or [profile["priors"]["eps"]]
        return (f"{METHOD_TEXT[e['method']].format(prior=' / '.join(e['priors']))} at n = "
                f"{e['n_train'] or 'full'}, {e['seeds'] or seeds} seeds, rescaled over scales "
                f"{scales_text(e['scales'])} under the rescaling rule(s) "
                f"{', '.join(rules)} (`same` = the paper's text, `authors` = their code) and "
                f"eps {', '.join(f'{x:g}' for x in eps)}"
                + ("; plus a run from scratch per seed (no pretraining, SGD, no prior)"
                   if e["scratch"] else "; no run from scratch (`experiments.scale.scratch`: "
                   "the largest scale stands for 'no prior')")
                + ". Claim C2: the un-rescaled prior is worse than a rescaled one; performance "
                "rises with the scale to an optimum and falls again towards very large scales.")
    if experiment == "inference":
        seeds_text = _seeds_text(profile)
        return (f"Arms {', '.join(f'`{a}`' for a in e['arms'])} with the {e['prior']} prior "
                f"(rank {e['rank']}) at sizes {', '.join(str(n or 'full') for n in e['sizes'])}: "
                f"SGD (MAP) and {e['bayes_method'].upper()} (Bayesian model average) with the "
                "learned, zero-mean and isotropic priors, the T = 0 ensemble, the linear probe "
                "and fine-tuning without a prior where listed; at a given seed and size every "
                f"arm sees the same training subset. {seeds_text[0].upper()}{seeds_text[1:]} "
                "Claims C3, C4, C4b, C5 and H1.")
    if experiment == "temperature":
        return (f"{e['method'].upper()} with the {e['prior']} prior at scale "
                f"{scale_label(e['scale'])}, rank "
                f"{e['rank']}, n = {e['n_train'] or 'full'}, over temperatures "
                f"{', '.join(f'{t:g}' for t in e['temperatures'])} (T = 0: no noise, a cyclical "
                "snapshot ensemble; T = 1: the Bayes posterior), "
                f"{e['chains']} chains per temperature on the same training subset "
                f"({e['seeds'] or 1} seed{'s' if (e['seeds'] or 1) > 1 else ''}), their model "
                "averages pooled. "
                + temperature_text(profile))
    raise ValueError(f"no introduction for experiment {experiment!r}")


def temperature_text(profile: dict) -> str:
    """How the temperature figure and table read, for this profile."""
    e, t = profile["experiments"]["temperature"], profile["train"]
    draws = (t["cycles"] - t["burn_in_cycles"]) * t["samples_per_cycle"]
    seeds = e["seeds"] or 1
    spread = ("mean ± standard error over the seeds" if seeds > 1 else
              "one seed: one value per temperature, no error bar")
    rhat = (f"R-hat and ESS need at least {MIN_DRAWS} draws per chain; these chains hold "
            f"{draws}, so they are not computed" if draws < MIN_DRAWS else
            f"the dashed line marks R-hat = {RHAT_MAX}, the threshold of convergence")
    return (f"Test error, NLL and ECE of each temperature's pooled model average ({spread}) "
            f"and the rank-normalised R-hat over its {e['chains']} chains ({rhat}). The axis is "
            "logarithmic; T = 0 sits a decade below the smallest positive temperature, behind "
            "the break `//`.")


def _seeds_text(profile: dict) -> str:
    """How seeds are used: the fixed protocol's tuning and evaluation seeds (and the estimand),
    the per-seed protocol's, and the other experiments' counts."""
    exps = profile["experiments"]
    inference = exps["inference"]
    others = f"{profile['seeds']} per point in the rank, scale and temperature experiments " \
             "unless they say otherwise."
    tuned = [e for e in TUNED_EXPERIMENTS if exps[e]["enabled"]]
    if not tuned:
        return others
    if not fixed_protocol(profile):
        return (f"{inference['seeds'] or profile['seeds']} seeds in {', '.join(tuned)}, each "
                "tuning its own setting on its own subset (per-seed protocol). " + others)
    sizes = inference["sizes"]
    counts = "; ".join(
        f"n = {n or 'full'}: {len(evaluation_seeds(profile, n))} seeds for SGD-type arms and "
        f"the controls, {len(evaluation_seeds(profile, n, True))} for the samplers and their "
        "controls" for n in sizes)
    first = inference["evaluation"]["first_seed"]
    text = (f"the headline protocol fixes each arm's setting per size once, by the validation "
            f"NLL averaged over the tuning seeds 0-{inference['tuning']['seeds'] - 1}, then "
            f"evaluates it on evaluation seeds from {first} on, which never enter selection "
            f"({counts}). Its estimand: a method at its best fixed setting for that size. ")
    if exps["per_seed"]["enabled"]:
        e = exps["per_seed"]
        text += (f"The per-seed protocol (Harvey et al.; estimand: a method tuned on each "
                 f"subset) runs beside it with its own seeds {e['first_seed']}-"
                 f"{e['first_seed'] + e['seeds'] - 1} ({', '.join(e['arms'])} at n = "
                 f"{', '.join(str(x) for x in e['sizes'])}, selection by "
                 f"{SELECTION_TEXT[e['selection']]}). ")
    return text + others


SELECTION_TEXT = {"split": "a held-out fifth of each subset", "validation": "the validation set"}


def _steps_text(profile: dict) -> str:
    """The training steps: the profile's, and the inference protocol's per size."""
    steps = profile["train"]["steps"]
    inference = profile["experiments"]["inference"]
    if inference["steps"] is None:
        return f"{steps} steps"
    per_size = ", ".join(f"{s} at n = {n or 'full'}"
                         for n, s in zip(inference["sizes"], inference["steps"], strict=True))
    return (f"{steps} steps in the rank, scale and temperature experiments; in the inference "
            f"protocol (and its controls, at their size) steps grow with n: {per_size}")


def _sources_text(profile: dict) -> str:
    """Which images each learned prior was learned from, with their numbers."""
    from .study.sources import source_kind, source_text

    pool = profile["data"]["labelled_pool"]
    head = (f"The downstream classes' labelled pool holds {pool} training images (validation set "
            "and every training subset come from it); prior learning never sees them. "
            if pool else "Every downstream training image is labelled. ")
    names = sorted({*profile["experiments"]["scale"]["priors"],
                    *(profile["experiments"][e]["prior"]
                      for e in ONE_PRIOR_EXPERIMENTS)}
                   | ({"oracle"} if profile["experiments"]["control"]["enabled"] else set()))
    return head + "; ".join(f"`{n}`: {source_text(profile, source_kind(profile, n))}"
                            for n in names)


def _experiments_text(profile: dict) -> str:
    """One bullet per enabled experiment: what it varies and at which settings."""
    exps, seeds = profile["experiments"], profile["seeds"]
    lines = []

    def n(value: int) -> str:
        return str(value) if value else "full"

    if exps["rank"]["enabled"]:
        e = exps["rank"]
        lines.append(f"- **Rank** (C1): ranks {e['ranks']} at scale {e['scale']:g}, n = "
                     f"{n(e['n_train'])}, {e['seeds'] or seeds} seeds"
                     + (", also at the full-rank prior's total variance (fixed trace)"
                        if e["fixed_trace"] else "") + "; the best rank is chosen on validation.")
    if exps["scale"]["enabled"]:
        e = exps["scale"]
        rules = e["rules"] or [profile["priors"]["rescaling_rule"]]
        eps = e["eps"] or [profile["priors"]["eps"]]
        lines.append(
            f"- **Scale** (C2): scales {', '.join(f'{s:g}' for s in e['scales'])} at rank "
            f"{e['rank']}, n = {n(e['n_train'])}, {e['seeds'] or seeds} seeds, priors "
            f"{', '.join(e['priors'])}; rules {', '.join(rules)} x eps "
            f"{', '.join(f'{x:g}' for x in eps)}"
            + ("; plus a run from scratch per seed (no pretraining, SGD, no prior)"
               if e["scratch"] else "") + "; best scales chosen on validation.")
    if exps["inference"]["enabled"]:
        e = exps["inference"]
        tuning = e["tuning"]
        if tuning["enabled"]:
            lrs = tuning["lrs"] or [profile["train"]["lr"]]
            scored = ("each training subset's held-out fifth (4/5 fitted; Harvey et al.)"
                      if tuning["selection"] == "split" else "the validation set")
            tuned = (f"every arm tuned over the same {len(tuning['scales'])} x {len(lrs)} grid: "
                     f"its strength (learned prior scale "
                     f"{', '.join(f'{x:g}' for x in tuning['scales'])}; zero-mean and isotropic "
                     f"prior variance {', '.join(f'{x:g}' for x in tuning['variances'])}; `sgd` "
                     f"weight decay {', '.join(f'{x:g}' for x in tuning['weight_decays'])}) "
                     f"crossed with the learning rate ({', '.join(f'{x:g}' for x in lrs)}); "
                     f"tuning runs are scored on {scored} only, and per size and seed the point "
                     "with the lowest NLL there is trained again on the whole subset with the "
                     "test set scored (the final run the claims see)")
        else:
            v = e["nonlearned_variance"]
            tuned = (f"untuned: learned prior at scale {e['scale']:g}; baselines with variance "
                     + (f"{v:g}" if v is not None else "trace-matched to the rescaled learned "
                        "prior"))
        budget = (f"; the deep ensemble averages the chosen `sgd+learned` run trained as "
                  f"{e['chains']} members" if e["deep_ensemble"] else "")
        if e["long_sgd"]:
            budget += (f"; `sgd_long+learned` is the chosen `sgd+learned` run trained for "
                       f"{e['chains']} x {profile['train']['steps']} steps, the sampler's whole "
                       "gradient budget in one run")
        lines.append(f"- **Inference** (C3-C5, H1): arms {', '.join(e['arms'])} at rank "
                     f"{e['rank']}, sizes {', '.join(n(x) for x in e['sizes'])}, "
                     f"{e['seeds'] or seeds} seeds; {tuned}. Every sampler's final run has "
                     f"{e['chains']} chains, pooled{budget}. All arms start from the pretrained "
                     "backbone.")
    if exps["control"]["enabled"]:
        lines.append(f"- **Control** (PC): {', '.join(exps['control']['arms'])} with the oracle "
                     f"prior at n = {n(control_size(profile))}, tuned like the inference arms, "
                     "every arm starting from the oracle's backbone.")
    if exps["temperature"]["enabled"]:
        e = exps["temperature"]
        lines.append(f"- **Temperature**: `{e['method']}` + learned prior at scale {e['scale']:g}, "
                     f"n = {n(e['n_train'])}, T in "
                     f"{', '.join(f'{x:g}' for x in e['temperatures'])}, {e['chains']} chains "
                     f"per temperature on the same subset ({e['seeds'] or seeds} seed(s)), "
                     "pooled; rank-normalised R-hat and bulk ESS over the chains.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- building


def _nav(profile_name: str, current: str, prefix: str) -> str:
    links = " · ".join(
        f"<b>{PAGE_TITLES[n]}</b>" if n == current
        else f'<a href="{prefix}{"../report.html" if n == "06_report" else n + ".html"}">'
             f"{PAGE_TITLES[n]}</a>"
        for n in NOTEBOOKS
    )
    return (f'<div style="padding:8px;background:#f6f8fa;border-bottom:1px solid #ddd;'
            f'font-family:sans-serif">bprior · profile <code>{_esc(profile_name)}</code> · '
            f"{links}</div>")


# nbconvert's lab template with the blocks that load scripts from a CDN left empty
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def page_title(name: str, profile_name: str) -> str:
    """A page's `<title>`: its heading and the profile, e.g. `3. Scale · bprior smoke`."""
    return f"{PAGE_TITLES.get(name, name)} · bprior {profile_name}"


def render_html(notebook_path: Path, nav: str, title: str | None = None) -> str:
    """Executed notebook -> self-contained HTML with code hidden, a navigation bar and the
    page's `<title>` (default: the notebook's file name)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", raw_template=OFFLINE_TEMPLATE)
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    nb = nbformat.read(notebook_path, as_version=4)
    nb.metadata["title"] = title or Path(notebook_path).stem  # nbconvert escapes it
    body, _ = exporter.from_notebook_node(nb)
    return _insert_after_body(body, nav)


def _insert_after_body(page: str, block: str) -> str:
    start = page.find("<body")
    end = page.find(">", start) + 1
    return page[:end] + block + page[end:]


# a cell that runs longer has hung (every run is trained before the notebooks run; the slowest
# cell, the claims' bootstrap, takes seconds): nbclient's wait for a lost kernel message, seen
# about once in many hundred notebook runs, would otherwise block a report forever
CELL_TIMEOUT_S = 900
NOTEBOOK_ATTEMPTS = 2


def _local_kernels() -> type:
    """A kernel manager whose kernels talk over local IPC sockets (files in the runtime folder)
    instead of TCP ports: nothing listens on the network, and the kernel has no unencrypted
    TCP port to warn about (that warning used to print once per notebook)."""
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        transport = "ipc"

    return LocalKernelManager


def run_notebook(source: Path, target: Path, parameters: dict, kernel_name: str | None = None,
                 cwd: Path | None = None, log=print) -> None:
    """Execute a notebook with papermill, each cell limited to CELL_TIMEOUT_S; a timed-out cell
    or a dead kernel runs the whole notebook again once (the notebooks only read stored
    results, so a rerun repeats nothing), then the error propagates."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    for attempt in range(1, NOTEBOOK_ATTEMPTS + 1):
        try:
            papermill.execute_notebook(
                str(source), str(target), parameters=parameters, progress_bar=False,
                kernel_name=kernel_name, cwd=None if cwd is None else str(cwd),
                execution_timeout=CELL_TIMEOUT_S, kernel_manager_class=_local_kernels())
            return
        except (CellTimeoutError, DeadKernelError) as exc:
            if attempt == NOTEBOOK_ATTEMPTS:
                raise
            log(f"[{source.stem}] {type(exc).__name__} ({str(exc).splitlines()[0][:120]}); "
                "running it again")


def build_report(
    profile_arg: str | Path, root: Path | None = None, log=print, kernel_name: str | None = None,
    progress: bool = True, pack: int | None = None, backend: str | None = None,
    address: str | None = None,
) -> Path:
    """Run every notebook for a profile and write `outputs/<profile>/report.html`.

    `pack` overrides the profile's runs per pack (the CLI's --pack); `backend` its back end, on
    the Ray cluster at `address` for `ray` (`study.ray_backend`)."""
    path = profile_path(profile_arg)
    profile = load_profile(path)  # raises ProfileError before anything is written
    out = output_dir(profile, root)
    log(f"profile {profile['name']}: {len(plan(profile))} runs planned; outputs in {out}")
    # train first, with progress bars and a time estimate here; the notebooks then find every
    # run done and only read results
    counts = run_study(profile, root, profile_file=path, pack=pack, backend=backend,
                       address=address, progress=progress)
    timings = {"priors": counts.pop("priors_s"),
               "tuning and single-phase runs": counts.pop("planned_s"),
               "final runs": counts.pop("final_s")}
    log(f"runs: {counts_text(counts)}")
    atomic_write_text(out / TIMINGS, json.dumps(timings, indent=1))  # the report reads it
    nb_dir, html_dir = out / "notebooks", out / "html"
    nb_dir.mkdir(parents=True, exist_ok=True)
    html_dir.mkdir(parents=True, exist_ok=True)
    params = {"profile": str(path.resolve()), "outputs_root": str(out.parent.resolve()),
              "progress": False}
    for name in NOTEBOOKS:
        start = time.perf_counter()
        log(f"[{name}] running ...")
        run_notebook(NOTEBOOK_DIR / f"{name}.ipynb", nb_dir / f"{name}.ipynb", params,
                     kernel_name, Path.cwd(), log)
        timings[name] = round(time.perf_counter() - start, 1)
        log(f"[{name}] done in {timings[name]} s")
    for name in NOTEBOOKS:
        is_report = name == "06_report"
        page = render_html(nb_dir / f"{name}.ipynb",
                           _nav(profile["name"], name, "html/" if is_report else ""),
                           page_title(name, profile["name"]))
        atomic_write_text(out / "report.html" if is_report else html_dir / f"{name}.html", page)
    atomic_write_text(out / TIMINGS, json.dumps(timings, indent=1))
    log(f"report: {out / 'report.html'}")
    return out / "report.html"


# ----------------------------------------------------------------------------- explorer


EXPERIMENT_PAGES = {"rank": "02_rank", "scale": "03_scale", "inference": "04_inference",
                    "temperature": "05_temperature"}


class Explorer:
    """The JupyterLab explorer (`notebooks/explore.ipynb`) over a profile's stored records.

    It shows what the report shows: per experiment the view of `tables.experiment_view` (the
    validation-selected run per arm, size and seed; conventions and trace variants apart; the
    from-scratch runs as their own baseline) with its figure and table. An experiment dropdown
    offers the experiments that have runs; only the filters that apply to the chosen one are
    shown (`ExperimentView.options`), and a metric (not for temperature, whose figure shows
    error, NLL and R-hat together). `widget` is what to display."""

    def __init__(self, records: Sequence[Mapping]):
        import ipywidgets as w

        self.views = {e: tables.experiment_view(records, e) for e in VIEWED_EXPERIMENTS}
        names = [e for e, v in self.views.items() if not v.empty]
        self.experiment = w.Dropdown(
            options=names, description="experiment",
            value="inference" if "inference" in names else (names[0] if names else None))
        self.metric = w.Dropdown(options=[(tables.METRIC_LABELS[m], m)
                                          for m in tables.METRIC_LABELS], description="metric")
        self.filters = w.VBox()
        self.out = w.Output()
        self.widget = w.VBox([w.HBox([self.experiment, self.metric]), self.filters, self.out])
        self.experiment.observe(self._rebuild, "value")
        self.metric.observe(self.draw, "value")
        self._rebuild()

    def _rebuild(self, _=None) -> None:
        """New filters for the chosen experiment, all values selected; then draw."""
        import ipywidgets as w

        view = self.views.get(self.experiment.value)
        children = []
        for col, options in (view.options() if view else {}).items():
            box = w.SelectMultiple(options=options, value=tuple(v for _, v in options),
                                   description=tables.FILTER_LABELS.get(col, col),
                                   rows=min(len(options), 8))
            box.column = col
            box.observe(self.draw, "value")
            children.append(box)
        self.filters.children = children
        self.metric.layout.display = "none" if self.experiment.value == "temperature" else None
        self.draw()

    def view(self) -> tables.ExperimentView | None:
        """The chosen experiment's view, restricted to the chosen filter values."""
        view = self.views.get(self.experiment.value)
        if view is None:
            return None
        return view.filtered({box.column: box.value for box in self.filters.children})

    def draw(self, _=None) -> None:
        """The chosen view's figure and table into the output area."""
        import matplotlib.pyplot as plt
        from IPython.display import HTML, display

        from . import plots

        view = self.view()
        with self.out:
            self.out.clear_output(wait=True)
            if view is None or view.runs.empty:
                display(HTML("<p>No stored runs for this selection.</p>"))
                return
            for fig in (plots.experiment_figure(view, (self.metric.value,)),
                        self._gains_figure(view)):
                if fig is not None:
                    display(fig)
                    plt.close(fig)
            display(HTML(tables.to_html(self.table(view))))
            if not view.baseline.empty:
                display(HTML(tables.to_html(view.baseline_table())))

    def show_static(self) -> None:
        """Every experiment's default view (all filter values, test error) as static outputs:
        what papermill, `bprior render` and a published page show, where widgets do not run."""
        import matplotlib.pyplot as plt
        from IPython.display import HTML, display

        from . import plots

        shown = False
        for name, view in self.views.items():
            if view.empty:
                continue
            shown = True
            display(HTML(f"<h3>{_esc(PAGE_TITLES.get(EXPERIMENT_PAGES.get(name), name))}</h3>"))
            fig = plots.experiment_figure(view, ("error_pct",))
            if fig is not None:
                display(fig)
                plt.close(fig)
            display(HTML(tables.to_html(self.table(view))))
            if not view.baseline.empty:
                display(HTML(tables.to_html(view.baseline_table())))
        if not shown:
            display(HTML("<p>No stored runs to show.</p>"))

    def table(self, view: tables.ExperimentView) -> object:
        """The table the explorer shows for a view: the report's table (temperature: with its
        R-hat and one-sample columns, `tables.temperature_table`)."""
        if view.experiment == "temperature":
            return tables.temperature_table(list(view.records))
        return view.table()

    def _gains_figure(self, view: tables.ExperimentView):
        """Inference only: the chosen arms' paired gains over `sgd+zero` at the chosen sizes
        (the baseline is paired with even when it is not among the chosen arms)."""
        if view.experiment != "inference":
            return None
        from . import plots

        choices = {box.column: box.value for box in self.filters.children}
        sizes = self.views["inference"].filtered({k: v for k, v in choices.items()
                                                  if k == "n_train"})
        gains = tables.paired_gains(sizes.runs, metrics=(self.metric.value,))
        return plots.inference_gains_figure(gains[gains["arm"].isin(view.runs["arm"])])
