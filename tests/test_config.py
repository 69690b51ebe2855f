"""Tests for bprior_core.config: profile loading and validation with helpful messages."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from bprior_core import config
from bprior_core.config import ProfileError, as_dict, load_profile, validate_profile
from bprior_core.priors.learning import PriorLearningSettings
from bprior_core.training.run import TrainSettings

PROFILES = sorted(p.stem for p in config.PARAMS_DIR.glob("*.yaml"))


def raw(name: str = "smoke") -> dict:
    """The raw (unvalidated) mapping of a profile in params/."""
    return yaml.safe_load((config.PARAMS_DIR / f"{name}.yaml").read_text())


def with_value(base: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(base)
    *parents, last = dotted.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def error_of(profile: dict) -> str:
    with pytest.raises(ProfileError) as info:
        validate_profile(profile)
    return str(info.value)


def test_the_three_profiles_exist() -> None:
    assert {"smoke", "cpu", "flowers102-resnet50"} <= set(PROFILES)


@pytest.fixture(scope="module", autouse=True)
def _beside_the_example(tmp_path_factory):
    """The tests here read the profiles from a copy of params/ beside which `bprior
    example-folder` has written data/example-folder, which the image-folder example profile
    reads (relative to its own folder), from another working folder."""
    import os
    import shutil

    from bprior_core.data.imagefolder import write_example

    folder = tmp_path_factory.mktemp("repo")
    write_example(folder / "data" / "example-folder", per_class=4)
    shutil.copytree(config.PARAMS_DIR, folder / "params")
    before, params = os.getcwd(), config.PARAMS_DIR
    os.chdir(tmp_path_factory.mktemp("elsewhere"))
    config.PARAMS_DIR = config.loading.PARAMS_DIR = folder / "params"
    yield
    config.PARAMS_DIR = config.loading.PARAMS_DIR = params
    os.chdir(before)


def test_relative_paths_are_relative_to_the_profile_file(tmp_path) -> None:
    """A profile's relative paths mean the same files from any working folder (issue 23)."""
    profile = load_profile("imagefolder-example")
    root = config.PARAMS_DIR.parent / "data" / "example-folder"
    assert profile.data.root == str(root / "downstream")
    assert profile.priors.learning.source_root == str(root / "source")
    flowers = load_profile("flowers102-resnet50")
    assert flowers.priors.files.ssl == str(config.PARAMS_DIR.parent / "priors" /
                                                    "resnet50_ssl_prior")
    absolute = with_value(raw("imagefolder-example"), "data.root", str(root / "downstream"))
    absolute["priors"]["learning"]["source_root"] = str(root / "source")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(absolute))
    assert load_profile(tmp_path / "p.yaml").data.root == str(root / "downstream")


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads_and_builds_settings(name) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert set(profile.to_dict()) == set(config.SCHEMA)
    TrainSettings(**as_dict(profile.train))  # what the study does with it
    if profile.priors.source == "learn":
        assert isinstance(config.learning_settings(profile), PriorLearningSettings)
    assert load_profile(config.PARAMS_DIR / f"{name}.yaml") == profile


def test_defaults_fill_what_the_file_leaves_out() -> None:
    profile = load_profile("smoke")
    text = raw("smoke")
    assert "weight_decay" not in text["train"]
    assert profile.train.weight_decay == config.SCHEMA["train"]["weight_decay"].default
    assert "method" not in text["experiments"]["rank"]
    assert profile.experiments.rank.method == "sghmc"
    assert profile.experiments.rank.enabled is True
    # values from the file win over defaults
    assert profile.train.steps == text["train"]["steps"]
    assert isinstance(profile.experiments.scale.scales[0], float)


def test_schema_matches_the_settings_dataclasses() -> None:
    train_fields = {f.name for f in dataclasses.fields(TrainSettings)}
    assert set(config.SCHEMA["train"]) == train_fields
    learning_fields = {f.name for f in dataclasses.fields(PriorLearningSettings)}
    assert set(config.SCHEMA["priors"]["learning"]) == learning_fields | set(config.SOURCE_KEYS)


def test_flowers_profile_reproduces_the_reproduction_setting() -> None:
    profile = load_profile("flowers102-resnet50")
    assert profile.model == "resnet50"
    assert profile.data.dataset == "flowers102"
    assert profile.priors.source == "files"
    assert profile.train.steps == 30000
    # the reproduction's conventions, exactly: the authors' rescaling rule and eps, its scale
    # (1e5 in its scripts) and its subset protocol
    assert profile.priors.rescaling_rule == "authors" and profile.priors.eps == 0.1
    assert profile.experiments.inference.scale == 1e5
    assert profile.data.subset_protocol == "reproduction"


@pytest.mark.parametrize("name", PROFILES)
def test_no_profile_clips_gradients(name) -> None:
    """The preconditioned prior step keeps every scale stable without clipping."""
    profile = load_profile(name)
    assert profile.train.grad_clip is None
    assert profile.train.prior_step_cap == 0.05


