"""Validation-based choices: tuned arms, best ranks and scales never look at test metrics."""

from __future__ import annotations

import copy

import pytest

from bprior_core import claims
from bprior_core.selection import best_by_validation, chosen_values, grid_edges, select_tuned


def run(arm: str, value: float, seed: int, val_nll: float, test_acc: float, *, n: int = 50,
        status: str = "ok") -> dict:
    """A tuned inference record: validation NLL and test accuracy set independently."""
    block = {"accuracy": test_acc, "nll": 2 - test_acc, "ece": 0.05, "brier": 0.5}
    parameter = "scale" if arm.endswith("learned") else "variance"
    return {
        "id": f"{arm}-{value}-{seed}-{n}", "seed": seed, "status": status,
        "config": {"experiment": "inference", "arm": arm, "method": "sgd_prior", "n_train": n,
                   "seed": seed, "prior": {"kind": arm.split("+")[1], "source": "ssl"},
                   "tuned": {"parameter": parameter, "value": value}},
        "metrics": {"final": block if status == "ok" else None, "bma": None},
        "val_metrics": {"final": {"accuracy": 0.5, "nll": val_nll, "ece": 0.1, "brier": 0.5}
                        if status == "ok" else None, "bma": None},
    }


def test_the_lowest_validation_nll_is_chosen_whatever_the_test_says():
    records = [run("sgd+learned", 1e3, 0, val_nll=0.9, test_acc=0.95),  # best on test
               run("sgd+learned", 1e5, 0, val_nll=0.4, test_acc=0.60),  # best on validation
               run("sgd+learned", 1e7, 0, val_nll=0.7, test_acc=0.80)]
    (chosen,) = select_tuned(records)
    assert chosen["config"]["tuned"]["value"] == 1e5
    assert chosen["selection"] == {"parameter": "scale", "value": 1e5, "val_nll": 0.4,
                                   "candidates": [1e3, 1e5, 1e7],
                                   "candidates_val_nll": [0.9, 0.4, 0.7]}


def test_changing_test_metrics_never_changes_the_choice():
    records = [run(arm, v, s, val_nll=abs(hash((arm, v, s))) % 97 / 97, test_acc=0.5)
               for arm in ("sgd+learned", "sgd+zero") for v in (1.0, 2.0, 3.0) for s in range(4)]
    before = [(r["config"]["arm"], r["seed"], r["selection"]["value"])
              for r in select_tuned(records)]
    shuffled = copy.deepcopy(records)
    for i, r in enumerate(shuffled):
        r["metrics"]["final"] = {"accuracy": (7 * i % 11) / 11, "nll": i, "ece": 0, "brier": 0}
    after = [(r["config"]["arm"], r["seed"], r["selection"]["value"])
             for r in select_tuned(shuffled)]
    assert before == after and len(before) == 8


def test_diverged_candidates_are_never_chosen_and_untuned_records_pass():
    untuned = {**run("sgd+learned", 1.0, 0, 0.1, 0.5), "id": "plain"}
    del untuned["config"]["tuned"]
    records = [untuned,
               run("sgd+learned", 1e3, 1, val_nll=0.1, test_acc=0.9, status="diverged"),
               run("sgd+learned", 1e5, 1, val_nll=0.5, test_acc=0.5)]
    out = select_tuned(records)
    assert out[0]["id"] == "plain" and "selection" not in out[0]
    assert out[1]["config"]["tuned"]["value"] == 1e5
    only_diverged = select_tuned([run("sgd+learned", 1e3, 2, 0.1, 0.9, status="diverged")])
    assert only_diverged[0]["status"] == "diverged"


def test_chosen_values_counts_choices_per_arm_and_size():
    records = [run("sgd+learned", 1e3, s, val_nll=0.1 if s else 0.9, test_acc=0.5)
               for s in range(3)]
    records += [run("sgd+learned", 1e5, s, val_nll=0.5, test_acc=0.5) for s in range(3)]
    rows = chosen_values(select_tuned(records))
    assert rows == [{"arm": "sgd+learned", "n_train": 50, "parameter": "scale", "value": 1e3,
                     "runs": 2},
                    {"arm": "sgd+learned", "n_train": 50, "parameter": "scale", "value": 1e5,
                     "runs": 1}]


def test_best_by_validation_takes_the_lowest_mean_and_the_first_on_ties():
    table = {1: {0: 0.5, 1: 0.5}, 2: {0: 0.25, 1: 0.75}, 5: {0: 0.375, 1: 0.625}, 10: {}}
    assert best_by_validation(table, [1, 2, 5, 10]) == 1  # 0.5 three times: the first
    assert best_by_validation(table, [5, 2]) == 5
    assert best_by_validation({**table, 2: {0: 0.25, 1: 0.5}}, [1, 2, 5]) == 2
    assert best_by_validation({}, [1]) is None


def rank_record(rank: int, seed: int, test_acc: float, val_nll: float) -> dict:
    block = {"accuracy": test_acc, "nll": 1.0, "ece": 0.0, "brier": 0.0}
    return {"id": f"r{rank}-{seed}", "seed": seed, "status": "ok",
            "config": {"experiment": "rank", "arm": f"rank={rank}", "method": "sghmc",
                       "n_train": 50, "seed": seed,
                       "prior": {"kind": "learned", "source": "ssl", "rank": rank,
                                 "scale": 1e5}},
            "metrics": {"final": block, "bma": None},
            "val_metrics": {"final": {**block, "nll": val_nll}, "bma": None}}


def test_c1_best_rank_is_the_validation_choice_not_the_test_best():
    # rank 5 is best on test, rank 1 on validation: C1 compares rank 1 with rank 0
    acc = {0: 0.70, 1: 0.72, 5: 0.80}
    val = {0: 0.9, 1: 0.3, 5: 0.6}
    records = [rank_record(r, s, acc[r] + 0.001 * s, val[r]) for r in acc for s in range(5)]
    c1 = claims.claim_rank(records)
    assert c1["evidence"]["parts"]["a"]["best_rank"] == 1
    assert c1["evidence"]["parts"]["a"]["chosen_on"] == "validation"
    assert c1["evidence"]["effect"] == pytest.approx(0.02)


def test_grid_edges_count_choices_on_either_end_of_the_grid():
    records = []
    for s in range(4):  # sgd+learned: seeds 0-2 choose 1e7 (the top), seed 3 chooses 1e5
        for v in (1e3, 1e5, 1e7):
            best = 1e5 if s == 3 else 1e7
            records.append(run("sgd+learned", v, s, val_nll=0.1 if v == best else 0.9,
                               test_acc=0.5))
    for s in range(2):  # sgd+zero: always the smallest variance
        for v in (10.0, 0.1):
            records.append(run("sgd+zero", v, s, val_nll=0.1 if v == 0.1 else 0.9, test_acc=0.5))
    rows = grid_edges(select_tuned(records))
    assert rows == [
        {"arm": "sgd+learned", "parameter": "scale", "grid": [1e3, 1e5, 1e7], "choices": 4,
         "at_low": 0, "at_high": 3, "low_gain": None, "high_gain": pytest.approx(0.8)},
        {"arm": "sgd+zero", "parameter": "variance", "grid": [0.1, 10.0], "choices": 2,
         "at_low": 2, "at_high": 0, "low_gain": pytest.approx(0.8), "high_gain": None}]
    assert grid_edges(records) == []  # nothing selected yet: no choices
