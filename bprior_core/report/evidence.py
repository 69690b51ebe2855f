"""The claims as HTML: the verdict table, the positive controls' banner and each claim's evidence
tables (per size, per part, per metric)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from .. import tables
from ..analysis import paired
from ..claims import CONTROL_ID, COVARIANCE_ID, comparison_label, forest_rows
from ..claims.registry import RANK_EVIDENCE, SCALE_EVIDENCE, evidence_kind, is_control
from ..claims.text import UNINFORMATIVE_TEXT
from ..formatting import effect_cell, interval_cell, magnitude_cell, p_text, se_cell, size_label
from .markup import _esc, _verdict_cell, uninformative_badge, verdict_badge


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
                if is_control(c["id"]) else None)
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


def _evidence_row(label: str, d: Mapping | None, metric: str, strong: bool = False) -> str:
    """One comparison as a table row: label, effect, interval, level, seeds, SE, mde and the
    verdict (a descriptive row, shown for information only, has none)."""
    d = d or {}
    text = f"<b>{_esc(label)}</b>" if strong else _esc(label)
    if d.get("effect") is None and d.get("reason"):
        return (f"<tr>{_TD}{text}</td><td colspan=6>{_esc(d['reason'])}</td>"
                f"<td>{verdict_badge(d.get('verdict', 'inconclusive'))}</td></tr>")
    mark = "<i>descriptive</i>" if d.get("descriptive") else verdict_badge(_verdict_of(d))
    return (f"<tr>{_TD}{text}</td><td>{_esc(effect_cell(d.get('effect'), metric))}</td>"
            f"{_NOWRAP}{_esc(interval_cell(d, metric))}</td>"
            f"{_NOWRAP}{_esc(tables.format_level(d.get('level')))}</td>"
            f"<td>{_esc(d.get('n_seeds', '-'))}</td>{_NOWRAP}{_esc(se_cell(d, metric))}</td>"
            f"{_NOWRAP}{_esc(magnitude_cell(d.get('mde'), metric))}</td><td>{mark}</td></tr>")


def _evidence_table(rows: Sequence[str], caption: str = "") -> str:
    cap = f"<caption style='text-align:left'>{caption}</caption>" if caption else ""
    return (f'<table class="bprior-table evidence" border="1" style="border-collapse:collapse;'
            f'font-size:85%;margin-bottom:8px">{cap}{EVIDENCE_HEAD}{"".join(rows)}</table>')


def _per_size_rows(per_size: Sequence[Mapping] | None, metric: str, prefix: str = "") -> list:
    return [_evidence_row(f"{prefix}n = {size_label(r['n_train'])}"
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
        return f"n = {size_label(unit['n_train'])} (judged)"
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
        return effect_cell(d["effect"], m)

    def interval(d: Mapping, m: str) -> str:
        return "in its parts" if d.get("ci_low") is None else interval_cell(d, m)

    rows = "".join(
        f"<tr>{_TD}{_esc(m.upper())}</td><td>{_esc(effect(d, m))}</td>"
        f"{_NOWRAP}{_esc(interval(d, m))}</td>"
        f"{_NOWRAP}{_esc(tables.format_level((d.get('holm') or {}).get('level')))}</td>"
        f"<td>{_esc(d.get('margin'))}</td><td>{_esc(magnitude_cell(d.get('mde'), m))}</td>"
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
    where = ("the control's level" if is_control(claim["id"]) else
             "the claim's Holm-adjusted level" if holm else "the claim's level")
    parts = ev.get("n_parts")
    split = (f", each of its {_esc(parts)} parts at "
             f"{_esc(tables.format_level(ev.get('part_level')))} (Bonferroni)"
             if parts and parts > 1 else "")
    mde = magnitude_cell(ev.get("mde"), metric)
    facts = (f"Effects in {unit}, positive = the claim's direction; margin "
             f"{_esc(ev.get('margin'))}; judged at {where} {_esc(level)}{split} (p "
             f"{_esc(p_text(holm.get('p_value')))}); mde {_esc(mde)}; intervals over "
             f"{_esc(ev.get('uncertainty') or 'seeds')}; diverged runs left "
             f"out: {_esc(ev.get('n_diverged', 0))}.")
    kind = evidence_kind(claim["id"])
    if kind == RANK_EVIDENCE:
        body = _rank_evidence(ev, metric)
    elif kind == SCALE_EVIDENCE:
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
