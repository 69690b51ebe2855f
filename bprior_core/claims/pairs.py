"""Claims made of paired comparisons of inference arms over training sizes: their tables, how
each comparison is described, judged per size or pooled, summarised, and the samplers'
convergence beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.chains import ESS_MIN, RHAT_MAX
from ..analysis.convergence import MIN_DRAWS
from ..analysis.paired import Comparison, combine, contrast, mean_values
from ..formatting import comparison_text, size_key, size_label, sizes_text
from ..vocabulary import SGHMC, SGHMC_LEARNED, SGLD, SGLD_LEARNED, ZERO
from .judging import (
    JUDGED_AT,
    PER_SIZE_MODE,
    POOLED_MODE,
    SMALLEST_MODE,
    Judgement,
    Sized,
    _claim,
    _evidence,
    _max_mde,
    _seeds_needed,
    collect,
    comparison_label,
)


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


def pooled(j: Judgement,
    terms: Sequence[tuple[float, Mapping[int, Mapping[int, Any]]]], level: float | None = None,
) -> tuple[Comparison, list[dict], list[int]]:
    """A per-seed contrast per size and pooled (per seed, mean over the common sizes), with
    the per-size rows (descriptive: no verdict).

    Pooled seeds must be present in every term at every size used; the same seeds (and, with
    the bootstrap, the same resampled test points) enter every size."""
    sizes = sorted(set.intersection(*(set(t) for _, t in terms)), key=size_key) if terms else []
    per_size = {n: contrast([(coef, t[n]) for coef, t in terms]) for n in sizes}
    seeds = (set.intersection(*(set(d) for d in per_size.values())) if per_size else set())
    mean_d = {s: mean_values([per_size[n][s] for n in sizes]) for s in sorted(seeds)}
    rows = [_descriptive({"n_train": n, **j.one_sample(per_size[n], level).to_dict()})
            for n in sizes]
    return j.one_sample(mean_d, level), rows, sizes


def _pair_terms(hib: bool, a: Sized, b: Sized) -> list[tuple[float, Sized]]:
    sign = 1.0 if hib else -1.0
    return [(sign, a), (-sign, b)]


def _bayes(table: Mapping[str, Sized]) -> str:
    """The Bayesian method's arm prefix: sghmc, or sgld if only that one is present."""
    return SGLD if SGHMC_LEARNED not in table and SGLD_LEARNED in table else SGHMC


def _diverged(div: Mapping[str, int], arms: Sequence[str]) -> int:
    return int(sum(div.get(a, 0) for a in set(arms)))


