"""The positive controls, judged before the claims and outside the Holm family: PC (the oracle
prior against the zero-mean prior) and PC2 (a task-shaped covariance against an isotropic one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..vocabulary import (
    CONTROL_ID,
    COVARIANCE_ID,
    SGD_ISOTROPIC,
    SGD_LEARNED,
    SGD_TASK,
    SGD_ZERO,
    SGHMC_ISOTROPIC,
    SGHMC_TASK,
)
from .judging import JUDGED_AT, Judgement, _claim, _missing, comparison_label, judged
from .pairs import (
    _describe,
    _diverged,
    _judge_all,
    _pair_evidence,
    _pair_summary,
    _pair_terms,
    _sized_table,
)
from .text import RULE_PC, RULE_PC2


@judged
def claim_control(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """PC: the oracle prior (`sgd+learned` of the control experiment) beats the tuned
    zero-mean prior (`sgd+zero`); the isotropic prior at the same centre (`sgd+isotropic`) is
    compared too, as evidence only."""
    metric, hib = j.metric, j.higher_is_better
    table, div = _sized_table(records, "control", metric)
    if not table:
        return _missing(CONTROL_ID, "control", metric, sum(div.values()), RULE_PC)
    pairs = [(SGD_LEARNED, SGD_ZERO), (SGD_LEARNED, SGD_ISOTROPIC)]
    described = [_describe(j, [a, b], _pair_terms(hib, table.get(a, {}), table.get(b, {})),
                           JUDGED_AT[CONTROL_ID], role)
                 for (a, b), role in zip(pairs, ("claim", "evidence only"), strict=True)]
    parts, k = _judge_all(j, described, counted=[True, False])
    for part in parts:
        part["label"] = comparison_label(part["arms"]).replace("learned prior", "oracle prior")
    evidence = _pair_evidence(j, parts, _diverged(div, [a for p in pairs for a in p]), k,
                              counted=[True, False])
    summary = "; ".join(_pair_summary(p, metric) for p in parts) + "."
    return _claim(CONTROL_ID, parts[0]["verdict"], RULE_PC, evidence, summary)


@judged
def claim_covariance(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """PC2: the task-shaped prior (`sgd+task` of the covariance experiment: the isotropic
    prior's mean and trace, part of its variance along the directions fine-tuning takes on
    labelled downstream images) beats the isotropic prior (`sgd+isotropic`); the samplers'
    pair, where run, is evidence only."""
    metric, hib = j.metric, j.higher_is_better
    table, div = _sized_table(records, "covariance", metric)
    if not table:
        return _missing(COVARIANCE_ID, "covariance", metric, sum(div.values()), RULE_PC2)
    pairs = [(a, b) for a, b in ((SGD_TASK, SGD_ISOTROPIC), (SGHMC_TASK, SGHMC_ISOTROPIC))
             if a in table or b in table]
    roles = ["claim"] + ["evidence only"] * (len(pairs) - 1)
    described = [_describe(j, [a, b], _pair_terms(hib, table.get(a, {}), table.get(b, {})),
                           JUDGED_AT[COVARIANCE_ID], role)
                 for (a, b), role in zip(pairs, roles, strict=True)]
    parts, k = _judge_all(j, described, counted=[r == "claim" for r in roles])
    evidence = _pair_evidence(j, parts, _diverged(div, [a for p in pairs for a in p]), k,
                              counted=[r == "claim" for r in roles])
    summary = "; ".join(_pair_summary(p, metric) for p in parts) + "."
    return _claim(COVARIANCE_ID, parts[0]["verdict"], RULE_PC2, evidence, summary)