@pytest.mark.parametrize(
    ("dotted", "suggestion"),
    [("trian", "train"), ("train.stesp", "steps"), ("priors.learning.max_rnk", "max_rank"),
     ("experiments.scale.scale", "scales")],
)
def test_unknown_key_is_named_with_the_closest_valid_key(dotted, suggestion) -> None:
    message = error_of(with_value(raw(), dotted, 3))
    assert dotted in message
    assert f"did you mean {suggestion!r}" in message


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("train.momentum", 1.5, ["1.5", ">= 0", "<= 0.999"]),
        ("train.steps", 0, ["0", ">= 1"]),
        ("train.lr", -0.1, ["-0.1", ">= 1e-08", "<= 10"]),
        ("seeds", 500, ["500", "<= 100"]),
        ("train.lr", "fast", ["'fast'", "float"]),
        ("train.steps", 2.5, ["2.5", "int"]),
        ("train.steps", True, ["True", "int"]),
        ("train.nesterov", "yes", ["'yes'", "bool"]),
        ("device", "tpu", ["'tpu'", "'cpu'", "'cuda'"]),
        ("experiments.rank.ranks", [0, -1], ["ranks[1]", "-1", ">= 0"]),
        ("experiments.rank.ranks", [], ["non-empty"]),
        ("train.lr", float("nan"), ["nan", "finite"]),
        ("train.cycles", None, ["null"]),
    ],
)
def test_bad_value_states_what_is_allowed(dotted, value, expected) -> None:
    message = error_of(with_value(raw(), dotted, value))
    assert dotted.split(".")[-1] in message
    for text in expected:
        assert text in message, f"{text!r} missing from {message!r}"


def test_grad_clip_may_be_null() -> None:
    profile = validate_profile(with_value(raw(), "train.grad_clip", None))
    assert profile.train.grad_clip is None


def test_exponent_strings_from_yaml_are_accepted_as_floats(tmp_path) -> None:
    text = (config.PARAMS_DIR / "smoke.yaml").read_text()
    text = text.replace("    scale: 1.0e+3\n    scales:", "    scale: 1e9\n    scales:")
    text = text.replace("  lr: 0.01\n", "  lr: 1e-2\n")
    assert "scale: 1e9" in text and "lr: 1e-2" in text
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    assert isinstance(yaml.safe_load(path.read_text())["experiments"]["rank"]["scale"], str)
    profile = load_profile(path)
    assert profile.experiments.rank.scale == 1e9
    assert isinstance(profile.experiments.rank.scale, float)
    assert profile.train.lr == 0.01
    # ints are accepted for float fields and become floats
    assert validate_profile(with_value(raw(), "train.lr", 1)).train.lr == 1.0


@pytest.mark.parametrize(
    ("dotted", "value"),
    [("experiments.rank.ranks", [0, 4]), ("experiments.scale.rank", 4),
     ("experiments.inference.rank", 4)],
)
def test_rank_larger_than_max_rank_is_an_error(dotted, value) -> None:
    profile = with_value(raw(), dotted, value)
    assert profile["priors"]["learning"]["max_rank"] == 3
    message = error_of(profile)
    assert dotted in message and "4" in message and "max_rank" in message


def test_rank_larger_than_the_number_of_swag_snapshots_is_an_error() -> None:
    """swag_steps=6 / collect_every=2 gives 3 snapshots, so a learned prior has rank <= 3 even
    with max_rank 10: asking for rank 5 must fail at validation, not after prior learning."""
    profile = with_value(raw(), "priors.learning.swag_steps", 6)
    profile = with_value(profile, "priors.learning.max_rank", 10)
    profile = with_value(profile, "experiments.scale.rank", 5)
    message = error_of(profile)
    assert "experiments.scale.rank" in message and "5" in message


def test_too_few_snapshots_is_an_error() -> None:
    message = error_of(with_value(raw(), "priors.learning.collect_every", 5))
    assert "snapshot" in message and "collect_every" in message


def test_train_cycles_larger_than_steps_is_rejected_at_validation() -> None:
    """A profile the run code (TrainSettings) would reject must not pass validation."""
    profile = with_value(raw(), "train.steps", 3)
    profile = with_value(profile, "train.cycles", 4)
    with pytest.raises(ValueError):
        TrainSettings(**{**as_dict(load_profile("smoke").train), "steps": 3, "cycles": 4})
    message = error_of(profile)
    assert "cycles" in message


def test_model_and_dataset_must_fit() -> None:
    assert "small_resnet" in error_of(with_value(raw(), "model", "resnet50"))
    flowers_learn = with_value(raw("flowers102-resnet50"), "priors.source", "learn")
    assert "files" in error_of(flowers_learn)


def test_list_choices_are_checked_with_suggestions() -> None:
    message = error_of(with_value(raw(), "experiments.inference.arms", ["sgd", "sghmc+lerned"]))
    assert "'sghmc+lerned'" in message and "did you mean 'sghmc+learned'" in message
    message = error_of(with_value(raw(), "experiments.scale.priors", ["ssl", "imagenet"]))
    assert "'imagenet'" in message and "supervised" in message


