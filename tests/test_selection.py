"""Validation-based choices: tuned arms, best ranks and scales never look at test metrics."""

from __future__ import annotations

import copy

import pytest

from bprior_core.analysis.selection import (
    best_by_validation,
    choose_point,
    chosen_values,
    grid_edges,
    select_tuned,
)
from bprior_core.claims.rank import claim_rank


def run(arm: str, value: float, seed: int, val_nll: float, test_acc: float | None = None, *,
        n: int = 50, status: str = "ok", lr: float | None = None) -> dict:
    """A tuning record (phase `tune`: validation metrics only, unless `test_acc` is given to
    check that test metrics play no part)."""
    block = (None if test_acc is None else
             {"accuracy": test_acc, "nll": 2 - test_acc, "ece": 0.05, "brier": 0.5})
    parameter = "scale" if arm.endswith("learned") else "variance"
    return {
        "id": f"{arm}-{value}-{lr}-{seed}-{n}", "seed": seed, "status": status,
        "config": {"experiment": "inference", "arm": arm, "method": "sgd_prior", "n_train": n,
                   "seed": seed, "prior": {"kind": arm.split("+")[1], "source": "ssl"},
                   "tuned": {"parameter": parameter, "value": value, "lr": lr},
                   "phase": "tune"},
        "metrics": {"final": block if status == "ok" else None, "bma": None},
        "val_metrics": {"final": {"accuracy": 0.5, "nll": val_nll, "ece": 0.1, "brier": 0.5}
                        if status == "ok" else None, "bma": None},
    }


def final_of(records: list[dict]) -> dict:
    """The final record the claims would see for one group of tuning records."""
    best, selection = choose_point(records)
    config = {**records[best]["config"], "phase": "final"}
    return {**records[best], "config": config, "selection": selection}


def finals(records: list[dict]) -> list[dict]:
    groups: dict = {}
    for r in records:
        groups.setdefault((r["config"]["arm"], r["seed"], r["config"]["n_train"]), []).append(r)
    return [final_of(g) for g in groups.values()]


def test_the_lowest_validation_nll_is_chosen_whatever_the_test_says():
    records = [run("sgd+learned", 1e3, 0, val_nll=0.9, test_acc=0.95),  # best on test
               run("sgd+learned", 1e5, 0, val_nll=0.4, test_acc=0.60),  # best on validation
               run("sgd+learned", 1e7, 0, val_nll=0.7, test_acc=0.80)]
    best, selection = choose_point(records)
    assert best == 1
    assert selection == {"parameter": "scale", "value": 1e5, "lr": None, "val_nll": 0.4,
                         "candidates": [
                             {"parameter": "scale", "value": 1e3, "lr": None, "val_nll": 0.9},
                             {"parameter": "scale", "value": 1e5, "lr": None, "val_nll": 0.4},
                             {"parameter": "scale", "value": 1e7, "lr": None, "val_nll": 0.7}]}


def test_changing_test_metrics_never_changes_the_choice():
    records = [run(arm, v, s, val_nll=abs(hash((arm, v, s))) % 97 / 97, test_acc=0.5)
               for arm in ("sgd+learned", "sgd+zero") for v in (1.0, 2.0, 3.0) for s in range(4)]
    before = [(r["config"]["arm"], r["seed"], r["selection"]["value"]) for r in finals(records)]
    shuffled = copy.deepcopy(records)
    for i, r in enumerate(shuffled):
        r["metrics"]["final"] = {"accuracy": (7 * i % 11) / 11, "nll": i, "ece": 0, "brier": 0}
    after = [(r["config"]["arm"], r["seed"], r["selection"]["value"]) for r in finals(shuffled)]
    assert before == after and len(before) == 8


def test_diverged_candidates_are_never_chosen_and_all_diverged_gives_no_choice():
    records = [run("sgd+learned", 1e3, 1, val_nll=0.1, status="diverged"),
               run("sgd+learned", 1e5, 1, val_nll=0.5)]
    assert choose_point(records)[0] == 1
    assert choose_point([run("sgd+learned", 1e3, 2, 0.1, status="diverged")]) is None


def test_select_tuned_keeps_final_and_untuned_runs_only():
    untuned = {**run("sgd+learned", 1.0, 0, 0.1, 0.5), "id": "plain"}
    del untuned["config"]["tuned"], untuned["config"]["phase"]
    tune = run("sgd+learned", 1e3, 1, val_nll=0.1)
    final = final_of([tune])
    assert [r["id"] for r in select_tuned([untuned, tune, final])] == ["plain", final["id"]]


def test_chosen_values_counts_choices_per_arm_and_size():
    records = [run("sgd+learned", 1e3, s, val_nll=0.1 if s else 0.9) for s in range(3)]
    records += [run("sgd+learned", 1e5, s, val_nll=0.5) for s in range(3)]
    rows = chosen_values(finals(records))
    assert rows == [{"arm": "sgd+learned", "n_train": 50, "parameter": "scale", "value": 1e3,
                     "runs": 2},
                    {"arm": "sgd+learned", "n_train": 50, "parameter": "scale", "value": 1e5,
                     "runs": 1}]


def test_a_tuned_learning_rate_is_counted_and_its_edges_found():
    records = [run("sgd+learned", v, 0, lr=lr, val_nll=0.1 if (v, lr) == (1e5, 0.1) else 0.9)
               for v in (1e3, 1e5) for lr in (0.01, 0.1)]
    (final,) = finals(records)
    assert final["selection"]["lr"] == 0.1 and final["selection"]["value"] == 1e5
    assert {(r["parameter"], r["value"]) for r in chosen_values([final])} == {
        ("scale", 1e5), ("lr", 0.1)}
    lr_row = next(r for r in grid_edges([final]) if r["parameter"] == "lr")
    assert lr_row["at_high"] == 1 and lr_row["high_gain"] == pytest.approx(0.8)


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
    c1 = claim_rank(records)
    assert c1["evidence"]["parts"]["a"]["best_rank"] == 1
    assert c1["evidence"]["parts"]["a"]["chosen_on"] == "validation"
    assert c1["evidence"]["effect"] == pytest.approx(0.02)


def test_grid_edges_count_choices_on_either_end_of_the_grid():
    records = []
    for s in range(4):  # sgd+learned: seeds 0-2 choose 1e7 (the top), seed 3 chooses 1e5
        for v in (1e3, 1e5, 1e7):
            best = 1e5 if s == 3 else 1e7
            records.append(run("sgd+learned", v, s, val_nll=0.1 if v == best else 0.9))
    for s in range(2):  # sgd+zero: always the smallest variance
        for v in (10.0, 0.1):
            records.append(run("sgd+zero", v, s, val_nll=0.1 if v == 0.1 else 0.9))
    rows = grid_edges(finals(records))
    assert rows == [
        {"arm": "sgd+learned", "parameter": "scale", "grid": [1e3, 1e5, 1e7], "choices": 4,
         "at_low": 0, "at_high": 3, "low_gain": None, "high_gain": pytest.approx(0.8)},
        {"arm": "sgd+zero", "parameter": "variance", "grid": [0.1, 10.0], "choices": 2,
         "at_low": 2, "at_high": 0, "low_gain": pytest.approx(0.8), "high_gain": None}]
    assert grid_edges(records) == []  # tuning records carry no selection: no choices
