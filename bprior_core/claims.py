"""Verdicts on the paper's claims, computed from the study's result records.

Every comparison is paired over seeds (`paired`): the same seed draws the same training subset
in every arm, so two arms are compared on the seeds present (status "ok") in both, oriented so
that positive means the claim's direction. Where the runs' test predictions are given
(`predictions=`), every interval also carries the test set's sampling error (the two-way
bootstrap over seeds and test points, `bootstrap`); else it is a t interval over seeds.

Each metric has a `margin`, the smallest effect that matters (`MARGINS`, or the profile's
`claims.margins`). The eight claims of `FAMILY_IDS` are judged at their Holm-adjusted level
over the eight; a claim of k parts judges each part at 1 - alpha_claim / k (Bonferroni), and
claims stated "at every size" (C3, C4), or whose per-size effects point in opposite directions
by at least the margin, are judged size by size (each size a part). The positive control `PC`
(the oracle prior against the tuned zero-mean prior, `experiment: control`) is a check of the
testbed, not a claim of the paper: it is judged first, at 95 %, outside the Holm family, and
when it is not supported the claims about a prior's effect (`NEEDS_CONTROL`) are marked
`evidence["uninformative"]`. The verdict words and the combination rule are `paired.verdict`
and `paired.combine`; the prose of each claim and rule lives in `claim_text`.

The headline prediction of a run is its Bayesian model average when present, else its final
iterate (`records`). Diverged runs count as missing and are reported as `n_diverged` in each
claim's evidence. Training size 0 in a config means "the full training set" and sorts as the
largest size.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from . import bootstrap, paired, vocabulary
from .atomic import atomic_write_text
from .chains import ESS_MIN, REFERENCE_RHAT_MAX, RHAT_MAX
from .claim_text import (
    ARM_LABELS,
    RULE_C1,
    RULE_C2,
    RULE_C3,
    RULE_C4,
    RULE_C4B,
    RULE_C4P,
    RULE_C5,
    RULE_H1,
    RULE_PC,
    RULE_PC2,
    TEXT,
    scale_label,
)
from .jsonsafe import to_plain
from .mcmc import MIN_DRAWS
from .paired import (
    MIN_SEEDS,
    VERDICTS,
    Comparison,
    Seeded,
    combine,
    contrast,
    mean_values,
    observed,
    verdict,
)
from .power import seeds_needed
from .records import headline_value
from .selection import best_by_validation, select_tuned
from .vocabulary import (
    ACCURACY,
    BRIER,
    CLAIM_IDS,
    CLAIMED_EXPERIMENTS,
    CONTROL_ID,
    COVARIANCE_ID,
    ECE,
    ENSEMBLE_LEARNED,
    FAMILY_IDS,
    ISOTROPIC,
    LEARNED,
    LONG_SGD,
    NEEDS_CONTROL,
    NEEDS_COVARIANCE,
    NLL,
    REFERENCE_ID,
    SECONDARY_METRICS,
    SGD,
    SGD_ISOTROPIC,
    SGD_LEARNED,
    SGD_TASK,
    SGD_ZERO,
    SGHMC,
    SGHMC_ISOTROPIC,
    SGHMC_LEARNED,
    SGHMC_TASK,
    SGLD,
    SGLD_LEARNED,
    ZERO,
    arm_parts,
)

# each metric with whether higher is better
METRICS: dict[str, bool] = {m: m == ACCURACY for m in vocabulary.METRICS}
# smallest effects that matter: 1 point of accuracy, 0.02 nats of NLL, 0.01 of ECE and Brier
MARGINS: dict[str, float] = {ACCURACY: 0.01, NLL: 0.02, ECE: 0.01, BRIER: 0.01}
_MARGIN: ContextVar[float | None] = ContextVar("claim_margin", default=None)
_LEVEL: ContextVar[float] = ContextVar("claim_level", default=paired.LEVEL)
FAMILY_ALPHA = 1.0 - paired.LEVEL  # family-wise error rate over the claims (Holm)
CONTROL_LEVEL = 0.95  # the positive controls' level (outside the Holm family)
# a reference chain accepting too rarely is stuck, too often takes steps too small to move
ACCEPT_RANGE = (0.2, 0.99)
# how each claim made of paired comparisons is judged over training sizes (`_describe`):
# stated at every size (each size a part), or about scarce data (the smallest size judged,
# the other sizes beside it)
JUDGED_AT = {"C3": "at the smallest size", "C4": "per size", "C4b": "per size", "H1": "per size",
             CONTROL_ID: "per size", COVARIANCE_ID: "per size", REFERENCE_ID: "per size"}
BOOTSTRAP_KEY = "_bootstrap"  # where `with_replicates` puts a record's replicates
__all__ = ["CLAIM_IDS", "CONTROL_ID", "COVARIANCE_ID", "FAMILY_IDS", "MARGINS", "METRICS",
           "MIN_SEEDS", "NEEDS_CONTROL", "NEEDS_COVARIANCE", "VERDICTS", "claim_p_value",
           "collect", "comparison_label", "forest_rows",
           "evaluate_claims", "evaluate_claims_by_metric", "gains_by_size", "headline",
           "with_replicates", "write_claims_json"]

Sized = dict[int, Seeded]  # n_train -> seed -> headline metric
Predictions = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]


# ----------------------------------------------------------------------------- claim context


def _part_level(k: int) -> float:
    """The level each of a claim's k parts is judged at: Bonferroni within the claim."""
    return paired.bonferroni(k, _LEVEL.get())


def _one_sample(values: Mapping[int, Any], level: float | None = None) -> Comparison:
    """`paired.one_sample` at the level (default: the claim's) and margin of the claim."""
    return paired.one_sample(values, _LEVEL.get() if level is None else level, _MARGIN.get())


def _paired_difference(a: Mapping[int, Any], b: Mapping[int, Any],
                       higher_is_better: bool = True, level: float | None = None) -> Comparison:
    """`paired.paired_difference` at the level (default: the claim's) and margin of the
    claim being evaluated."""
    return paired.paired_difference(a, b, higher_is_better,
                                    _LEVEL.get() if level is None else level, _MARGIN.get())


def with_margin(claim: Callable[..., dict]) -> Callable[..., dict]:
    """Evaluate a claim function under its metric's margin (`margin=` overrides `MARGINS`) and
    a confidence level; every comparison made inside carries them and the margin is stored in
    the claim's evidence."""
    @functools.wraps(claim)
    def wrapped(records, metric: str = "accuracy", margin: float | None = None,
                level: float = paired.LEVEL) -> dict:
        _check_metric(metric)
        value = MARGINS[metric] if margin is None else float(margin)
        if not value > 0:
            raise ValueError(f"a claim's margin must be > 0, got {margin!r} for {metric}")
        if not 0 < level < 1:
            raise ValueError(f"a confidence level must lie in (0, 1), got {level!r}")
        tokens = _MARGIN.set(value), _LEVEL.set(level)
        try:
            out = claim(records, metric)
        finally:
            _MARGIN.reset(tokens[0])
            _LEVEL.reset(tokens[1])
        out["evidence"]["margin"] = value
        out["evidence"]["claim_level"] = level
        return out

    return wrapped


# ----------------------------------------------------------------------------- records


