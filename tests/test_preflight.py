"""Issue 8: `study.preflight` refuses what would fail later (training sizes the pool cannot give,
an unavailable device, an outputs folder owned by another profile file) before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import set_sizes

from bprior_core import config, study
from bprior_core.cli import main
from bprior_core.config import ProfileError, load_profile
from bprior_core.study.preflight import PROFILE_RECORD, check_training_sizes, claim_outputs

# the downstream pool's labels without loading images: 5 classes, 6000 images each
POOL = torch.arange(5).repeat_interleave(6000)


def with_sizes(profile: dict, **sizes) -> dict:
    out = profile
    for experiment, value in sizes.items():
        key = "sizes" if experiment == "inference" else "n_train"
        out = out.replace(f"experiments.{experiment}.{key}", value)
    return out


def test_sizes_of_the_smoke_profile_pass(smoke) -> None:
    check_training_sizes(smoke, POOL)
    check_training_sizes(with_sizes(smoke, inference=[0, 5, 30000], rank=0), POOL)


@pytest.mark.parametrize(("experiment", "value", "key"), [
    ("inference", [5, 7], "experiments.inference.sizes"),
    ("rank", 12, "experiments.rank.n_train"),
    ("scale", 3, "experiments.scale.n_train"),
])
def test_sizes_that_do_not_split_over_the_classes_are_refused(smoke, experiment, value, key):
    with pytest.raises(ProfileError) as info:
        check_training_sizes(with_sizes(smoke, **{experiment: value}), POOL)
    message = str(info.value)
    assert message.startswith(key) and "multiple of 5" in message and "30000" in message


def test_uneven_sizes_are_fine_for_the_reproduction_protocol(smoke) -> None:
    profile = with_sizes(smoke, inference=[3, 7])
    profile = profile.replace("data.subset_protocol", "reproduction")
    check_training_sizes(profile, POOL)


@pytest.mark.parametrize("protocol", ["balanced", "reproduction"])
def test_sizes_larger_than_the_pool_are_refused(smoke, protocol) -> None:
    profile = with_sizes(smoke, inference=[5, 40000])
    profile = profile.replace("data.subset_protocol", protocol)
    with pytest.raises(ProfileError) as info:
        check_training_sizes(profile, POOL)
    assert "experiments.inference.sizes" in str(info.value) and "at most 30000" in str(info.value)


def test_more_per_class_than_the_smallest_class_holds_is_refused(smoke) -> None:
    labels = torch.cat([torch.arange(4).repeat_interleave(6000), torch.full((10,), 4)])
    with pytest.raises(ProfileError, match="smallest downstream class has 10"):
        check_training_sizes(with_sizes(smoke, inference=[100]), labels)


def test_disabled_or_unselected_experiments_are_not_checked(smoke) -> None:
    profile = with_sizes(smoke, rank=7)
    check_training_sizes(profile, POOL, ["inference", "scale"])
    profile = profile.replace("experiments.rank.enabled", False)
    check_training_sizes(profile, POOL)


def test_unavailable_device_is_refused(smoke, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    profile = smoke.replace("device", "cuda")
    with pytest.raises(study.StudyError, match="device: 'cuda'"):
        study.preflight.preflight(profile, tmp_path)


@pytest.fixture
def seven(tmp_path, monkeypatch) -> Path:
    """A smoke profile file with inference size 7 (not a multiple of 5 classes); learning or
    training anything fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("learning or training started")

    monkeypatch.setattr(study.priors, "learn_prior", refuse)
    monkeypatch.setattr(study.execution, "train_pack", refuse)
    raw = yaml.safe_load((config.PARAMS_DIR / "smoke.yaml").read_text())
    set_sizes(raw["experiments"]["inference"], [5, 7])
    path = tmp_path / "seven.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cli_refuses_bad_sizes_before_learning(seven, tmp_path, capsys) -> None:
    path = seven
    assert main(["run", "--profile", str(path), "--outputs", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "experiments.inference.sizes: 7" in err and "multiple of 5" in err
    assert len(err.strip().splitlines()) == 1


def test_the_notebook_entry_points_check_before_they_learn_or_train(seven, tmp_path):
    """`study.run_experiment` (notebooks 02-05) runs preflight first; notebook 01 calls
    `preflight` before `prepare_priors`."""
    for profile in (str(seven), load_profile(seven)):  # a path, or a profile already read
        with pytest.raises(ProfileError, match="experiments.inference.sizes: 7"):
            study.run_experiment(profile, "inference", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    source = (config.PARAMS_DIR.parent / "notebooks" / "01_learn_prior.ipynb").read_text()
    assert source.index("preflight(cfg") < source.index("study.prepare_priors(")


# ------------------------------------------------------------------- same name, other file


def two_files(tmp_path, smoke_text: str, change: bool):
    a, b = tmp_path / "a" / "smoke.yaml", tmp_path / "b" / "smoke.yaml"
    for path in (a, b):
        path.parent.mkdir()
    a.write_text(smoke_text)
    b.write_text(smoke_text.replace("steps: 12", "steps: 13") if change else smoke_text)
    return a, b


def test_another_profile_file_with_the_same_name_is_refused(tmp_path) -> None:
    text = (config.PARAMS_DIR / "smoke.yaml").read_text()
    a, b = two_files(tmp_path, text, change=True)
    out = tmp_path / "out"
    claim_outputs(load_profile(a), a, out)
    record = json.loads((out / "smoke" / PROFILE_RECORD).read_text())
    assert record["profile_file"] == str(a.resolve())
    with pytest.raises(study.StudyError) as info:
        claim_outputs(load_profile(b), b, out)
    message = str(info.value)
    assert str(a.resolve()) in message and str(b.resolve()) in message
    assert "another `name:`" in message and f"delete {out / 'smoke'}" in message
    # the owner may change its settings and run again (the usual resume / re-run workflow)
    a.write_text(text.replace("steps: 12", "steps: 14"))
    claim_outputs(load_profile(a), a, out)


def test_a_copy_or_a_moved_profile_file_is_accepted(tmp_path) -> None:
    text = (config.PARAMS_DIR / "smoke.yaml").read_text()
    a, b = two_files(tmp_path, text, change=False)
    out = tmp_path / "out"
    claim_outputs(load_profile(a), a, out)
    claim_outputs(load_profile(b), b, out)  # same content: the same results
    b.write_text(text.replace("steps: 12", "steps: 13"))
    with pytest.raises(study.StudyError):
        claim_outputs(load_profile(b), b, out)
    a.unlink()  # the owner was moved away: b takes over
    claim_outputs(load_profile(b), b, out)
    assert json.loads((out / "smoke" / PROFILE_RECORD).read_text())["profile_file"] == str(
        b.resolve())
