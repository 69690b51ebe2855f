"""C2: the prior's scale matters: the validation-chosen scale against the extremes of the grid,
per prior source and rescaling convention."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..analysis import paired
from ..analysis.paired import Seeded, combine
from ..analysis.records import headline_value
from ..formatting import effect_text
from .judging import Judgement, _claim, _evidence, _max_mde, _missing, _pick, _seed, collect, judged
from .text import RULE_C2, scale_label


def _rank_scales(records: Sequence[Mapping[str, Any]]) -> list[float]:
    """The scales the rank experiment ran at."""
    return sorted({float(r["config"]["prior"]["scale"]) for r in records
                   if (r.get("config") or {}).get("experiment") == "rank"})


def _scale_strength(records: Sequence[Mapping[str, Any]], scale: float) -> dict:
    """At one scale of the rank experiment (scaled trace, ranks >= 1): the lowest mean
    validation NLL over its ranks, and the share of backbone coordinates the full-rank prior
    binds (1 - the mean `free_share` of its runs at the largest rank; None without it)."""
    val: dict[int, dict[int, float]] = {}
    free: dict[int, list[float]] = {}
    for r in records:
        cfg = r.get("config") or {}
        prior = cfg.get("prior") or {}
        if (cfg.get("experiment") != "rank" or float(prior.get("scale", math.nan)) != scale
                or prior.get("trace", "scaled") != "scaled"):
            continue
        share = (r.get("diagnostics") or {}).get("free_share")
        if share is not None:
            free.setdefault(int(prior.get("rank", 0)), []).append(share)
        nll = headline_value(r, "nll", "val")
        if nll is not None and prior.get("rank", 0) >= 1:
            val.setdefault(int(prior["rank"]), {})[_seed(r)] = nll
    means = [float(np.mean(list(v.values()))) for v in val.values() if v]
    return {"val_nll": min(means) if means else None,
            "bound_share": 1.0 - float(np.mean(free[max(free)])) if free else None}


# C1 is judged where the prior binds at least this share of the coordinates: where its
# covariance can shape what training does (at a scale that leaves nearly every coordinate free,
# the rank cannot matter)
MIN_BOUND_SHARE = 0.1


def _binding_scale(records: Sequence[Mapping[str, Any]], scales: Sequence[float]) -> float | None:
    """The scale C1 is judged at: among the scales where the prior binds at least
    MIN_BOUND_SHARE of the coordinates (all, when none does or the share is unknown), the
    one where the learned prior is strongest, the lowest validation NLL of its best rank >= 1
    (the first such scale without validation metrics)."""
    if not scales:
        return None
    strength = {x: _scale_strength(records, x) for x in scales}
    binding = [x for x in scales if (strength[x]["bound_share"] or 0) >= MIN_BOUND_SHARE]
    candidates = binding or list(scales)
    scored = [(strength[x]["val_nll"], i, x) for i, x in enumerate(candidates)
              if strength[x]["val_nll"] is not None]
    return min(scored)[2] if scored else candidates[0]


def _slopes(table: Mapping[float, Seeded], scales: Sequence[float], hib: bool) -> Seeded:
    """Per-seed slope of the oriented metric against log10(scale), seeds present at all scales."""
    sign = 1.0 if hib else -1.0
    per_seed = paired.slopes(np.log10(np.asarray(scales, dtype=float)), [table[s] for s in scales])
    return {seed: sign * slope for seed, slope in per_seed.items()}


def _scale_parts(j: Judgement, table: Mapping[float, Seeded], val: Mapping[float, Seeded],
                 hib: bool, level: float) -> dict:
    """Parts (a), (b), (c) of C2 for one prior source and convention, each at `level`."""
    scales = sorted(table)
    smin, smax = scales[0], scales[-1]
    parts: dict[str, Any] = {}
    others, below = scales[1:], scales[:-1]
    if others:
        best_other, pick_level, chosen_on = _pick(table, val, others, hib, level)
        c = j.paired_difference(table[best_other], table[smin], hib, pick_level)
        parts["a"] = {"best_scale": best_other, "vs_scale": smin, "chosen_on": chosen_on,
                      **c.to_dict()}
        peak, pick_level, chosen_on = _pick(table, val, below, hib, level)
        c = j.paired_difference(table[peak], table[smax], hib, pick_level)
        parts["c"] = {"best_scale": peak, "vs_scale": smax, "chosen_on": chosen_on,
                      **c.to_dict()}
    else:
        parts["a"] = parts["c"] = {"verdict": "inconclusive", "reason": "a single scale"}
    best = _pick(table, val, scales, hib, level)[0]
    segment = scales[: scales.index(best) + 1] if best != smin else scales
    if len(segment) >= 2:
        # the claim is a rise over the sweep: the fitted slope times the decades it spans
        span = math.log10(segment[-1] / segment[0])
        rise = {seed: v * span for seed, v in _slopes(table, segment, hib).items()}
        c = j.one_sample(rise, level)
        parts["b"] = {"best_scale": best, "segment": segment, "decades": span,
                      "slope_per_decade": None if c.effect is None else c.effect / span,
                      "rise": c.effect, **c.to_dict()}
    else:
        parts["b"] = {"verdict": "inconclusive", "reason": "a single scale"}
    parts["verdict"] = combine([parts[p]["verdict"] for p in "abc"])
    return parts


def _scale_summary(source: str, parts: dict, metric: str) -> str:
    a, b, c = parts["a"], parts["b"], parts["c"]
    if "best_scale" not in a:
        return f"{source}: a single scale"
    rise = (f"rise from {scale_label(b['segment'][0])} to {scale_label(b['segment'][-1])} "
            f"{effect_text(b.get('rise'), metric)} (fitted slope x {b['decades']:g} decades, "
            f"{b['verdict']})" if "segment" in b else f"rise: {b['verdict']}")
    text = (f"{source}: the best scale {scale_label(a['best_scale'])} (chosen on validation "
            f"among the rescaled scales) vs the un-rescaled {scale_label(a['vs_scale'])} "
            f"{effect_text(a['effect'], metric)} ({a['verdict']}); {rise}; the best scale below "
            f"the largest, {scale_label(c['best_scale'])}, vs the largest "
            f"{scale_label(c['vs_scale'])} {effect_text(c['effect'], metric)} ({c['verdict']})")
    scratch = parts.get("scratch")
    if scratch and scratch.get("effect") is not None:
        text += (f"; un-rescaled {scale_label(a['vs_scale'])} vs from scratch "
                 f"{effect_text(scratch['effect'], metric)}")
    return text


def _convention_label(convention: tuple[str, float]) -> str:
    return f"{convention[0]}, eps {convention[1]:g}"


def _scale_key(config: Mapping[str, Any]) -> tuple | str:
    if config.get("init") == "scratch":
        return "scratch"
    prior = config["prior"]
    return (str(prior["source"]), str(prior.get("rule", "same")), float(prior.get("eps", 0.0)),
            float(prior["scale"]))


def _headline_convention(j: Judgement, conventions: Sequence[tuple[str, float]]
                         ) -> tuple[str, float]:
    """The convention that gives C2's verdict: the evaluation's (`j.convention`, the profile's)
    when present, else the paper's text (`same`, eps 0) when present, else the first."""
    wanted = j.convention
    for candidate in (wanted, ("same", 0.0)):
        if candidate in conventions:
            return candidate
    return sorted(conventions)[0]


def _convention_verdict(j: Judgement, table: Mapping, val: Mapping, div: Mapping, scratch: Seeded,
                        convention: tuple[str, float], hib: bool) -> dict:
    """C2 under one convention: parts (a)-(c) per prior source, all 3 x sources parts at
    the claim's level Bonferroni-corrected over them."""
    sources = sorted({k[0] for k in table if k[1:3] == convention})
    k = 3 * len(sources)
    level = j.part_level(k)
    out: dict[str, dict] = {}
    for src in sources:
        keys = [key for key in table if key[0] == src and key[1:3] == convention]
        sub = {key[3]: table[key] for key in keys}
        parts = _scale_parts(j, sub, {key[3]: val.get(key, {}) for key in keys}, hib, level)
        if scratch:
            parts["scratch"] = j.paired_difference(sub[min(sub)], scratch, hib).to_dict()
        parts["n_diverged"] = sum(n for key, n in div.items() if key in keys)
        out[src] = parts
    return {"verdict": combine([p["verdict"] for p in out.values()]), "sources": out,
            "n_parts": k, "part_level": level}


@judged
def claim_scale(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """C2: un-rescaled prior worse; rising with scale to an optimum; falling at huge scales."""
    metric, hib = j.metric, j.higher_is_better
    table, div = collect(records, "scale", _scale_key, metric)
    val = collect(records, "scale", _scale_key, "nll", "val")[0]
    scratch = table.pop("scratch", {})
    n_div = sum(div.values())
    if not table:
        return _missing("C2", "scale", metric, n_div, RULE_C2)
    conventions = sorted({k[1:3] for k in table})
    by_convention = {_convention_label(c): _convention_verdict(j, table, val, div, scratch, c, hib)
                     for c in conventions}
    head = _convention_label(_headline_convention(j, conventions))
    chosen = by_convention[head]
    sources = chosen["sources"]
    unit = "points" if metric == "accuracy" else metric
    summary = "; ".join(_scale_summary(s, p, metric) for s, p in sources.items())
    others = [f"{label}: {c['verdict']}" for label, c in by_convention.items() if label != head]
    if others:
        summary += f" Under the other conventions: {'; '.join(others)}."
    deciding = [p.get(x) for p in sources.values() for x in "abc"]
    evidence = _evidence(metric, None, n_div, sizes=[], sources=sources, effect_unit=unit,
                         convention=head, by_convention=by_convention,
                         n_parts=chosen["n_parts"], part_level=chosen["part_level"],
                         mde=_max_mde(deciding))
    return _claim("C2", chosen["verdict"], RULE_C2, evidence,
                  f"Convention {head}. {summary} ({unit}, positive = better).")