def _check_metric(metric: str) -> bool:
    """Whether higher is better for `metric`; rejects unknown metrics."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)}")
    return METRICS[metric]


def headline(record: Mapping[str, Any], metric: str = "accuracy", split: str = "test"
             ) -> float | None:
    """The run's headline value on `split`: BMA when present, else the final iterate; None if
    missing (`records.headline_value`)."""
    _check_metric(metric)
    return headline_value(record, metric, split)


def _seed(record: Mapping[str, Any]) -> int:
    seed = record.get("seed")
    return int(record["config"]["seed"] if seed is None else seed)


def _value(record: Mapping[str, Any], metric: str, split: str) -> Any:
    """The headline value, followed by its bootstrap replicates where the record carries
    them (`with_replicates`, test split only); None if missing."""
    value = headline(record, metric, split)
    reps = (record.get(BOOTSTRAP_KEY) or {}).get(metric) if split == "test" else None
    if value is None or reps is None:
        return value
    return np.concatenate([[value], reps])


def collect(
    records: Sequence[Mapping[str, Any]], experiment: str,
    key: Callable[[Mapping[str, Any]], Hashable], metric: str, split: str = "test",
) -> tuple[dict[Hashable, Seeded], dict[Hashable, int]]:
    """Headline values of one experiment on `split` as {key(config): {seed: value}} plus
    diverged counts (a value carries its bootstrap replicates where the record has them).

    Repeated (key, seed) pairs are averaged; diverged and metric-less runs are left out.
    """
    values: dict[Hashable, dict[int, list]] = {}
    diverged: dict[Hashable, int] = {}
    for record in records:
        config = record.get("config") or {}
        if config.get("experiment") != experiment:
            continue
        k = key(config)
        if record.get("status") == "diverged":
            diverged[k] = diverged.get(k, 0) + 1
        value = _value(record, metric, split)
        if value is not None:
            values.setdefault(k, {}).setdefault(_seed(record), []).append(value)
    table = {k: {s: mean_values(v) for s, v in by_seed.items()} for k, by_seed in values.items()}
    return table, diverged


def with_replicates(records: Sequence[Mapping[str, Any]], predictions: Predictions,
                    metrics: Sequence[str], n_boot: int = bootstrap.N_BOOT) -> list[dict]:
    """Copies of `records` in which every ok run of the claims' experiments whose test
    predictions `predictions(record)` gives (the `read_predictions` mapping, or None) carries
    its metrics' bootstrap replicates over test points (`bootstrap`), one resampling for all
    runs. The claims then include the test set's sampling error in their intervals."""
    out = [dict(r) for r in records]
    used = [r for r in out if (r.get("config") or {}).get("experiment") in CLAIMED_EXPERIMENTS]
    points = bootstrap.load_points(used, predictions)
    for record, reps in zip(used, bootstrap.replicates(points, metrics, n_boot), strict=True):
        if reps:
            record[BOOTSTRAP_KEY] = reps
    return out


def _size_key(n: int | None) -> float:
    """Sort key for training sizes: 0 (or None) means the full set, the largest."""
    return math.inf if not n else float(n)


def _size_label(n: int | None) -> str:
    return "full" if not n else str(n)


def _pick(table: Mapping[Any, Seeded], val_nll: Mapping[Any, Seeded], keys: Sequence[Any],
          higher_is_better: bool, level: float) -> tuple[Any, float, str]:
    """The best of `keys` (ranks, scales), the level to compare it at and where it was chosen:
    on the validation NLL (at `level`: the test data played no part in the choice), or, for
    records without validation metrics, on the test means with a Bonferroni-corrected level
    over the candidates (picking the best on test is otherwise optimistic)."""
    if any(val_nll.get(k) for k in keys):
        return best_by_validation(val_nll, keys), level, "validation"
    return _best(table, keys, higher_is_better), paired.bonferroni(len(keys), level), "test"


def _best(table: Mapping[Any, Seeded], keys: Sequence[Any], higher_is_better: bool) -> Any:
    """The key whose mean over its seeds is best (first in `keys` on ties); None if no data."""
    means = [(k, float(np.mean([observed(v) for v in table[k].values()])))
             for k in keys if table.get(k)]
    if not means:
        return None
    sign = 1.0 if higher_is_better else -1.0
    return max(means, key=lambda kv: sign * kv[1])[0]


# ----------------------------------------------------------------------------- formatting


def _num(x: float | None, metric: str) -> str:
    """Signed effect text: accuracy in percentage points, other metrics as they are."""
    if x is None:
        return "n/a"
    return f"{100 * x:+.1f}" if metric == "accuracy" else f"{x:+.3f}"


def _fmt(c: Comparison | Mapping[str, Any], metric: str) -> str:
    """E.g. '+2.1 points accuracy (95% CI +0.8..+3.4, 5 seeds x test points)' for a
    comparison or its `to_dict` form."""
    d = c.to_dict() if isinstance(c, Comparison) else c
    if d.get("effect") is None:
        return f"no paired seeds for {metric}"
    if metric == "accuracy":
        unit = "points accuracy"
    else:
        unit = metric if METRICS[metric] else f"{metric} reduction"
    ci = (f"{100 * d['level']:.4g}% CI {_num(d['ci_low'], metric)}.."
          f"{_num(d['ci_high'], metric)}" if d.get("ci_low") is not None else "no interval")
    over = "seeds" if d.get("uncertainty", "seeds") == "seeds" else "seeds x test points"
    return f"{_num(d['effect'], metric)} {unit} ({ci}, {d['n_seeds']} {over})"


def _arm_label(arm: str) -> str:
    method, prior = arm_parts(arm)
    label = ARM_LABELS.get(method, method)
    return f"{label} + {ARM_LABELS.get(prior, prior)}" if prior else label


def _sizes_text(sizes: Sequence[int]) -> str:
    if not sizes:
        return "no sizes"
    ordered = sorted(sizes, key=_size_key)
    lo, hi = _size_label(ordered[0]), _size_label(ordered[-1])
    return f"size {lo}" if lo == hi else f"sizes {lo}-{hi}"


# ----------------------------------------------------------------------------- claim shell


def _evidence(metric: str, c: Comparison | None, n_diverged: int, **extra: Any) -> dict:
    head = c.to_dict() if c is not None else {}
    return {"metric": metric, "higher_is_better": METRICS[metric],
            "effect": head.get("effect"), "se": head.get("se"), "ci_low": head.get("ci_low"),
            "ci_high": head.get("ci_high"), "n_seeds": head.get("n_seeds", 0),
            "level": head.get("level"), "uncertainty": head.get("uncertainty"),
            "n_diverged": int(n_diverged), **extra}


def _claim(cid: str, verdict_: str, rule: str, evidence: dict, summary: str) -> dict:
    title, statement, paper, reproduction = TEXT[cid]
    return to_plain({"id": cid, "title": title, "statement": statement, "paper": paper,
                     "reproduction": reproduction, "verdict": verdict_, "rule": rule,
                     "evidence": evidence, "summary": summary})


def _missing(cid: str, experiment: str, metric: str, n_diverged: int, rule: str) -> dict:
    """A claim without usable records: `not run` when its experiment has none at all (off in
    the profile, or not trained yet), `inconclusive` when every run of it diverged."""
    if n_diverged:
        reason = f"every run of the {experiment} experiment diverged ({n_diverged} runs)"
        verdict_, summary = "inconclusive", f"Inconclusive: {reason}."
    else:
        reason = f"the {experiment} experiment has no results: not run in this profile"
        verdict_, summary = "not run", f"Not run: the {experiment} experiment has no results."
    evidence = _evidence(metric, None, n_diverged, sizes=[], reason=reason, n_parts=0,
                         mde=None)
    return _claim(cid, verdict_, rule, evidence, summary)


def _seeds_needed(comparisons: Sequence[Mapping[str, Any] | None]) -> int | None:
    """The seeds the least powered of the deciding comparisons (largest mde) would have needed
    for an mde of one margin (1 point of accuracy) at its level, from its own SE; None when
    none has an SE."""
    rows = [c for c in comparisons if c and c.get("mde") is not None]
    if not rows:
        return None
    worst = max(rows, key=lambda c: c["mde"])
    return seeds_needed(worst.get("se"), int(worst.get("n_seeds") or 0), worst["level"],
                        worst.get("margin") or _MARGIN.get() or MARGINS["accuracy"])


def _max_mde(comparisons: Sequence[Mapping[str, Any] | None]) -> float | None:
    """The largest minimum detectable effect among the comparisons that decide a verdict
    (every part must be detected for 'supported'); None when none has one."""
    values = [c.get("mde") for c in comparisons if c and c.get("mde") is not None]
    return max(values) if values else None


# ----------------------------------------------------------------------------- C1 rank


