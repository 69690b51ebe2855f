"""A run's identity is everything that can change its numbers (issue 14): a stored result is
reused only where the run would come out the same."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import fake_record
from test_data import write_fake_fmnist

from bprior_core import study
from bprior_core.priors.files import save_authors_prior
from bprior_core.priors.gaussian import GaussianPrior
from bprior_core.study import planning, resources
from bprior_core.training.models import build_model, flat_parameters


def fake_execute(executed: list):
    def execute(pack, profile, root):
        executed.extend(r["id"] for r in pack)
        return [fake_record(r) for r in pack]
    return execute


def redone(profile: dict, changed: dict, root) -> int:
    """Runs of the rank experiment executed again after `changed` replaces `profile` (the same
    outputs folder, everything stored from the first sweep)."""
    executed: list = []
    runs = study.plan(profile, ["rank"])
    study.run_sweep(profile, runs, root, progress=False, execute=fake_execute(executed))
    assert len(executed) == len(runs)
    executed.clear()
    study.run_sweep(changed, study.plan(changed, ["rank"]), root, progress=False,
                    execute=fake_execute(executed))
    return len(executed)


def test_an_unchanged_profile_redoes_nothing(smoke, tmp_path) -> None:
    assert redone(smoke, smoke, tmp_path) == 0


@pytest.mark.parametrize("change", ["precision", "numerics", "threads", "device"])
def test_what_changes_the_numbers_makes_the_runs_be_redone(smoke, tmp_path, monkeypatch,
                                                          change) -> None:
    changed = copy.deepcopy(smoke)
    executed: list = []
    runs = study.plan(smoke, ["rank"])
    study.run_sweep(smoke, runs, tmp_path, progress=False, execute=fake_execute(executed))
    if change == "precision":
        changed = changed.replace("precision", "bf16")
    elif change == "numerics":
        monkeypatch.setattr(planning, "NUMERICS_VERSION", planning.NUMERICS_VERSION + 1)
    elif change == "threads":
        monkeypatch.setattr(resources, "usable_cores", lambda: 64)
    else:
        monkeypatch.setattr(planning, "resolve_device", lambda name: "cuda")
    again = study.plan(changed, ["rank"])
    assert not {r["id"] for r in again} & {r["id"] for r in runs}
    executed.clear()
    monkeypatch.setattr(study.execution, "resolve_device", lambda name: "cpu")
    study.run_sweep(changed, again, tmp_path, progress=False, execute=fake_execute(executed))
    assert len(executed) == len(again)


def test_changed_data_files_make_the_runs_be_redone(smoke, tmp_path) -> None:
    write_fake_fmnist(tmp_path / "data")
    profile = copy.deepcopy(smoke)
    profile = profile.replace("data.root", str(tmp_path / "data"))
    before = {r["id"] for r in study.plan(profile)}
    write_fake_fmnist(tmp_path / "data", n_train=14)  # same names, other content
    assert not before & {r["id"] for r in study.plan(profile)}


def test_prior_files_replaced_under_the_same_prefix_make_the_runs_be_redone(smoke,
                                                                          tmp_path) -> None:
    """The identity of a published prior is its files' content, not only their path."""
    model = build_model("small_resnet", 5)
    mean = flat_parameters(model.backbone).detach()
    prefix = tmp_path / "published"
    save_authors_prior(GaussianPrior(mean, torch.full_like(mean, 1e-4), torch.zeros(2, len(mean))),
                       prefix, model.backbone.state_dict())
    profile = copy.deepcopy(smoke)
    profile = profile.replace("priors", dict(source="files",
                                             files={"ssl": str(prefix), "supervised": None},
                                             draws=1))
    profile = profile.replace("experiments.scale.priors", ["ssl"])
    root = tmp_path / "out"
    executed: list = []
    runs = study.plan(profile, ["rank"])
    study.run_sweep(profile, runs, root, progress=False, execute=fake_execute(executed))
    torch.save(torch.zeros_like(mean), f"{prefix}_mean.pt")
    torch.save(torch.full_like(mean, 1.0), f"{prefix}_variance.pt")
    again = study.plan(profile, ["rank"])
    assert not {r["id"] for r in again} & {r["id"] for r in runs}
    executed.clear()
    study.run_sweep(profile, again, root, progress=False, execute=fake_execute(executed))
    assert len(executed) == len(again)
