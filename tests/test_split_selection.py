"""Issue 15, item 6: Harvey et al.'s selection protocol as a profile choice: fit on 4/5 of each
training subset, score on its held-out 1/5, then train the chosen point on all n."""

from __future__ import annotations

import pytest
import torch
from conftest import edited, set_sizes
from test_config import raw, with_value

from bprior_core import study
from bprior_core.analysis.selection import choice_agreement, choose_point
from bprior_core.config import ProfileError, validate_profile
from bprior_core.data.device import DeviceTask
from bprior_core.study.execution import split_subset
from bprior_core.training.loop import train_pack
from bprior_core.training.models import build_model
from bprior_core.training.run import TrainSettings
from bprior_core.training.spec import RunSpec


def test_a_subset_is_split_a_fifth_per_class_at_least_one(smoke) -> None:
    labels = torch.arange(5).repeat_interleave(40)
    subset = torch.arange(0, 200, 4)  # 10 per class
    fit, held = split_subset(labels, subset, seed=3)
    assert sorted(torch.cat([fit, held]).tolist()) == subset.tolist()
    assert torch.bincount(labels[held]).tolist() == [2] * 5  # round(10 / 5)
    small = torch.tensor([0, 1, 40, 41, 80, 81, 120, 121, 160, 161])  # 2 per class
    fit, held = split_subset(labels, small, seed=3)
    assert torch.bincount(labels[held]).tolist() == [1] * 5 and len(fit) == 5
    assert torch.equal(split_subset(labels, small, 3)[1], held)  # fixed by the seed
    assert not torch.equal(split_subset(labels, subset, 4)[1], split_subset(labels, subset, 3)[1])


def test_the_split_is_a_profile_choice_checked_against_the_sizes() -> None:
    split = with_value(raw(), "experiments.inference.tuning.selection", "split")
    with pytest.raises(ProfileError, match="needs >= 10 images"):
        validate_profile(split)  # smoke's size 5 has one image per class
    set_sizes(split["experiments"]["inference"], [10, 20])
    split["experiments"]["control"]["n_train"] = 10
    profile = validate_profile(split)
    runs = study.plan(profile, ["inference"])
    assert {r["config"].get("fit") for r in runs} == {"split"}


def test_held_out_images_are_scored_as_a_validation_set_of_them_would_be() -> None:
    gen = torch.Generator().manual_seed(0)
    pool = DeviceTask(torch.randn(60, 1, 28, 28, generator=gen),
                      torch.arange(5).repeat(12), 5)
    test = DeviceTask(torch.randn(20, 1, 28, 28, generator=gen), torch.arange(5).repeat(4), 5)
    settings = TrainSettings(steps=4, batch_size=4, cycles=2, burn_in_cycles=0,
                             bn_refresh_batches=1, eval_batch_size=32)
    fit, held = torch.arange(0, 20), torch.arange(40, 50)
    torch.manual_seed(0)
    model = build_model("small_resnet", 5)
    scored = train_pack(model, pool, test, "sgd", settings, [RunSpec(fit, 0, heldout=held)])[0]
    as_val = train_pack(model, pool, test, "sgd", settings, [RunSpec(fit, 0)],
                        val=pool.subset(held))[0]
    assert scored.heldout_final == as_val.val_final and scored.val_final is None
    assert scored.final == as_val.final  # the test metrics are untouched


def tune_record(value: float, heldout_nll: float, val_nll: float) -> dict:
    block = {"accuracy": 0.5, "ece": 0.1, "brier": 0.5}
    return {"status": "ok", "config": {"tuned": {"parameter": "scale", "value": value,
                                                 "lr": None}},
            "val_metrics": {"final": {**block, "nll": val_nll}, "bma": None},
            "heldout_metrics": {"final": {**block, "nll": heldout_nll}, "bma": None}}


def test_the_held_out_split_chooses_and_the_validation_choice_is_compared() -> None:
    records = [tune_record(1e3, 0.9, 0.2), tune_record(1e5, 0.3, 0.8)]
    assert choose_point(records, "heldout")[0] == 1
    assert choose_point(records, "val")[0] == 0
    finals = [{"selection": {"value": 1e5, "lr": None,
                             "validation_choice": {"value": 1e3, "lr": None, "val_nll": 0.2}}},
              {"selection": {"value": 1e5, "lr": None,
                             "validation_choice": {"value": 1e5, "lr": None, "val_nll": 0.2}}}]
    assert choice_agreement(finals) == {"agree": 1, "total": 2}
    assert choice_agreement([{"selection": {"value": 1.0}}]) is None


def test_final_runs_under_split_train_on_the_whole_subset(smoke) -> None:
    profile = edited(smoke.replace("experiments.inference.tuning.selection", "split"),
                     lambda values: set_sizes(values["experiments"]["inference"], [10]))

    def stored(run):
        value = run["config"]["tuned"]["value"]
        record = tune_record(value, heldout_nll=abs(value - 1e5) / 1e9, val_nll=value / 1e9)
        record["config"]["tuned"] = run["config"]["tuned"]
        record["config"]["seed"] = run["config"]["seed"]
        return record

    finals = study.final_runs(profile, stored, ["inference"])
    assert finals and all("fit" not in f["config"] and f["config"]["phase"] == "final"
                          for f in finals)
    learned = [f for f in finals if f["selection"]["parameter"] == "scale"]
    assert {f["selection"]["value"] for f in learned} == {1e5}  # the held-out split's choice
    assert {f["selection"]["validation_choice"]["value"] for f in learned} == {1e1}