def test_profile_needs_a_name_and_a_mapping() -> None:
    profile = copy.deepcopy(raw())
    del profile["name"]
    assert "name" in error_of(profile)
    assert "mapping" in error_of(with_value(raw(), "train", 5))


def test_unknown_profile_name_lists_the_profiles() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("smokey")
    message = str(info.value)
    for name in PROFILES:
        assert name in message
    assert "did you mean 'smoke'" in message


def test_missing_or_invalid_profile_file(tmp_path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: wrong\ntrain:\n  momentum: 1.5\n")
    with pytest.raises(ProfileError) as info:
        load_profile(wrong)
    assert str(wrong) in str(info.value) and "train.momentum" in str(info.value)


# ----------------------------------------------------------------------------- the protocol keys


@pytest.mark.parametrize("dotted, value, expected", [
    ("claims.margins.accuracy", 0.0, "claims.margins.accuracy"),
    ("claims.margins.nll", -0.02, "claims.margins.nll"),
    ("experiments.inference.tuning.scales", [1.0e+3, 1e5, 1e7, 1e9], "at least 5 values"),
    ("experiments.inference.tuning.variances", [1e-3, 0.1, 1.0, 10.0, 1e2, 1e3],
     "same number of grid values"),
    ("data.val_size", 3, "leave classes empty"),
    ("data.val_size", 52, "multiple of 5"),
    ("experiments.temperature.chains", 3, "at least 4 chains"),
    ("experiments.inference.chains", 3, "at least 4 chains"),
    ("experiments.scale.rules", ["authors"], "must be among the swept"),
    ("experiments.scale.eps", [0.1, 0.1], "more than once"),
])
def test_protocol_bad_input_is_refused_before_anything_runs(dotted, value, expected) -> None:
    assert expected in error_of(with_value(raw(), dotted, value))


def test_tuning_needs_a_validation_set_and_files_need_one_draw() -> None:
    assert "data.val_size" in error_of(with_value(raw(), "data.val_size", 0))
    files = with_value(raw(), "priors.source", "files")
    files["experiments"]["scale"]["enabled"] = False
    files["experiments"]["control"]["enabled"] = False
    files["experiments"]["covariance"]["enabled"] = False
    files["priors"]["ssl_source"] = "source_classes"
    assert "priors.draws: 1" in error_of(with_value(files, "priors.draws", 3))


# ----------------------------------------------------------------------------- issue 15 inputs


@pytest.mark.parametrize(("dotted", "value", "expected"), [
    ("data.labelled_pool", 55, "experiments.rank.n_train: [10] needs up to 10 training images, "
                               "but the labelled pool of 55"),
    ("data.labelled_pool", 503, "cannot be split evenly over the 5 downstream classes"),
    ("data.labelled_pool", 0, "priors.ssl_source 'outside_pool'"),
    ("experiments.inference.tuning.weight_decays", [1e-4, 1e-2], "at least 5 values"),
])
def test_issue15_bad_inputs_are_refused_naming_the_key(dotted, value, expected) -> None:
    assert expected in error_of(with_value(raw(), dotted, value))


def test_a_control_without_an_oracle_source_is_refused() -> None:
    profile = with_value(raw(), "data.labelled_pool", 0)
    profile["priors"]["ssl_source"] = "source_classes"
    message = error_of(profile)
    assert "the oracle prior (experiments.control" in message and "labelled_pool > 0" in message
    profile["experiments"]["control"]["enabled"] = False
    message = error_of(profile)
    assert "the covariance control's task prior" in message and "labelled_pool > 0" in message
    profile["experiments"]["covariance"]["enabled"] = False
    validate_profile(profile)  # no oracle or task prior needed: fine


def test_checking_a_profile_does_not_import_the_trainer() -> None:
    """Settings are a leaf module: `bprior plan` and profile checks stay light."""
    import os
    import subprocess
    import sys

    code = ("import sys, bprior_core.config as c; c.load_profile('smoke'); "
            "print(sorted(m for m in ('bprior_core.training.pack', 'bprior_core.training.run', "
            "'bprior_core.priors.learning', 'bprior_core.study') if m in sys.modules))")
    repo = Path(__file__).parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)})
    assert out.stdout.strip() == "[]"


def test_the_posterior_profile_has_draws_enough_for_the_gate_and_the_cpu_prior() -> None:
    """`cpu-posterior`: draws enough for bulk ESS >= 100 (N log10 N >= 100 needs N >= 57), a
    head prior of variance 1 at T = 1 and n = 50, and the cpu profile's prior learning (so the
    cpu study's learned SimCLR prior is the same prior)."""
    posterior, cpu = load_profile("cpu-posterior"), load_profile("cpu")
    train, temp = as_dict(posterior.train), as_dict(posterior.experiments.temperature)
    draws = (train["cycles"] - train["burn_in_cycles"]) * train["samples_per_cycle"]
    assert temp["chains"] * draws * math.log10(temp["chains"] * draws) >= 100
    assert 1.0 in temp["temperatures"]
    assert 1.0 / (temp["n_train"] * train["weight_decay"]) == pytest.approx(1.0)
    assert config.learning_settings(posterior) == config.learning_settings(cpu)
    assert posterior.data == cpu.data
