"""One evaluation path for all claims: the controls first, the family at Holm-adjusted levels,
the claims the controls make uninformative marked, per metric; and claims.json."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..analysis import bootstrap, paired
from ..analysis.selection import select_tuned
from ..atomic import atomic_write_text
from ..jsonsafe import to_plain
from ..vocabulary import CONTROL_ID, COVARIANCE_ID, SECONDARY_METRICS
from .judging import (
    CONTROL_LEVEL,
    FAMILY_ALPHA,
    MARGINS,
    Predictions,
    _check_metric,
    with_replicates,
)
from .registry import CONTROLS, FAMILY, NEEDS_CONTROL, NEEDS_COVARIANCE

_P_RANGE = (1e-6, 0.5)


def claim_p_value(build: Callable[..., dict], records: Sequence[Mapping[str, Any]],
                  metric: str, margin: float, convention: tuple[str, float] | None = None
                  ) -> float:
    """The smallest alpha at which the claim's verdict is decisive (supported or contradicted)
    when the claim is judged at level 1 - alpha (its parts at 1 - alpha / k), by bisection on
    log(alpha) over [1e-6, 0.5]; 1.0 when it is not decisive even at 0.5. For a claim of one
    comparison this is the comparison's p-value (`paired.decisive_p`); for k parts that must
    all be supported, k times the largest part p-value."""
    def decisive(alpha: float) -> bool:
        v = build(records, metric, margin, 1.0 - alpha, convention)["verdict"]
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
    claims = []
    for spec in CONTROLS:
        control = to_plain(spec.judge(selected, metric, margin, CONTROL_LEVEL, convention))
        # the same keys as the family's (readers find every claim's level in one place),
        # but no family: a positive control is judged at 95 % on its own
        control["evidence"]["holm"] = {
            "p_value": claim_p_value(spec.judge, selected, metric, margin, convention),
            "level": CONTROL_LEVEL, "family": None, "alpha": 1.0 - CONTROL_LEVEL,
            "note": "a positive control: a check of the testbed, outside the Holm family"}
        claims.append(control)
    p_values = [claim_p_value(spec.judge, selected, metric, margin, convention)
                for spec in FAMILY]
    levels = paired.holm_levels(p_values, FAMILY_ALPHA)
    for spec, p, level in zip(FAMILY, p_values, levels, strict=True):
        claim = to_plain(spec.judge(selected, metric, margin, level, convention))
        assert claim["id"] == spec.id, (claim["id"], spec.id)
        claim["evidence"]["holm"] = {"p_value": p, "level": level, "family": len(FAMILY),
                                     "alpha": FAMILY_ALPHA}
        claims.append(claim)
    _mark_uninformative(claims)
    return claims


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


def write_claims_json(claims: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the claims as a JSON list atomically (temp file in the same folder, then replace)."""
    text = json.dumps(to_plain(list(claims)), indent=2, allow_nan=False)
    return atomic_write_text(path, text + "\n")