def _per_size_reason(j: Judgement, rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a pooled comparison must be judged size by size: its per-size estimates point in
    opposite directions by at least the margin (pooling would average a gain and a loss that
    both matter); None otherwise."""
    m = j.margin or 0.0
    effects = [r["effect"] for r in rows if r.get("effect") is not None]
    up = [e for e in effects if e >= m]
    down = [e for e in effects if e <= -m]
    if up and down:
        return (f"per-size effects of opposite sign beyond the margin ({max(up):+.3g} and "
                f"{min(down):+.3g}): judged size by size")
    return None


def _size_contrast(j: Judgement, terms: Sequence[tuple[float, Sized]], n: int, level: float | None
                   ) -> Comparison:
    return j.one_sample(contrast([(coef, t[n]) for coef, t in terms]), level)


def _describe(j: Judgement, arms: Sequence[str], terms: Sequence[tuple[float, Sized]], how: str,
              role: str = "claim") -> dict:
    """A comparison and how it is judged: size by size (`PER_SIZE_MODE`, each size a part),
    where data are scarcest (`SMALLEST_MODE`: the smallest size is the judged part, the other
    sizes' verdicts are shown beside it), or pooled over sizes (`POOLED_MODE`: the per-seed mean
    over sizes; size by size instead when the per-size effects point in opposite directions
    by at least the margin)."""
    sizes = (sorted(set.intersection(*(set(t) for _, t in terms)), key=size_key)
             if terms else [])
    why = {PER_SIZE_MODE: "the claim is stated at every size: judged size by size",
           SMALLEST_MODE: "the claim is about scarce data: judged at the smallest size, the "
                          "other sizes' verdicts beside it",
           POOLED_MODE: "pooled over sizes"}[how]
    if how == POOLED_MODE and len(sizes) > 1:
        reason = _per_size_reason(j, [_size_contrast(j, terms, n, None).to_dict() for n in sizes])
        if reason:
            how, why = PER_SIZE_MODE, reason
    if len(sizes) <= 1 and how != SMALLEST_MODE:
        how = PER_SIZE_MODE  # one size: its comparison is the claim
    return {"arms": list(arms), "role": role, "sizes": sizes, "terms": list(terms),
            "judged": how, "why": why}


def _n_units(part: Mapping[str, Any]) -> int:
    return len(part["sizes"]) if part["judged"] == PER_SIZE_MODE else 1


def _judge(j: Judgement, part: dict, level: float) -> dict:
    """The part's judged comparisons at the part `level` (one per size, the smallest size's,
    or the pooled one), their combined verdict, the comparison its summary shows (`comparison`,
    the first judged one) and one row per size (`per_size`: the judged rows, and beside them,
    at the same level, the other sizes' rows: `beside`; pooled parts: each size at the claim's
    level, `descriptive`)."""
    terms = part.pop("terms")
    sizes, how = part["sizes"], part["judged"]
    if how == POOLED_MODE:
        c, rows, _ = pooled(j, terms, level)
        units = [{"n_train": None, **c.to_dict()}]
        per_size = [_descriptive({"n_train": n, **_size_contrast(j, terms, n, None).to_dict()})
                    for n in sizes]
        head = c
    else:
        comparisons = {n: _size_contrast(j, terms, n, level) for n in sizes}
        judged = sizes if how == PER_SIZE_MODE else sizes[:1]
        units = [{"n_train": n, **comparisons[n].to_dict()} for n in judged]
        per_size = units + [{"n_train": n, **comparisons[n].to_dict(), "beside": True}
                            for n in sizes if n not in judged]
        head = comparisons[judged[0]] if judged else None
    return {**part, "units": units, "per_size": per_size, "comparison": head,
            "part_level": level, "verdict": combine([u["verdict"] for u in units])}


def _judge_all(j: Judgement, parts: Sequence[dict], counted: Sequence[bool] | None = None
               ) -> tuple[list, int]:
    """Judge every part at the claim's level Bonferroni-corrected over the k judged units of
    the parts that enter the verdict (`counted`); returns the judged parts and k."""
    counted = counted or [True] * len(parts)
    k = sum(_n_units(p) for p, c in zip(parts, counted, strict=True) if c)
    level = j.part_level(max(k, 1))
    return [_judge(j, p, level) for p in parts], max(k, 1)


def _units_text(part: Mapping[str, Any]) -> str:
    """'judged per size: supported at 5, 50; inconclusive at full', 'judged at n = 10:
    supported (beside: not supported at 250)' or the pooled verdict."""
    if part.get("role") == "evidence only":
        return f"evidence only: {part['verdict']}"
    if part["judged"] == POOLED_MODE:
        return f"judged pooled: {part['verdict']}"
    groups: dict[str, list[str]] = {}
    for u in part["units"]:
        groups.setdefault(u["verdict"], []).append(size_label(u["n_train"]))
    if part["judged"] == SMALLEST_MODE:
        beside = [f"{r['verdict']} at {size_label(r['n_train'])}" for r in part["per_size"]
                  if r.get("beside")]
        head = part["units"][0] if part["units"] else None
        text = (f"judged at n = {size_label(head['n_train'])}: {head['verdict']}" if head
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
        effects = "; ".join(f"{comparison_text(u, metric)} at n = {size_label(u['n_train'])}"
                            for u in part["units"])
        return f"{label}: {effects}; {_units_text(part)}"
    return (f"{label}: {comparison_text(_headline_of(part), metric)}, {sizes_text(part['sizes'])}, "
            f"{_units_text(part)}")


def _pair_evidence(j: Judgement, parts: Sequence[dict], n_div: int, k: int,
                   counted: Sequence[bool] | None = None, **extra: Any) -> dict:
    """Evidence of a claim made of paired comparisons: the first part's pooled numbers at
    the claim's level (descriptive), every part with its judged units, k, the part level and
    the largest mde of the units that enter the verdict."""
    head = parts[0]
    counted = counted or [True] * len(parts)
    units = [u for p, c in zip(parts, counted, strict=True) if c for u in p["units"]]
    return _evidence(j.metric, head["comparison"], n_div, sizes=head["sizes"],
                     seeds_needed=_seeds_needed(units, j.margin),
                     arms=head["arms"], per_size=head["per_size"], judged=head["judged"],
                     parts=list(parts), n_parts=k, part_level=parts[0]["part_level"],
                     mde=_max_mde(units), **extra)


# The one non-learned comparison of C3, C4b and C5: the paper's non-learned prior, zero-mean and
# isotropic. With its variance tuned on validation it is SGD with tuned weight decay, so it is
# also "standard SGD fine-tuning" for C3; an untuned `sgd` arm (weight decay 1e-4) would compare
# a tuned arm with an untuned one.
NONLEARNED = ZERO


def _pair_claim(j: Judgement, cid: str, rule: str, table: Mapping[str, Sized],
                div: Mapping[str, int], pairs: Sequence[tuple[str, str]],
                roles: Sequence[str] | None = None) -> dict:
    """A claim made of A-vs-B pairs (C3, C4, H1): each pair described, judged (per size for
    the claims of `PER_SIZE`) and combined."""
    roles = roles or ["claim"] * len(pairs)
    described = [_describe(j, [a, b],
                           _pair_terms(j.higher_is_better, table.get(a, {}), table.get(b, {})),
                           JUDGED_AT[cid], role) for (a, b), role in zip(pairs, roles,
                                                                         strict=True)]
    parts, k = _judge_all(j, described)
    arms = [arm for pair in pairs for arm in pair]
    evidence = _pair_evidence(j, parts, _diverged(div, arms), k)
    summary = "; ".join(_pair_summary(p, j.metric) for p in parts) + "."
    return _claim(cid, combine([p["verdict"] for p in parts]), rule, evidence, summary)


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
    table = sorted(rows.values(), key=lambda r: (r["arm"], size_key(r["n_train"])))
    evidence["convergence"] = table
    rhats = [r["rhat"] for r in table if r["rhat"] is not None]
    esses = [r["ess"] for r in table if r["ess"] is not None]
    evidence["rhat"] = max(rhats) if rhats else None
    evidence["ess"] = min(esses) if esses else None
    failing = [r for r in table if r["rhat"] is None or r["ess"] is None
               or r["rhat"] > RHAT_MAX or r["ess"] < ESS_MIN]
    if failing:
        worst = ", ".join(f"{r['arm']} n={size_label(r['n_train'])}: " + (
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
