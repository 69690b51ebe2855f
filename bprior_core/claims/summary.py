"""The claims read for figures: arms compared, gains by size, the forest plot's rows beside the
paper's numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.paired import Comparison
from ..formatting import size_label
from ..vocabulary import CONTROL_ID, arm_parts
from .judging import comparison_label
from .registry import RANK_EVIDENCE, SCALE_EVIDENCE, evidence_kind
from .text import ARM_LABELS


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
        kind = evidence_kind(claim["id"])
        if kind == RANK_EVIDENCE and isinstance(parts, Mapping):
            units = [(f"({key}) rank {p.get('best_rank')} vs 0", p["comparison"])
                     for key, p in parts.items() if key != "b" and p.get("comparison")]
        elif kind == SCALE_EVIDENCE:
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
                             else f"n = {size_label(unit['n_train'])}")
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
