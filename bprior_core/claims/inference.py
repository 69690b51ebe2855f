"""The inference experiment's claims: C3 (the learned prior's loss surface), C4 and C4b (the
Bayesian gain), C5 (data efficiency) and H1 (learned against isotropic)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import vocabulary
from ..analysis import paired
from ..analysis.paired import Comparison, combine, contrast
from ..formatting import comparison_text, effect_text, size_key, size_label
from ..vocabulary import (
    ENSEMBLE_LEARNED,
    ISOTROPIC,
    LEARNED,
    LONG_SGD,
    SGD,
    SGD_LEARNED,
    SGD_ZERO,
    ZERO,
)
from .judging import (
    JUDGED_AT,
    Judgement,
    Sized,
    _arm_label,
    _claim,
    _evidence,
    _max_mde,
    _missing,
    _seeds_needed,
    judged,
)
from .pairs import (
    NONLEARNED,
    _bayes,
    _describe,
    _describe_convergence,
    _diverged,
    _inference_table,
    _judge_all,
    _pair_claim,
    _pair_evidence,
    _pair_summary,
)
from .text import RULE_C3, RULE_C4, RULE_C4B, RULE_C5, RULE_H1


@judged
def claim_loss_surface(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """C3: SGD with the learned prior beats plain SGD, at every size."""
    metric = j.metric
    table, div = _inference_table(records, metric)
    if not table:
        return _missing("C3", "inference", metric, sum(div.values()), RULE_C3)
    return _pair_claim(j, "C3", RULE_C3, table, div,
                       [(SGD_LEARNED, vocabulary.arm(SGD, NONLEARNED))])


@judged
def claim_bayes_boost(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """C4 (reading 1): Bayesian inference with the learned prior beats SGD with it, at every
    size (and beats the T = 0 snapshot ensemble and SGD trained on the sampler's whole budget
    where the profile has them)."""
    metric = j.metric
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
    claim = _pair_claim(j, "C4", RULE_C4, table, div, pairs, roles)
    return _describe_convergence(claim, records, [a for a, _ in pairs])


@judged
def claim_bayes_interaction(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """C4b (reading 2): the Bayesian gain over SGD is larger with the learned prior."""
    metric, hib = j.metric, j.higher_is_better
    table, div = _inference_table(records, metric)
    if not table:
        return _missing("C4b", "inference", metric, sum(div.values()), RULE_C4B)
    bayes = _bayes(table)
    arms = [vocabulary.arm(bayes, LEARNED), SGD_LEARNED, vocabulary.arm(bayes, ZERO), SGD_ZERO]
    sign = 1.0 if hib else -1.0
    coefs = (sign, -sign, -sign, sign)
    terms = [(coef, table.get(arm, {})) for coef, arm in zip(coefs, arms, strict=True)]
    parts, k = _judge_all(j, [_describe(j, arms, terms, JUDGED_AT["C4b"])])
    evidence = _pair_evidence(j, parts, _diverged(div, arms), k)
    parts[0]["label"] = (f"Bayesian gain with the learned prior minus with the zero-mean "
                         f"prior ({bayes.upper()} vs SGD)")
    summary = _pair_summary(parts[0], metric) + "."
    claim = _claim("C4b", parts[0]["verdict"], RULE_C4B, evidence, summary)
    return _describe_convergence(claim, records, arms[::2])


def _efficiency_part(table: Mapping[str, Sized], hib: bool, learned: str, zero: str) -> dict:
    """The learned prior's gain over the zero-mean prior at each size (shown beside the
    verdict), and what `_judge_fall` judges: the gain where data are scarcest minus the gain
    where they are most plentiful (each size on its own seeds)."""
    a, b = table.get(learned, {}), table.get(zero, {})
    sizes = sorted(set(a) & set(b), key=size_key)
    part: dict[str, Any] = {"arms": [learned, zero], "sizes": sizes}
    sign = 1.0 if hib else -1.0
    part["gains"] = {n: contrast([(sign, a[n]), (-sign, b[n])]) for n in sizes}
    return part


def _judge_fall(j: Judgement, part: dict, level: float) -> dict:
    """C5's part judged at the part `level`: the fall of the gain from the smallest to the
    largest size (`paired.difference_of`: independent seeds per size, Welch's t), its
    `comparison` and only unit; the gain at each size at the same level beside it."""
    gains = part.pop("gains")
    per_size = {n: j.one_sample(gains[n], level) for n in part["sizes"]}
    part["gain_per_size"] = [{"n_train": n, **c.to_dict(), "beside": True}
                             for n, c in per_size.items()]
    if len(part["sizes"]) < 2:
        judged = Comparison(None, None, None, None, 0, (), level, j.margin)
    else:
        first, last = part["sizes"][0], part["sizes"][-1]
        judged = paired.difference_of(per_size[first], per_size[last], level, j.margin)
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


@judged
def claim_data_efficiency(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """C5: the learned-over-non-learned gain is larger at small training sizes."""
    metric, hib = j.metric, j.higher_is_better
    table, div = _inference_table(records, metric)
    if not table:
        return _missing("C5", "inference", metric, sum(div.values()), RULE_C5)
    pairs = _learned_vs(table, ZERO)
    level = j.part_level(len(pairs))
    parts = [_judge_fall(j, _efficiency_part(table, hib, lo, hi), level) for lo, hi in pairs]
    summary = "; ".join(_efficiency_summary(p, metric) for p in parts) + "."
    arms = [arm for pair in pairs for arm in pair]
    units = [u for p in parts for u in p["units"]]
    evidence = _evidence(metric, parts[0]["comparison"], _diverged(div, arms),
                         sizes=parts[0]["sizes"], parts=parts, n_parts=len(pairs),
                         part_level=level, mde=_max_mde(units),
                         seeds_needed=_seeds_needed(units, j.margin))
    return _claim("C5", combine([p["verdict"] for p in parts]), RULE_C5, evidence, summary)


def _efficiency_summary(part: dict, metric: str) -> str:
    learned, zero = part["arms"]
    if len(part["sizes"]) < 2:
        return f"{_arm_label(learned)} over {_arm_label(zero)} gain: fewer than two sizes"
    gains = ", ".join(f"{effect_text(r['effect'], metric)} at n = {size_label(r['n_train'])}"
                      for r in part["gain_per_size"])
    return (f"{_arm_label(learned)} over {_arm_label(zero)} gain ({gains}), its fall from n = "
            f"{size_label(part['sizes'][0])} to {size_label(part['sizes'][-1])}: "
            f"{comparison_text(part['comparison'], metric)} ({part['verdict']})")


@judged
def claim_isotropic(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """H1 (Harvey et al.): the learned prior beats an isotropic prior at the pretrained weights."""
    metric = j.metric
    table, div = _inference_table(records, metric)
    if not table:
        return _missing("H1", "inference", metric, sum(div.values()), RULE_H1)
    return _pair_claim(j, "H1", RULE_H1, table, div, _learned_vs(table, ISOTROPIC))
