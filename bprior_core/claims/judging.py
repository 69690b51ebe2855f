"""What every claim shares: how it is judged (`Judgement`: metric, margin, level, convention,
passed explicitly to every claim function by `judged`), reading records into per-seed tables,
formatting effects, and the claim and evidence dicts."""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import vocabulary
from ..analysis import bootstrap, paired
from ..analysis.paired import Comparison, Seeded, mean_values, observed
from ..analysis.power import seeds_needed
from ..analysis.records import headline_value
from ..analysis.selection import best_by_validation
from ..jsonsafe import to_plain
from ..vocabulary import (
    ACCURACY,
    BRIER,
    CLAIMED_EXPERIMENTS,
    CONTROL_ID,
    COVARIANCE_ID,
    ECE,
    NLL,
    REFERENCE_ID,
    arm_parts,
)
from .text import ARM_LABELS, TEXT

# each metric with whether higher is better
METRICS: dict[str, bool] = {m: m == ACCURACY for m in vocabulary.METRICS}
# smallest effects that matter: 1 point of accuracy, 0.02 nats of NLL, 0.01 of ECE and Brier
MARGINS: dict[str, float] = {ACCURACY: 0.01, NLL: 0.02, ECE: 0.01, BRIER: 0.01}
FAMILY_ALPHA = 1.0 - paired.LEVEL  # family-wise error rate over the claims (Holm)
CONTROL_LEVEL = 0.95  # the positive controls' level (outside the Holm family)
# a reference chain accepting too rarely is stuck, too often takes steps too small to move
ACCEPT_RANGE = (0.2, 0.99)
# how each claim made of paired comparisons is judged over training sizes (`_describe`):
# stated at every size (each size a part), or about scarce data (the smallest size judged,
# the other sizes beside it)
PER_SIZE_MODE, SMALLEST_MODE, POOLED_MODE = "per size", "at the smallest size", "pooled"
JUDGED_AT = {"C3": SMALLEST_MODE, "C4": PER_SIZE_MODE, "C4b": PER_SIZE_MODE, "H1": PER_SIZE_MODE,
             CONTROL_ID: PER_SIZE_MODE, COVARIANCE_ID: PER_SIZE_MODE, REFERENCE_ID: PER_SIZE_MODE}


BOOTSTRAP_KEY = "_bootstrap"  # where `with_replicates` puts a record's replicates
Sized = dict[int, Seeded]  # n_train -> seed -> headline metric
Predictions = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Judgement:
    """How one evaluation judges a claim: the metric, its margin (the smallest effect that
    matters), the claim's level, and the (rule, eps) convention that gives C2's verdict (None:
    the first stored). Every comparison a claim makes carries its margin and a level."""

    metric: str
    margin: float
    level: float = paired.LEVEL
    convention: tuple[str, float] | None = None

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric]

    def part_level(self, k: int) -> float:
        """The level each of a claim's k parts is judged at: Bonferroni within the claim."""
        return paired.bonferroni(k, self.level)

    def one_sample(self, values: Mapping[int, Any], level: float | None = None) -> Comparison:
        """`paired.one_sample` at `level` (default: the claim's) and the margin."""
        return paired.one_sample(values, self.level if level is None else level, self.margin)

    def paired_difference(self, a: Mapping[int, Any], b: Mapping[int, Any],
                          higher_is_better: bool = True, level: float | None = None
                          ) -> Comparison:
        """`paired.paired_difference` at `level` (default: the claim's) and the margin."""
        return paired.paired_difference(a, b, higher_is_better,
                                        self.level if level is None else level, self.margin)


def judgement(metric: str = ACCURACY, margin: float | None = None, level: float = paired.LEVEL,
              convention: tuple[str, float] | None = None) -> Judgement:
    """A checked `Judgement`: a known metric, its margin (`margin=` overrides `MARGINS`) > 0,
    a level in (0, 1)."""
    _check_metric(metric)
    value = MARGINS[metric] if margin is None else float(margin)
    if not value > 0:
        raise ValueError(f"a claim's margin must be > 0, got {margin!r} for {metric}")
    if not 0 < level < 1:
        raise ValueError(f"a confidence level must lie in (0, 1), got {level!r}")
    return Judgement(metric, value, level,
                     None if convention is None else (str(convention[0]), float(convention[1])))


def judged(claim: Callable[[Sequence[Mapping[str, Any]], Judgement], dict]
           ) -> Callable[..., dict]:
    """A claim function `claim(records, judgement)` called as `claim(records, metric, margin,
    level, convention)`; the margin and level are stored in the claim's evidence."""
    @functools.wraps(claim)
    def wrapped(records: Sequence[Mapping[str, Any]], metric: str = ACCURACY,
                margin: float | None = None, level: float = paired.LEVEL,
                convention: tuple[str, float] | None = None) -> dict:
        j = judgement(metric, margin, level, convention)
        out = claim(records, j)
        out["evidence"]["margin"] = j.margin
        out["evidence"]["claim_level"] = j.level
        return out

    return wrapped


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


def _arm_label(arm: str) -> str:
    method, prior = arm_parts(arm)
    label = ARM_LABELS.get(method, method)
    return f"{label} + {ARM_LABELS.get(prior, prior)}" if prior else label


def comparison_label(arms: Sequence[str]) -> str:
    """What a comparison subtracts: `A vs B` for two arms; for C4b's four arms (Bayes +
    learned, SGD + learned, Bayes + zero, SGD + zero) the interaction it is."""
    if len(arms) == 4:
        bayes, sgd = (_arm_label(arm_parts(a)[0]) for a in arms[:2])
        learned, zero = (_arm_label(arm_parts(a)[1] or "") for a in (arms[0], arms[2]))
        return f"{bayes} vs {sgd} gain: with the {learned} minus with the {zero}"
    return " vs ".join(_arm_label(a) for a in arms)


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


def _seeds_needed(comparisons: Sequence[Mapping[str, Any] | None], margin: float
                  ) -> int | None:
    """The seeds the least powered of the deciding comparisons (largest mde) would have needed
    for an mde of one margin (its own, else `margin`) at its level, from its own SE; None when
    none has an SE."""
    rows = [c for c in comparisons if c and c.get("mde") is not None]
    if not rows:
        return None
    worst = max(rows, key=lambda c: c["mde"])
    return seeds_needed(worst.get("se"), int(worst.get("n_seeds") or 0), worst["level"],
                        worst.get("margin") or margin)


def _max_mde(comparisons: Sequence[Mapping[str, Any] | None]) -> float | None:
    """The largest minimum detectable effect among the comparisons that decide a verdict
    (every part must be detected for 'supported'); None when none has one."""
    values = [c.get("mde") for c in comparisons if c and c.get("mde") is not None]
    return max(values) if values else None