def _rank_beats_zero(table: Mapping[int, Seeded], val: Mapping[int, Seeded],
                     ranks: Sequence[int], hib: bool, level: float) -> dict:
    """Part (a): does the best rank >= 1 (`_pick`) beat rank 0?"""
    if 0 not in table or not ranks:
        return {"part": "a", "verdict": "inconclusive", "best_rank": None,
                "comparison": None, "per_rank": [], "reason": "rank 0 or ranks >= 1 missing"}
    best, pick_level, chosen_on = _pick(table, val, ranks, hib, level)
    comps = {r: _paired_difference(table[r], table[0], hib, pick_level) for r in ranks}
    v = verdict(comps[best])
    if v == "contradicted" and not all(verdict(c) == "contradicted" for c in comps.values()):
        v = "not supported"
    return {"part": "a", "verdict": v, "best_rank": best, "chosen_on": chosen_on,
            "comparison": comps[best], "level": pick_level,
            "per_rank": [{"rank": r, **c.to_dict()} for r, c in comps.items()]}


def _rank_saturation(table: Mapping[int, Seeded], val: Mapping[int, Seeded],
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
        c = _paired_difference(table[r], table[best], hib, level)
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


@with_margin
def claim_rank(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> dict:
    """C1: some rank >= 1 beats rank 0, and performance saturates at a small rank."""
    hib = _check_metric(metric)
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
    level = _part_level(k)
    a = _rank_beats_zero(table, val, ranks, hib, level)
    b = _rank_saturation(table, val, ranks, hib, level)
    parts = {"a": a, "b": b}
    if fixed:
        fixed_ranks = sorted(r for r in fixed if r >= 1)
        parts["c"] = {**_rank_beats_zero(fixed, val_fixed, fixed_ranks, hib, level),
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
    summary += (f"best rank {a['best_rank']} vs rank 0: {_fmt(head, metric)}"
                if head is not None else "rank 0 or ranks >= 1 missing")
    summary += (f"; saturation rank {b['saturation_rank']} (small if <= {b['small_threshold']:g}, "
                f"max rank {max(ranks)})." if b["saturation_rank"] is not None else
                "; saturation rank undetermined.")
    if "c" in parts and parts["c"]["comparison"] is not None:
        c = parts["c"]
        summary += (f" At fixed total variance: best rank {c['best_rank']} vs rank 0: "
                    f"{_fmt(c['comparison'], metric)}.")
    return _claim("C1", v, RULE_C1, evidence, summary)


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


# ----------------------------------------------------------------------------- C2 scale

_CONVENTION: ContextVar[tuple[str, float] | None] = ContextVar("c2_convention", default=None)


def _slopes(table: Mapping[float, Seeded], scales: Sequence[float], hib: bool) -> Seeded:
    """Per-seed slope of the oriented metric against log10(scale), seeds present at all scales."""
    sign = 1.0 if hib else -1.0
    per_seed = paired.slopes(np.log10(np.asarray(scales, dtype=float)), [table[s] for s in scales])
    return {seed: sign * slope for seed, slope in per_seed.items()}


def _scale_parts(table: Mapping[float, Seeded], val: Mapping[float, Seeded], hib: bool,
                 level: float) -> dict:
    """Parts (a), (b), (c) of C2 for one prior source and convention, each at `level`."""
    scales = sorted(table)
    smin, smax = scales[0], scales[-1]
    parts: dict[str, Any] = {}
    others, below = scales[1:], scales[:-1]
    if others:
        best_other, pick_level, chosen_on = _pick(table, val, others, hib, level)
        c = _paired_difference(table[best_other], table[smin], hib, pick_level)
        parts["a"] = {"best_scale": best_other, "vs_scale": smin, "chosen_on": chosen_on,
                      **c.to_dict()}
        peak, pick_level, chosen_on = _pick(table, val, below, hib, level)
        c = _paired_difference(table[peak], table[smax], hib, pick_level)
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
        c = _one_sample(rise, level)
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
            f"{_num(b.get('rise'), metric)} (fitted slope x {b['decades']:g} decades, "
            f"{b['verdict']})" if "segment" in b else f"rise: {b['verdict']}")
    text = (f"{source}: the best scale {scale_label(a['best_scale'])} (chosen on validation "
            f"among the rescaled scales) vs the un-rescaled {scale_label(a['vs_scale'])} "
            f"{_num(a['effect'], metric)} ({a['verdict']}); {rise}; the best scale below the "
            f"largest, {scale_label(c['best_scale'])}, vs the largest "
            f"{scale_label(c['vs_scale'])} {_num(c['effect'], metric)} ({c['verdict']})")
    scratch = parts.get("scratch")
    if scratch and scratch.get("effect") is not None:
        text += (f"; un-rescaled {scale_label(a['vs_scale'])} vs from scratch "
                 f"{_num(scratch['effect'], metric)}")
    return text


def _convention_label(convention: tuple[str, float]) -> str:
    return f"{convention[0]}, eps {convention[1]:g}"


def _scale_key(config: Mapping[str, Any]) -> tuple | str:
    if config.get("init") == "scratch":
        return "scratch"
    prior = config["prior"]
    return (str(prior["source"]), str(prior.get("rule", "same")), float(prior.get("eps", 0.0)),
            float(prior["scale"]))


def _headline_convention(conventions: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The convention that gives C2's verdict: the evaluation's (`_CONVENTION`, the profile's)
    when present, else the paper's text (`same`, eps 0) when present, else the first."""
    wanted = _CONVENTION.get()
    for candidate in (wanted, ("same", 0.0)):
        if candidate in conventions:
            return candidate
    return sorted(conventions)[0]


def _convention_verdict(table: Mapping, val: Mapping, div: Mapping, scratch: Seeded,
                        convention: tuple[str, float], hib: bool) -> dict:
    """C2 under one convention: parts (a)-(c) per prior source, all 3 x sources parts at
    the claim's level Bonferroni-corrected over them."""
    sources = sorted({k[0] for k in table if k[1:3] == convention})
    k = 3 * len(sources)
    level = _part_level(k)
    out: dict[str, dict] = {}
    for src in sources:
        keys = [key for key in table if key[0] == src and key[1:3] == convention]
        sub = {key[3]: table[key] for key in keys}
        parts = _scale_parts(sub, {key[3]: val.get(key, {}) for key in keys}, hib, level)
        if scratch:
            parts["scratch"] = _paired_difference(sub[min(sub)], scratch, hib).to_dict()
        parts["n_diverged"] = sum(n for key, n in div.items() if key in keys)
        out[src] = parts
    return {"verdict": combine([p["verdict"] for p in out.values()]), "sources": out,
            "n_parts": k, "part_level": level}


@with_margin
def claim_scale(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> dict:
    """C2: un-rescaled prior worse; rising with scale to an optimum; falling at huge scales."""
    hib = _check_metric(metric)
    table, div = collect(records, "scale", _scale_key, metric)
    val = collect(records, "scale", _scale_key, "nll", "val")[0]
    scratch = table.pop("scratch", {})
    n_div = sum(div.values())
    if not table:
        return _missing("C2", "scale", metric, n_div, RULE_C2)
    conventions = sorted({k[1:3] for k in table})
    by_convention = {_convention_label(c): _convention_verdict(table, val, div, scratch, c, hib)
                     for c in conventions}
    head = _convention_label(_headline_convention(conventions))
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


# ----------------------------------------------------------------------------- inference


def _sized_table(records: Sequence[Mapping[str, Any]], experiment: str, metric: str,
                 ) -> tuple[dict[str, Sized], dict[str, int]]:
    """{arm: {n_train: {seed: value}}} for an experiment, plus diverged runs per arm."""
    flat, div = collect(records, experiment,
                        lambda cfg: (str(cfg["arm"]), int(cfg.get("n_train") or 0)), metric)
    table: dict[str, Sized] = {}
    for (arm, n), seeded in flat.items():
        table.setdefault(arm, {})[n] = seeded
    diverged: dict[str, int] = {}
    for (arm, _), count in div.items():
        diverged[arm] = diverged.get(arm, 0) + count
    return table, diverged


def _inference_table(
    records: Sequence[Mapping[str, Any]], metric: str,
) -> tuple[dict[str, Sized], dict[str, int]]:
    """{arm: {n_train: {seed: value}}} for the inference experiment, plus diverged per arm."""
    return _sized_table(records, "inference", metric)


def _descriptive(row: dict) -> dict:
    """A per-size row shown for information: at the claim's level, without a verdict."""
    row = {k: v for k, v in row.items() if k != "verdict"}
    return {**row, "descriptive": True}


def pooled(
    terms: Sequence[tuple[float, Mapping[int, Mapping[int, Any]]]], level: float | None = None,
) -> tuple[Comparison, list[dict], list[int]]:
    """A per-seed contrast per size and pooled (per seed, mean over the common sizes), with
    the per-size rows (descriptive: no verdict).

    Pooled seeds must be present in every term at every size used; the same seeds (and, with
    the bootstrap, the same resampled test points) enter every size."""
    sizes = sorted(set.intersection(*(set(t) for _, t in terms)), key=_size_key) if terms else []
    per_size = {n: contrast([(coef, t[n]) for coef, t in terms]) for n in sizes}
    seeds = (set.intersection(*(set(d) for d in per_size.values())) if per_size else set())
    mean_d = {s: mean_values([per_size[n][s] for n in sizes]) for s in sorted(seeds)}
    rows = [_descriptive({"n_train": n, **_one_sample(per_size[n], level).to_dict()})
            for n in sizes]
    return _one_sample(mean_d, level), rows, sizes


def _pair_terms(hib: bool, a: Sized, b: Sized) -> list[tuple[float, Sized]]:
    sign = 1.0 if hib else -1.0
    return [(sign, a), (-sign, b)]


def _bayes(table: Mapping[str, Sized]) -> str:
    """The Bayesian method's arm prefix: sghmc, or sgld if only that one is present."""
    return SGLD if SGHMC_LEARNED not in table and SGLD_LEARNED in table else SGHMC


def _diverged(div: Mapping[str, int], arms: Sequence[str]) -> int:
    return int(sum(div.get(a, 0) for a in set(arms)))


def _per_size_reason(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a pooled comparison must be judged size by size: its per-size estimates point in
    opposite directions by at least the margin (pooling would average a gain and a loss that
    both matter); None otherwise."""
    m = _MARGIN.get() or 0.0
    effects = [r["effect"] for r in rows if r.get("effect") is not None]
    up = [e for e in effects if e >= m]
    down = [e for e in effects if e <= -m]
    if up and down:
        return (f"per-size effects of opposite sign beyond the margin ({max(up):+.3g} and "
                f"{min(down):+.3g}): judged size by size")
    return None


PER_SIZE_MODE, SMALLEST_MODE, POOLED_MODE = "per size", "at the smallest size", "pooled"


def _size_contrast(terms: Sequence[tuple[float, Sized]], n: int, level: float | None
                   ) -> Comparison:
    return _one_sample(contrast([(coef, t[n]) for coef, t in terms]), level)


def _describe(arms: Sequence[str], terms: Sequence[tuple[float, Sized]], how: str,
              role: str = "claim") -> dict:
    """A comparison and how it is judged: size by size (`PER_SIZE_MODE`, each size a part),
    where data are scarcest (`SMALLEST_MODE`: the smallest size is the judged part, the other
    sizes' verdicts are shown beside it), or pooled over sizes (`POOLED_MODE`: the per-seed mean
    over sizes; size by size instead when the per-size effects point in opposite directions
    by at least the margin)."""
    sizes = (sorted(set.intersection(*(set(t) for _, t in terms)), key=_size_key)
             if terms else [])
    why = {PER_SIZE_MODE: "the claim is stated at every size: judged size by size",
           SMALLEST_MODE: "the claim is about scarce data: judged at the smallest size, the "
                          "other sizes' verdicts beside it",
           POOLED_MODE: "pooled over sizes"}[how]
    if how == POOLED_MODE and len(sizes) > 1:
        reason = _per_size_reason([_size_contrast(terms, n, None).to_dict() for n in sizes])
        if reason:
            how, why = PER_SIZE_MODE, reason
    if len(sizes) <= 1 and how != SMALLEST_MODE:
        how = PER_SIZE_MODE  # one size: its comparison is the claim
    return {"arms": list(arms), "role": role, "sizes": sizes, "terms": list(terms),
            "judged": how, "why": why}


def _n_units(part: Mapping[str, Any]) -> int:
    return len(part["sizes"]) if part["judged"] == PER_SIZE_MODE else 1


def _judge(part: dict, level: float) -> dict:
    """The part's judged comparisons at the part `level` (one per size, the smallest size's,
    or the pooled one), their combined verdict, the comparison its summary shows (`comparison`,
    the first judged one) and one row per size (`per_size`: the judged rows, and beside them,
    at the same level, the other sizes' rows: `beside`; pooled parts: each size at the claim's
    level, `descriptive`)."""
    terms = part.pop("terms")
    sizes, how = part["sizes"], part["judged"]
    if how == POOLED_MODE:
        c, rows, _ = pooled(terms, level)
        units = [{"n_train": None, **c.to_dict()}]
        per_size = [_descriptive({"n_train": n, **_size_contrast(terms, n, None).to_dict()})
                    for n in sizes]
        head = c
    else:
        comparisons = {n: _size_contrast(terms, n, level) for n in sizes}
        judged = sizes if how == PER_SIZE_MODE else sizes[:1]
        units = [{"n_train": n, **comparisons[n].to_dict()} for n in judged]
        per_size = units + [{"n_train": n, **comparisons[n].to_dict(), "beside": True}
                            for n in sizes if n not in judged]
        head = comparisons[judged[0]] if judged else None
    return {**part, "units": units, "per_size": per_size, "comparison": head,
            "part_level": level, "verdict": combine([u["verdict"] for u in units])}


def _judge_all(parts: Sequence[dict], counted: Sequence[bool] | None = None) -> tuple[list, int]:
    """Judge every part at the claim's level Bonferroni-corrected over the k judged units of
    the parts that enter the verdict (`counted`); returns the judged parts and k."""
    counted = counted or [True] * len(parts)
    k = sum(_n_units(p) for p, c in zip(parts, counted, strict=True) if c)
    level = _part_level(max(k, 1))
    return [_judge(p, level) for p in parts], max(k, 1)


def _units_text(part: Mapping[str, Any]) -> str:
    """'judged per size: supported at 5, 50; inconclusive at full', 'judged at n = 10:
    supported (beside: not supported at 250)' or the pooled verdict."""
    if part.get("role") == "evidence only":
        return f"evidence only: {part['verdict']}"
    if part["judged"] == POOLED_MODE:
        return f"judged pooled: {part['verdict']}"
    groups: dict[str, list[str]] = {}
    for u in part["units"]:
        groups.setdefault(u["verdict"], []).append(_size_label(u["n_train"]))
    if part["judged"] == SMALLEST_MODE:
        beside = [f"{r['verdict']} at {_size_label(r['n_train'])}" for r in part["per_size"]
                  if r.get("beside")]
        head = part["units"][0] if part["units"] else None
        text = (f"judged at n = {_size_label(head['n_train'])}: {head['verdict']}" if head
                else "no size to judge")
        return text + (f" (beside it: {'; '.join(beside)})" if beside else "")
    return "judged per size: " + "; ".join(f"{v} at {', '.join(ns)}" for v, ns in groups.items())


def _headline_of(part: Mapping[str, Any]) -> Any:
    """What a part's summary shows first: its first judged comparison (the pooled one, or the
    smallest size's)."""
    return part["units"][0] if part["units"] else {}


def _pair_summary(part: dict, metric: str) -> str:
    label = part.get("label") or comparison_label(part["arms"])
    if part["judged"] == PER_SIZE_MODE and len(part["units"]) > 1:
        effects = "; ".join(f"{_fmt(u, metric)} at n = {_size_label(u['n_train'])}"
                            for u in part["units"])
        return f"{label}: {effects}; {_units_text(part)}"
    return (f"{label}: {_fmt(_headline_of(part), metric)}, {_sizes_text(part['sizes'])}, "
            f"{_units_text(part)}")


def _pair_evidence(metric: str, parts: Sequence[dict], n_div: int, k: int,
                   counted: Sequence[bool] | None = None, **extra: Any) -> dict:
    """Evidence of a claim made of paired comparisons: the first part's pooled numbers at
    the claim's level (descriptive), every part with its judged units, k, the part level and
    the largest mde of the units that enter the verdict."""
    head = parts[0]
    counted = counted or [True] * len(parts)
    units = [u for p, c in zip(parts, counted, strict=True) if c for u in p["units"]]
    return _evidence(metric, head["comparison"], n_div, sizes=head["sizes"],
                     seeds_needed=_seeds_needed(units),
                     arms=head["arms"], per_size=head["per_size"], judged=head["judged"],
                     parts=list(parts), n_parts=k, part_level=parts[0]["part_level"],
                     mde=_max_mde(units), **extra)


# The one non-learned comparison of C3, C4b and C5: the paper's non-learned prior, zero-mean and
# isotropic. With its variance tuned on validation it is SGD with tuned weight decay, so it is
# also "standard SGD fine-tuning" for C3; an untuned `sgd` arm (weight decay 1e-4) would compare
# a tuned arm with an untuned one.
NONLEARNED = ZERO


def _pair_claim(cid: str, rule: str, table: Mapping[str, Sized], div: Mapping[str, int],
                hib: bool, metric: str, pairs: Sequence[tuple[str, str]],
                roles: Sequence[str] | None = None) -> dict:
    """A claim made of A-vs-B pairs (C3, C4, H1): each pair described, judged (per size for
    the claims of `PER_SIZE`) and combined."""
    roles = roles or ["claim"] * len(pairs)
    described = [_describe([a, b], _pair_terms(hib, table.get(a, {}), table.get(b, {})),
                           JUDGED_AT[cid], role) for (a, b), role in zip(pairs, roles,
                                                                         strict=True)]
    parts, k = _judge_all(described)
    arms = [arm for pair in pairs for arm in pair]
    evidence = _pair_evidence(metric, parts, _diverged(div, arms), k)
    summary = "; ".join(_pair_summary(p, metric) for p in parts) + "."
    return _claim(cid, combine([p["verdict"] for p in parts]), rule, evidence, summary)


@with_margin
def claim_loss_surface(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> dict:
    """C3: SGD with the learned prior beats plain SGD, at every size."""
    hib = _check_metric(metric)
    table, div = _inference_table(records, metric)
    if not table:
        return _missing("C3", "inference", metric, sum(div.values()), RULE_C3)
    return _pair_claim("C3", RULE_C3, table, div, hib, metric,
                       [(SGD_LEARNED, vocabulary.arm(SGD, NONLEARNED))])


@with_margin
def claim_bayes_boost(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> dict:
    """C4 (reading 1): Bayesian inference with the learned prior beats SGD with it, at every
    size (and beats the T = 0 snapshot ensemble and SGD trained on the sampler's whole budget
    where the profile has them)."""
    hib = _check_metric(metric)
    table, div = _inference_table(records, metric)
    if not table:
        return _missing("C4", "inference", metric, sum(div.values()), RULE_C4)
    bayes = vocabulary.arm(_bayes(table), LEARNED)
    pairs, roles = [(bayes, SGD_LEARNED)], ["claim"]
    if ENSEMBLE_LEARNED in table:
        pairs.append((bayes, ENSEMBLE_LEARNED))
        roles.append("control: snapshot ensemble")
    if LONG_SGD in table:
        pairs.append((bayes, LONG_SGD))
        roles.append("control: SGD with the sampler's budget")
    claim = _pair_claim("C4", RULE_C4, table, div, hib, metric, pairs, roles)
    return _describe_convergence(claim, records, [a for a, _ in pairs])


@with_margin
def claim_bayes_interaction(
    records: Sequence[Mapping[str, Any]], metric: str = "accuracy",
) -> dict:
    """C4b (reading 2): the Bayesian gain over SGD is larger with the learned prior."""
    hib = _check_metric(metric)
    table, div = _inference_table(records, metric)
    if not table:
        return _missing("C4b", "inference", metric, sum(div.values()), RULE_C4B)
    bayes = _bayes(table)
    arms = [vocabulary.arm(bayes, LEARNED), SGD_LEARNED, vocabulary.arm(bayes, ZERO), SGD_ZERO]
    sign = 1.0 if hib else -1.0
    coefs = (sign, -sign, -sign, sign)
    terms = [(coef, table.get(arm, {})) for coef, arm in zip(coefs, arms, strict=True)]
    parts, k = _judge_all([_describe(arms, terms, JUDGED_AT["C4b"])])
    evidence = _pair_evidence(metric, parts, _diverged(div, arms), k)
    parts[0]["label"] = (f"Bayesian gain with the learned prior minus with the zero-mean "
                         f"prior ({bayes.upper()} vs SGD)")
    summary = _pair_summary(parts[0], metric) + "."
    claim = _claim("C4b", parts[0]["verdict"], RULE_C4B, evidence, summary)
    return _describe_convergence(claim, records, arms[::2])


def _describe_convergence(claim: dict, records: Sequence[Mapping[str, Any]],
                          arms: Sequence[str]) -> dict:
    """C4 and C4b are judged as the paper's procedure (SG-MCMC with model averaging), not as
    posteriors: their verdict stands whatever the chains did, and one line beside it says
    whether the samples came from a converged posterior. Per sampler arm and size, the largest
    R-hat and the smallest bulk ESS over seeds (`chains.convergence`) go into
    `evidence["convergence"]`, their worst into `rhat` and `ess`, and the line into
    `evidence["convergence_note"]` and the summary. Records without chain diagnostics (a single
    chain) are not described: `convergence_assessed` says so."""
    rows: dict[tuple[str, int], dict] = {}
    for r in records:
        cfg = r.get("config") or {}
        conv = (r.get("diagnostics") or {}).get("convergence")
        if cfg.get("experiment") != "inference" or cfg.get("arm") not in arms or not conv:
            continue
        row = rows.setdefault((cfg["arm"], int(cfg.get("n_train") or 0)),
                              {"arm": cfg["arm"], "n_train": cfg.get("n_train"), "rhat": None,
                               "ess": None, "chains": conv.get("n_chains"),
                               "draws": conv.get("draws_per_chain")})
        rhat, ess = conv.get("rhat"), conv.get("ess")
        row["rhat"] = None if rhat is None else max(rhat, row["rhat"] or rhat)
        row["ess"] = None if ess is None else min(ess, row["ess"] or ess)
    evidence = claim["evidence"]
    evidence["convergence_assessed"] = bool(rows)
    if not rows:
        return claim
    table = sorted(rows.values(), key=lambda r: (r["arm"], _size_key(r["n_train"])))
    evidence["convergence"] = table
    rhats = [r["rhat"] for r in table if r["rhat"] is not None]
    esses = [r["ess"] for r in table if r["ess"] is not None]
    evidence["rhat"] = max(rhats) if rhats else None
    evidence["ess"] = min(esses) if esses else None
    failing = [r for r in table if r["rhat"] is None or r["ess"] is None
               or r["rhat"] > RHAT_MAX or r["ess"] < ESS_MIN]
    if failing:
        worst = ", ".join(f"{r['arm']} n={_size_label(r['n_train'])}: " + (
            f"R-hat {_opt(r['rhat'], '.3f')}, ESS {_opt(r['ess'], '.0f')}"
            if r["rhat"] is not None else
            f"{r['draws'] if r['draws'] is not None else 'too few'} draws per chain, fewer "
            f"than the {MIN_DRAWS} R-hat needs") for r in failing[:4])
        note = (f"The samples are not from a converged posterior (R-hat <= {RHAT_MAX} and bulk "
                f"ESS >= {ESS_MIN} would be needed; {worst}): this verdict judges the paper's "
                "procedure, not Bayesian inference; C4p judges a posterior that converged.")
    else:
        note = (f"Every sampler arm and size converged (R-hat <= {RHAT_MAX}, bulk ESS >= "
                f"{ESS_MIN}).")
    evidence["convergence_note"] = note
    claim["summary"] = f"{claim['summary']} {note}"
    return claim


def _opt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _efficiency_part(table: Mapping[str, Sized], hib: bool, learned: str, zero: str) -> dict:
    """The learned prior's gain over the zero-mean prior at each size (shown beside the
    verdict), and what `_judge_fall` judges: the gain where data are scarcest minus the gain
    where they are most plentiful (each size on its own seeds)."""
    a, b = table.get(learned, {}), table.get(zero, {})
    sizes = sorted(set(a) & set(b), key=_size_key)
    part: dict[str, Any] = {"arms": [learned, zero], "sizes": sizes}
    sign = 1.0 if hib else -1.0
    part["gains"] = {n: contrast([(sign, a[n]), (-sign, b[n])]) for n in sizes}
    return part


def _judge_fall(part: dict, level: float) -> dict:
    """C5's part judged at the part `level`: the fall of the gain from the smallest to the
    largest size (`paired.difference_of`: independent seeds per size, Welch's t), its
    `comparison` and only unit; the gain at each size at the same level beside it."""
    gains = part.pop("gains")
    per_size = {n: _one_sample(gains[n], level) for n in part["sizes"]}
    part["gain_per_size"] = [{"n_train": n, **c.to_dict(), "beside": True}
                             for n, c in per_size.items()]
    if len(part["sizes"]) < 2:
        judged = Comparison(None, None, None, None, 0, (), level, _MARGIN.get())
    else:
        first, last = part["sizes"][0], part["sizes"][-1]
        judged = paired.difference_of(per_size[first], per_size[last], level, _MARGIN.get())
    unit = {"n_train": None, **judged.to_dict()}
    return {**part, "comparison": judged, "units": [unit], "part_level": level,
            "judged": "fall over sizes", "verdict": unit["verdict"]}


def _learned_vs(table: Mapping[str, Any], baseline: str) -> list[tuple[str, str]]:
    """Arm pairs (learned prior, baseline prior): the Bayesian pair, and the SGD pair if run."""
    bayes = _bayes(table)
    pairs = [(vocabulary.arm(bayes, LEARNED), vocabulary.arm(bayes, baseline))]
    if SGD_LEARNED in table and vocabulary.arm(SGD, baseline) in table:
        pairs.append((SGD_LEARNED, vocabulary.arm(SGD, baseline)))
    return pairs


@with_margin
def claim_data_efficiency(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> dict:
    """C5: the learned-over-non-learned gain is larger at small training sizes."""
    hib = _check_metric(metric)
    table, div = _inference_table(records, metric)
    if not table:
        return _missing("C5", "inference", metric, sum(div.values()), RULE_C5)
    pairs = _learned_vs(table, ZERO)
    level = _part_level(len(pairs))
    parts = [_judge_fall(_efficiency_part(table, hib, lo, hi), level) for lo, hi in pairs]
    summary = "; ".join(_efficiency_summary(p, metric) for p in parts) + "."
    arms = [arm for pair in pairs for arm in pair]
    units = [u for p in parts for u in p["units"]]
    evidence = _evidence(metric, parts[0]["comparison"], _diverged(div, arms),
                         sizes=parts[0]["sizes"], parts=parts, n_parts=len(pairs),
                         part_level=level, mde=_max_mde(units), seeds_needed=_seeds_needed(units))
    return _claim("C5", combine([p["verdict"] for p in parts]), RULE_C5, evidence, summary)


def _efficiency_summary(part: dict, metric: str) -> str:
    learned, zero = part["arms"]
    if len(part["sizes"]) < 2:
        return f"{_arm_label(learned)} over {_arm_label(zero)} gain: fewer than two sizes"
    gains = ", ".join(f"{_num(r['effect'], metric)} at n = {_size_label(r['n_train'])}"
                      for r in part["gain_per_size"])
    return (f"{_arm_label(learned)} over {_arm_label(zero)} gain ({gains}), its fall from n = "
            f"{_size_label(part['sizes'][0])} to {_size_label(part['sizes'][-1])}: "
            f"{_fmt(part['comparison'], metric)} ({part['verdict']})")


@with_margin
def claim_isotropic(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> dict:
    """H1 (Harvey et al.): the learned prior beats an isotropic prior at the pretrained weights."""
    hib = _check_metric(metric)
    table, div = _inference_table(records, metric)
    if not table:
        return _missing("H1", "inference", metric, sum(div.values()), RULE_H1)
    return _pair_claim("H1", RULE_H1, table, div, hib, metric, _learned_vs(table, ISOTROPIC))


# ----------------------------------------------------------------------------- PC control


@with_margin
def claim_control(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> dict:
    """PC: the oracle prior (`sgd+learned` of the control experiment) beats the tuned
    zero-mean prior (`sgd+zero`); the isotropic prior at the same centre (`sgd+isotropic`) is
    compared too, as evidence only."""
    hib = _check_metric(metric)
    table, div = _sized_table(records, "control", metric)
    if not table:
        return _missing(CONTROL_ID, "control", metric, sum(div.values()), RULE_PC)
    pairs = [(SGD_LEARNED, SGD_ZERO), (SGD_LEARNED, SGD_ISOTROPIC)]
    described = [_describe([a, b], _pair_terms(hib, table.get(a, {}), table.get(b, {})),
                           JUDGED_AT[CONTROL_ID], role)
                 for (a, b), role in zip(pairs, ("claim", "evidence only"), strict=True)]
    parts, k = _judge_all(described, counted=[True, False])
    for part in parts:
        part["label"] = comparison_label(part["arms"]).replace("learned prior", "oracle prior")
    evidence = _pair_evidence(metric, parts, _diverged(div, [a for p in pairs for a in p]), k,
                              counted=[True, False])
    summary = "; ".join(_pair_summary(p, metric) for p in parts) + "."
    return _claim(CONTROL_ID, parts[0]["verdict"], RULE_PC, evidence, summary)


@with_margin
def claim_covariance(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> dict:
    """PC2: the task-shaped prior (`sgd+task` of the covariance experiment: the isotropic
    prior's mean and trace, part of its variance along the directions fine-tuning takes on
    labelled downstream images) beats the isotropic prior (`sgd+isotropic`); the samplers'
    pair, where run, is evidence only."""
    hib = _check_metric(metric)
    table, div = _sized_table(records, "covariance", metric)
    if not table:
        return _missing(COVARIANCE_ID, "covariance", metric, sum(div.values()), RULE_PC2)
    pairs = [(a, b) for a, b in ((SGD_TASK, SGD_ISOTROPIC), (SGHMC_TASK, SGHMC_ISOTROPIC))
             if a in table or b in table]
    roles = ["claim"] + ["evidence only"] * (len(pairs) - 1)
    described = [_describe([a, b], _pair_terms(hib, table.get(a, {}), table.get(b, {})),
                           JUDGED_AT[COVARIANCE_ID], role)
                 for (a, b), role in zip(pairs, roles, strict=True)]
    parts, k = _judge_all(described, counted=[r == "claim" for r in roles])
    evidence = _pair_evidence(metric, parts, _diverged(div, [a for p in pairs for a in p]), k,
                              counted=[r == "claim" for r in roles])
    summary = "; ".join(_pair_summary(p, metric) for p in parts) + "."
    return _claim(COVARIANCE_ID, parts[0]["verdict"], RULE_PC2, evidence, summary)


# ----------------------------------------------------------------------------- entry points


@with_margin
def claim_reference(records: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> dict:
    """C4p: on a subspace sampled exactly (the head on fixed features, `reference`), the
    reference posterior's model average beats SGD on the same subspace, size by size; judged
    only where the reference converged (`_gate_reference`). The paper's SGHMC recipe on the
    same subspace against the reference is evidence only (does the recipe sample it?)."""
    hib = _check_metric(metric)
    table, div = _sized_table(records, "reference", metric)
    if not table:
        return _missing(REFERENCE_ID, "reference", metric, sum(div.values()), RULE_C4P)
    pairs = [("reference", "head_sgd"), ("head_sghmc", "reference")]
    roles = ["claim", "evidence only: the recipe against the posterior"]
    described = [_describe([a, b], _pair_terms(hib, table.get(a, {}), table.get(b, {})),
                           JUDGED_AT[REFERENCE_ID], role)
                 for (a, b), role in zip(pairs, roles, strict=True)]
    parts, k = _judge_all(described, counted=[True, False])
    parts[1]["role"] = "evidence only"
    evidence = _pair_evidence(metric, parts, _diverged(div, [a for p in pairs for a in p]), k,
                              counted=[True, False])
    summary = "; ".join(_pair_summary(p, metric) for p in parts) + "."
    claim = _claim(REFERENCE_ID, parts[0]["verdict"], RULE_C4P, evidence, summary)
    return _gate_reference(claim, records)


def _gate_reference(claim: dict, records: Sequence[Mapping[str, Any]]) -> dict:
    """C4p judged only where the T = 1 reference runs of every size converged: for every run
    the 95th percentile over validation points of their R-hat <= REFERENCE_RHAT_MAX, and the
    Monte Carlo SE of the seed-averaged model-averaged test accuracy (sqrt of the sum of the
    runs' squared MC SEs over their number: the MC error of the averaged metric the claim
    reads) below a quarter of the accuracy margin; otherwise `not converged`, with the numbers
    (in `evidence["reference"]` always)."""
    rows: dict[int, dict] = {}
    for r in records:
        cfg = r.get("config") or {}
        diag = (r.get("diagnostics") or {}).get("reference")
        if cfg.get("experiment") != "reference" or cfg.get("arm") != "reference" or not diag:
            continue
        row = rows.setdefault(int(cfg.get("n_train") or 0), {
            "n_train": cfg.get("n_train"), "rhat": 0.0, "mc_se": 0.0, "mc_var": 0.0,
            "ess": math.inf, "accept_min": 1.0, "accept_max": 0.0, "divergent": 0, "runs": 0})
        row["rhat"] = max(row["rhat"], diag["rhat_val_q95"])
        row["mc_var"] += diag["mc_se_accuracy"] ** 2
        row["ess"] = min(row["ess"], diag["ess_val_median"])
        row["accept_min"] = min(row["accept_min"], min(diag["accept_rate"]))
        row["accept_max"] = max(row["accept_max"], max(diag["accept_rate"]))
        row["divergent"] += diag["divergent"]
        row["runs"] += 1
    for row in rows.values():
        row["mc_se"] = math.sqrt(row.pop("mc_var")) / row["runs"]
    table = [rows[n] for n in sorted(rows, key=_size_key)]
    claim["evidence"]["reference"] = table
    limit = MARGINS["accuracy"] / 4
    low, high = ACCEPT_RANGE
    failing = [r for r in table if r["rhat"] > REFERENCE_RHAT_MAX or r["mc_se"] >= limit
               or not low < r["accept_min"] <= r["accept_max"] < high]
    if failing:
        worst = ", ".join(f"n = {_size_label(r['n_train'])}: R-hat {r['rhat']:.3f}, MC SE "
                          f"{100 * r['mc_se']:.2f} points, accept rates "
                          f"{r['accept_min']:.2f}-{r['accept_max']:.2f}" for r in failing)
        claim["verdict"] = "not converged"
        claim["summary"] = (f"Not converged (the reference needs R-hat <= {REFERENCE_RHAT_MAX} on "
                            f"validation points, a Monte Carlo SE of its seed-averaged "
                            f"accuracy below {100 * limit:.2f} points and every chain's accept "
                            f"rate within ({low:g}, {high:g}); {worst}). Had it converged: "
                            + claim["summary"])
    return claim


BUILDERS = (claim_rank, claim_scale, claim_loss_surface, claim_bayes_boost,
            claim_bayes_interaction, claim_reference, claim_data_efficiency, claim_isotropic)
_P_RANGE = (1e-6, 0.5)


def claim_p_value(build: Callable[..., dict], records: Sequence[Mapping[str, Any]],
                  metric: str, margin: float) -> float:
    """The smallest alpha at which the claim's verdict is decisive (supported or contradicted)
    when the claim is judged at level 1 - alpha (its parts at 1 - alpha / k), by bisection on
    log(alpha) over [1e-6, 0.5]; 1.0 when it is not decisive even at 0.5. For a claim of one
    comparison this is the comparison's p-value (`paired.decisive_p`); for k parts that must
    all be supported, k times the largest part p-value."""
    def decisive(alpha: float) -> bool:
        v = build(records, metric, margin, 1.0 - alpha)["verdict"]
        return v in paired.DECISIVE

    lo, hi = _P_RANGE
    if not decisive(hi):
        return 1.0
    if decisive(lo):
        return lo
    for _ in range(18):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if decisive(mid) else (mid, hi)
    return hi


def _mark_uninformative(claims: Sequence[dict]) -> None:
    """Flag the claims of `NEEDS_CONTROL` as uninformative (with the reason) unless the
    positive control is supported: a testbed that cannot show the oracle prior's effect
    cannot show a learned prior's either. Where the covariance control ran and is not
    supported, flag the claims of `NEEDS_COVARIANCE` too: a testbed that cannot show a
    covariance carrying task information cannot show the learned covariance's effect."""
    by_id = {c["id"]: c for c in claims}
    metric = claims[0]["evidence"]["metric"]
    control, covariance = by_id.get(CONTROL_ID), by_id.get(COVARIANCE_ID)
    reasons = {}
    if control is not None and control["verdict"] not in ("supported", "not run"):
        reasons[NEEDS_CONTROL] = (
            f"the positive control PC is {control['verdict']} on "
            f"{metric}: this testbed did not detect the effect of the oracle prior over the "
            "tuned zero-mean prior, so it cannot be shown to detect a prior effect, and this "
            "verdict says little about the paper's claim")
    if covariance is not None and covariance["verdict"] not in ("supported", "not run"):
        reasons[NEEDS_COVARIANCE] = (
            f"the covariance control PC2 is {covariance['verdict']} on {metric}: this testbed "
            "did not show that a covariance carrying task information beats the isotropic "
            "prior at the same mean and trace, so this verdict says little about whether the "
            "learned covariance could help")
    for claim in claims:
        why = [text for ids, text in reasons.items() if claim["id"] in ids]
        claim["evidence"]["uninformative"] = bool(why)
        if why:
            claim["evidence"]["uninformative_reason"] = "; ".join(why)


def _evaluate(selected: Sequence[Mapping[str, Any]], metric: str, margin: float,
              convention: tuple[str, float] | None) -> list[dict]:
    """PC at 95 %, then the eight claims at their Holm levels (see `evaluate_claims`)."""
    token = _CONVENTION.set(None if convention is None
                            else (str(convention[0]), float(convention[1])))
    try:
        claims = []
        for build in (claim_control, claim_covariance):
            control = to_plain(build(selected, metric, margin, CONTROL_LEVEL))
            # the same keys as the family's (readers find every claim's level in one place),
            # but no family: a positive control is judged at 95 % on its own
            control["evidence"]["holm"] = {
                "p_value": claim_p_value(build, selected, metric, margin),
                "level": CONTROL_LEVEL, "family": None, "alpha": 1.0 - CONTROL_LEVEL,
                "note": "a positive control: a check of the testbed, outside the Holm family"}
            claims.append(control)
        p_values = [claim_p_value(build, selected, metric, margin) for build in BUILDERS]
        levels = paired.holm_levels(p_values, FAMILY_ALPHA)
        for build, p, level in zip(BUILDERS, p_values, levels, strict=True):
            claim = to_plain(build(selected, metric, margin, level))
            claim["evidence"]["holm"] = {"p_value": p, "level": level, "family": len(BUILDERS),
                                         "alpha": FAMILY_ALPHA}
            claims.append(claim)
        _mark_uninformative(claims)
        return claims
    finally:
        _CONVENTION.reset(token)


def evaluate_claims(
    records: Sequence[Mapping[str, Any]], metric: str = "accuracy",
    margins: Mapping[str, float] | None = None, convention: tuple[str, float] | None = None,
    predictions: Predictions | None = None, n_boot: int = bootstrap.N_BOOT,
) -> list[dict]:
    """All claim verdicts, in the order PC, C1, C2, C3, C4, C4b, C5, H1, as plain JSON data.

    Tuned arms are first reduced to their validation choice (`selection.select_tuned`). PC is
    judged at 95 % outside the family; each of the eight claims at its Holm-adjusted level
    (`HOLM_RULE`, stored in `evidence["holm"]`), its k parts at 1 - alpha / k. `margins`
    (metric -> smallest effect that matters) defaults to `MARGINS`; `convention` (rescaling
    rule, eps) picks C2's headline convention. `predictions(record)` (optional) returns a
    run's stored predictions (`study.predictions.read_predictions` of the file named by
    `record["predictions"]`, or None): with it, intervals come from the two-way bootstrap over
    seeds and test points (`n_boot` replicates); runs without predictions fall back to t
    intervals over seeds."""
    _check_metric(metric)
    margin = (margins or MARGINS).get(metric, MARGINS[metric])
    selected = select_tuned(records)
    if predictions is not None:
        selected = with_replicates(selected, predictions, [metric], n_boot)
    return _evaluate(selected, metric, margin, convention)


def evaluate_claims_by_metric(
    records: Sequence[Mapping[str, Any]], margins: Mapping[str, float] | None = None,
    others: Sequence[str] = SECONDARY_METRICS, convention: tuple[str, float] | None = None,
    predictions: Predictions | None = None, n_boot: int = bootstrap.N_BOOT,
) -> list[dict]:
    """The accuracy verdicts, each with the same claim's verdict on the `others` metrics in
    `evidence["by_metric"]` (verdict, effect, interval, margin, mde, uninformative), so
    calibration is judged beside accuracy (Holm's correction applies per metric).
    `predictions` as in `evaluate_claims` (read once for every metric)."""
    for m in ("accuracy", *others):
        _check_metric(m)
    selected = select_tuned(records)
    if predictions is not None:
        selected = with_replicates(selected, predictions, ["accuracy", *others], n_boot)

    def run(metric: str) -> list[dict]:
        return _evaluate(selected, metric, (margins or MARGINS).get(metric, MARGINS[metric]),
                         convention)

    main = run("accuracy")
    extra = {m: {c["id"]: c for c in run(m)} for m in others}
    for claim in main:
        claim["evidence"]["by_metric"] = {
            m: {k: extra[m][claim["id"]][k] for k in ("verdict", "summary")}
            | {k: extra[m][claim["id"]]["evidence"].get(k)
               for k in ("effect", "ci_low", "ci_high", "margin", "holm", "mde",
                         "uninformative")}
            for m in others
        }
    return main


def comparison_label(arms: Sequence[str]) -> str:
    """What a comparison subtracts: `A vs B` for two arms; for C4b's four arms (Bayes +
    learned, SGD + learned, Bayes + zero, SGD + zero) the interaction it is."""
    if len(arms) == 4:
        bayes, sgd = (_arm_label(arm_parts(a)[0]) for a in arms[:2])
        learned, zero = (_arm_label(arm_parts(a)[1] or "") for a in (arms[0], arms[2]))
        return f"{bayes} vs {sgd} gain: with the {learned} minus with the {zero}"
    return " vs ".join(_arm_label(a) for a in arms)


def gains_by_size(claims: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Flat rows (claim, comparison, n_train, effect, interval, level, seeds) of every
    comparison's per-size effects in the claims' evidence: the effect of each claim at each
    training size, not only pooled over sizes. `level` is the confidence level of that row's
    interval (the claim's Holm-adjusted level: descriptive; the per-size verdicts of claims
    judged size by size are in each part's `units`, at the part level); `comparison` names what
    the row subtracts (for C4b the interaction, not a pair of arms); C5's rows are its gain per
    size. The positive control (one size, judged at 95 %) is left out."""
    rows = []
    for claim in claims:
        if claim["id"] == CONTROL_ID:
            continue
        ev = claim.get("evidence") or {}
        parts = [p for p in (ev.get("parts") or []) if isinstance(p, Mapping)]
        found = [(p.get("arms"), p.get("per_size") or p.get("gain_per_size")) for p in parts]
        if not parts:
            found = [(ev.get("arms"), ev.get("per_size"))]
        control = ev.get("ensemble_control")
        if control:
            found.append((control.get("arms"), control.get("per_size")))
        for arms, per_size in found:
            for row in per_size or []:
                if not arms or "effect" not in row:
                    continue
                rows.append({"claim": claim["id"], "comparison": comparison_label(arms),
                             "n_train": row["n_train"], "effect": row["effect"],
                             "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                             "level": row.get("level"), "n_seeds": row["n_seeds"]})
    return rows


# what the paper and the reproduction reported, in accuracy points, where a number exists
# (CIFAR-10 and Flowers-102: other data sets than this study's; shown beside, not compared)
PUBLISHED = {"C3": "paper +10.0 at n = 1k (CIFAR-10)", "C4": "paper +5.2 at n = 1k (CIFAR-10)",
             "C5": "paper: 8-12 at n <= 1k, < 1 at n >= 10k (CIFAR-10)",
             "H1": "Harvey et al. -0.2 at n = 1020 (Flowers-102)"}


def forest_rows(claims: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One row per judged comparison of every claim (its headline effect per size, or its
    one comparison), as the verdicts judged them: claim, label, effect, interval, level, mde,
    margin, verdict, and what was published. For the report's first figure."""
    rows = []
    for claim in claims:
        ev = claim.get("evidence") or {}
        units: list[tuple[str, Mapping]] = []
        parts = ev.get("parts")
        if claim["id"] == "C1" and isinstance(parts, Mapping):
            units = [(f"({key}) rank {p.get('best_rank')} vs 0", p["comparison"])
                     for key, p in parts.items() if key != "b" and p.get("comparison")]
        elif claim["id"] == "C2":
            what = {"a": "best vs un-rescaled", "b": "rise over the sweep",
                    "c": "best vs largest"}
            for source, p in (ev.get("sources") or {}).items():
                units += [(f"{source} ({key}) {what[key]}", p[key]) for key in ("a", "b", "c")
                          if isinstance(p.get(key), Mapping) and p[key].get("effect") is not None]
        else:
            several = len([p for p in parts or [] if isinstance(p, Mapping)
                           and p.get("role", "claim") == "claim"]) > 1
            for part in parts or []:
                if not isinstance(part, Mapping) or part.get("role", "claim") != "claim":
                    continue
                method = ARM_LABELS.get(arm_parts(part["arms"][0])[0], "") if several else ""
                for unit in part.get("units") or []:
                    where = ("" if unit.get("n_train") is None
                             else f"n = {_size_label(unit['n_train'])}")
                    units.append((" ".join(filter(None, (method, where or part.get("judged")))),
                                  unit))
        for i, (label, unit) in enumerate(units):
            d = unit.to_dict() if isinstance(unit, Comparison) else unit
            if d.get("effect") is None:
                continue
            rows.append({"claim": claim["id"], "label": label, "effect": d["effect"],
                         "ci_low": d.get("ci_low"), "ci_high": d.get("ci_high"),
                         "level": d.get("level"), "mde": d.get("mde"),
                         "margin": ev.get("margin"), "verdict": d.get("verdict"),
                         "claim_verdict": claim["verdict"],
                         "published": PUBLISHED.get(claim["id"]) if i == 0 else None})
    return rows


def write_claims_json(claims: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the claims as a JSON list atomically (temp file in the same folder, then replace)."""
    text = json.dumps(to_plain(list(claims)), indent=2, allow_nan=False)
    return atomic_write_text(path, text + "\n")
