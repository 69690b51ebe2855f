"""C1: truncating the learned prior to a higher rank helps (and saturates), judged on the rank
experiment's validation-chosen ranks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.paired import MIN_SEEDS, Comparison, Seeded, combine, verdict
from ..formatting import comparison_text
from .judging import Judgement, _claim, _evidence, _max_mde, _missing, _pick, collect, judged
from .scale import MIN_BOUND_SHARE, _binding_scale, _rank_scales, _scale_strength
from .text import RULE_C1, scale_label


def _rank_beats_zero(j: Judgement, table: Mapping[int, Seeded], val: Mapping[int, Seeded],
                     ranks: Sequence[int], hib: bool, level: float) -> dict:
    """Part (a): does the best rank >= 1 (`_pick`) beat rank 0?"""
    if 0 not in table or not ranks:
        return {"part": "a", "verdict": "inconclusive", "best_rank": None,
                "comparison": None, "per_rank": [], "reason": "rank 0 or ranks >= 1 missing"}
    best, pick_level, chosen_on = _pick(table, val, ranks, hib, level)
    comps = {r: j.paired_difference(table[r], table[0], hib, pick_level) for r in ranks}
    v = verdict(comps[best])
    if v == "contradicted" and not all(verdict(c) == "contradicted" for c in comps.values()):
        v = "not supported"
    return {"part": "a", "verdict": v, "best_rank": best, "chosen_on": chosen_on,
            "comparison": comps[best], "level": pick_level,
            "per_rank": [{"rank": r, **c.to_dict()} for r, c in comps.items()]}


def _rank_saturation(j: Judgement, table: Mapping[int, Seeded], val: Mapping[int, Seeded],
                     ranks: Sequence[int], hib: bool, level: float) -> dict:
    """Part (b): the smallest rank >= 1 not meaningfully worse than the best rank >= 1."""
    best = _pick(table, val, ranks, hib, level)[0]
    threshold = max(2.0, max(ranks) / 2) if ranks else None
    part: dict[str, Any] = {"part": "b", "best_rank": best, "saturation_rank": None,
                            "small_threshold": threshold, "per_rank": [], "level": level}
    if best is None or len(table[best]) < MIN_SEEDS:
        return {**part, "verdict": "inconclusive", "reason": "too few seeds for the best rank"}
    saturation = best
    for r in (r for r in ranks if r < best):
        c = j.paired_difference(table[r], table[best], hib, level)
        part["per_rank"].append({"rank": r, "vs_rank": best, **c.to_dict()})
        if verdict(c) == "inconclusive":
            return {**part, "verdict": "inconclusive",
                    "reason": f"rank {r} cannot be told from rank {best} (too few seeds or an "
                              "interval that reaches the margin)"}
        if verdict(c) != "contradicted":
            saturation = r
            break
    v = "supported" if saturation <= threshold else "contradicted"
    return {**part, "saturation_rank": saturation, "verdict": v}


@judged
def claim_rank(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """C1: some rank >= 1 beats rank 0, and performance saturates at a small rank."""
    metric, hib = j.metric, j.higher_is_better
    scales = _rank_scales(records)
    scale = _binding_scale(records, scales)

    def variant(trace: str, metric: str, split: str = "test"):
        def key(cfg):
            same = (cfg["prior"].get("trace", "scaled") == trace
                    and float(cfg["prior"]["scale"]) == scale)
            return int(cfg["prior"]["rank"]) if same else None
        table, div = collect(records, "rank", key, metric, split)
        table.pop(None, None)
        div.pop(None, None)
        return table, div

    table, div = variant("scaled", metric)
    fixed, fixed_div = variant("fixed", metric)
    val, val_fixed = variant("scaled", "nll", "val")[0], variant("fixed", "nll", "val")[0]
    n_div = sum(div.values()) + sum(fixed_div.values())
    if not table:
        return _missing("C1", "rank", metric, n_div, RULE_C1)
    ranks = sorted(r for r in table if r >= 1)
    k = 3 if fixed else 2
    level = j.part_level(k)
    a = _rank_beats_zero(j, table, val, ranks, hib, level)
    b = _rank_saturation(j, table, val, ranks, hib, level)
    parts = {"a": a, "b": b}
    if fixed:
        fixed_ranks = sorted(r for r in fixed if r >= 1)
        parts["c"] = {**_rank_beats_zero(j, fixed, val_fixed, fixed_ranks, hib, level),
                      "part": "c", "trace": "fixed"}
    head = a["comparison"]
    v = combine([p["verdict"] for p in parts.values()])
    deciding = [p["comparison"].to_dict() for p in parts.values()
                if isinstance(p.get("comparison"), Comparison)]
    evidence = _evidence(metric, head, n_div, ranks=sorted(table), parts=parts, scale=scale,
                         scales=[{"scale": x, **_scale_strength(records, x)} for x in scales],
                         diverged_by_rank={str(k): n for k, n in div.items()},
                         n_parts=k, part_level=level, mde=_max_mde(deciding + b["per_rank"]))
    bound = _scale_strength(records, scale)["bound_share"]
    summary = f"At scale {scale_label(scale)}" + (
        f" (of {len(scales)}: the strongest on validation where the prior binds >= "
        f"{100 * MIN_BOUND_SHARE:.0f} % of the coordinates)" if len(scales) > 1 else "") + (
        f", where the prior binds {100 * bound:.0f} % of the coordinates" if bound is not None
        else "") + ": "
    summary += (f"best rank {a['best_rank']} vs rank 0: {comparison_text(head, metric)}"
                if head is not None else "rank 0 or ranks >= 1 missing")
    summary += (f"; saturation rank {b['saturation_rank']} (small if <= {b['small_threshold']:g}, "
                f"max rank {max(ranks)})." if b["saturation_rank"] is not None else
                "; saturation rank undetermined.")
    if "c" in parts and parts["c"]["comparison"] is not None:
        c = parts["c"]
        summary += (f" At fixed total variance: best rank {c['best_rank']} vs rank 0: "
                    f"{comparison_text(c['comparison'], metric)}.")
    return _claim("C1", v, RULE_C1, evidence, summary)
