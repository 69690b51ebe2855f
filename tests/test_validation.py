"""Issue 14 (items 4, 5, 9): everything that can be validated is validated when the profile is
read, against one range system, with messages that say what is wrong and what would be right;
and every such failure through the command line is one line, exit code 2."""

from __future__ import annotations

import os
import time

import pytest
import yaml
from test_config import error_of, raw, with_value  # the profile helpers, written once
from test_failure_messages import assert_one_line, no_training, run_cli, write_profile

from bprior_core import config, settings
from bprior_core.config import Field, ProfileError, load_profile, validate_profile
from bprior_core.priors.learning import PriorLearningSettings
from bprior_core.settings import PriorParameters
from bprior_core.training.run import TrainSettings

__all__ = ["no_training"]  # a fixture, used by name

# ----------------------------------------------------------------------------- one range system

# every per-experiment value that becomes a training setting or a prior parameter, and the
# settings field whose range it must share
BECOMES = {
    "experiments.inference.tuning.weight_decays": (TrainSettings, "weight_decay"),
    "experiments.temperature.temperatures": (TrainSettings, "temperature"),
    "experiments.rank.scale": (PriorParameters, "scale"),
    "experiments.scale.scales": (PriorParameters, "scale"),
    "experiments.inference.scale": (PriorParameters, "scale"),
    "experiments.inference.tuning.scales": (PriorParameters, "scale"),
    "experiments.temperature.scale": (PriorParameters, "scale"),
    "priors.eps": (PriorParameters, "eps"),
    "experiments.scale.eps": (PriorParameters, "eps"),
    "experiments.inference.tuning.variances": (PriorParameters, "variance"),
    "experiments.inference.nonlearned_variance": (PriorParameters, "variance"),
    "experiments.rank.ranks": (PriorLearningSettings, "max_rank"),
    "experiments.scale.rank": (PriorLearningSettings, "max_rank"),
    "experiments.inference.rank": (PriorLearningSettings, "max_rank"),
    "experiments.temperature.rank": (PriorLearningSettings, "max_rank"),
}


def schema_field(dotted: str) -> Field:
    node = config.SCHEMA
    for key in dotted.split("."):
        node = node[key]
    return node


def numeric_fields(schema: dict, path: str = ""):
    """(dotted key, Field) of every number or list of numbers in the schema."""
    for key, spec in schema.items():
        sub = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            yield from numeric_fields(spec, sub)
        elif spec.kind in (int, float) or spec.items in (int, float):
            yield sub, spec


@pytest.mark.parametrize("dotted", sorted(BECOMES))
def test_a_per_experiment_value_has_the_range_of_the_setting_it_becomes(dotted) -> None:
    """Today `tuning.weight_decays` allows any value >= 0 while train.weight_decay allows <= 1,
    temperatures and scales have no upper bound: values the run refuses after hours."""
    cls, name = BECOMES[dotted]
    meta = settings.field_meta(cls, name)
    spec = schema_field(dotted)
    assert (spec.lo, spec.hi) == (meta["lo"], meta["hi"]), dotted


@pytest.mark.parametrize("dotted", [d for d, _ in numeric_fields(config.SCHEMA)])
def test_every_number_of_a_profile_has_an_upper_bound_finite_in_float32(dotted) -> None:
    """An unbounded number is a typo waiting to cost hours (steps: 1e12 ran out of memory after
    the priors were learned; scales: 1e39 is inf in float32)."""
    spec = schema_field(dotted)
    assert spec.lo is not None and spec.hi is not None, dotted
    assert abs(spec.hi) <= settings.FLOAT32_MAX and abs(spec.lo) <= settings.FLOAT32_MAX


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("experiments.inference.tuning.weight_decays", [1e-4, 2.0], ["[1]", "2.0", "<= 1"]),
        ("experiments.temperature.temperatures", [0.0, 2e6], ["[1]", "2000000.0", "<= 1e+06"]),
        ("experiments.scale.scales", [1.0, 1e39], ["[1]", "1e+39", "<= 1e+15"]),
        ("experiments.inference.tuning.scales", [1e3, 1e20], ["[1]", "1e+20", "<= 1e+15"]),
        ("experiments.inference.tuning.variances", [1e-2, 1e40], ["[1]", "1e+40", "<= 1e+12"]),
        ("experiments.scale.eps", [0.0, 1e300], ["[1]", "1e+300", "<= 1e+12"]),
        ("train.steps", 10**12, ["1000000000000", "<= 1e+06"]),
        ("train.cycles", 30_000_000, ["30000000", "<= 10000"]),
        ("train.batch_size", 10**9, ["<= 65536"]),
        ("train.grad_clip", 1e39, ["1e+39", "<= 1e+06"]),
        ("priors.learning.swag_steps", 10**9, ["<= 1e+06"]),
        ("priors.learning.pretrain_steps", 10**9, ["<= 1e+06"]),
        ("priors.learning.swag_cycles", 10**9, ["<= 10000"]),
        ("experiments.inference.sizes", [5, 10**12], ["[1]", "<= 1e+07"]),
        ("data.val_size", 5 * 10**12, ["<= 1e+07"]),
        ("claims.margins.nll", 1e39, ["<= 100"]),
    ],
)
def test_values_out_of_their_range_are_refused_with_the_range(dotted, value, expected) -> None:
    message = error_of(with_value(raw(), dotted, value))
    assert message.startswith(dotted), message
    for text in expected:
        assert text in message, (text, message)


def test_priors_eps_too_large_for_float32_is_refused() -> None:
    """priors.eps: 1e300 (with the same eps swept) passed; 1e300 is inf in float32."""
    profile = with_value(with_value(raw(), "priors.eps", 1e300), "experiments.scale.eps", [1e300])
    message = error_of(profile)
    assert message.startswith("priors.eps: 1e+300") and "<= 1e+12" in message


@pytest.mark.parametrize(
    ("dotted", "value"),
    [("train.temperature", 1e-45), ("experiments.temperature.temperatures", [0.0, 1e-40]),
     ("experiments.inference.tuning.weight_decays", [1e-39, 1e-2]), ("priors.eps", 1e-42)],
)
def test_a_value_that_float32_rounds_to_zero_is_refused(dotted, value) -> None:
    """Training computes in float32: a temperature of 1e-45 is 0 there (no noise at all), which
    is not what the profile says."""
    message = error_of(with_value(raw(), dotted, value))
    assert dotted.split(".")[-1] in message and "float32" in message and "0" in message


def test_a_huge_schedule_is_refused_at_once() -> None:
    """cycles = steps = 3e7 made `bprior plan` take 88 s and 2.4 GB (the check built the whole
    cyclical schedule)."""
    profile = with_value(with_value(raw(), "train.steps", 30_000_000), "train.cycles", 30_000_000)
    start = time.perf_counter()
    message = error_of(profile)
    assert time.perf_counter() - start < 1.0
    assert "train.steps" in message and "<= 1e+06" in message


# ----------------------------------------------------------------------------- workers


def test_more_workers_than_cores_is_refused_unless_forced(monkeypatch) -> None:
    """workers: 64 on 2 cores was accepted (about 1 GB of memory per worker process)."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("BPRIOR_FORCE_WORKERS", raising=False)
    assert validate_profile(with_value(raw(), "workers", 2)).workers == 2
    message = error_of(with_value(raw(), "workers", 3))
    assert message.startswith("workers: 3") and "2 CPU cores" in message
    assert "workers: 2" in message and "BPRIOR_FORCE_WORKERS=1" in message
    monkeypatch.setenv("BPRIOR_FORCE_WORKERS", "1")
    assert validate_profile(with_value(raw(), "workers", 3)).workers == 3
    assert "<= 64" in error_of(with_value(raw(), "workers", 65))


# ----------------------------------------------------------------------------- YAML and messages


def alias_bomb(levels: int) -> str:
    """A 'billion laughs' profile: each anchor holds nine aliases of the one before; the last
    value expands to 9**levels strings."""
    names = "abcdefghijklmnop"[:levels]
    lines = [f"  - &{names[0]} [x, x, x, x, x, x, x, x, x]"]
    lines += [f"  - &{b} [{', '.join(['*' + a] * 9)}]"
              for a, b in zip(names, names[1:], strict=False)]
    return "name: bomb\ndescription:\n" + "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_within_a_second_in_one_line(tmp_path, capsys) -> None:
    """Today this 1 KB file runs 74 s, takes 2.9 GB and ends in a MemoryError traceback (the
    message embedded repr() of the expanded value); with 6 levels it already prints an error line
    of 3 MB."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9))
    start = time.perf_counter()
    rc, err = run_cli(capsys, "plan", "--profile", str(path))
    assert time.perf_counter() - start < 1.0
    assert rc == 2
    assert_one_line(err, str(path), "10000", "alias")
    assert len(err) < 400


def test_ordinary_aliases_and_merge_keys_are_still_read(tmp_path) -> None:
    text = (config.PARAMS_DIR / "smoke.yaml").read_text()
    grid = "[1.0e+1, 1.0e+3, 1.0e+5, 1.0e+7, 1.0e+9]"
    assert f"scales: {grid}" in text
    text = text.replace(f"scales: {grid}", f"scales: &grid {grid}")
    text = text.replace("variances: [1.0e-3, 3.0e-2, 1.0, 3.0e+1, 1.0e+3]", "variances: *grid")
    path = tmp_path / "aliases.yaml"
    path.write_text(text)
    profile = load_profile(path)
    assert profile.experiments.inference.tuning.variances == [1e1, 1e3, 1e5, 1e7, 1e9]
    merged = "a: &d {x: 1, y: [1, 2]}\nb:\n  <<: *d\n  x: 5\nc: [*d, *d]\n"
    loaded = yaml.load(merged, Loader=config.UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    assert loaded["b"] == {"x": 5, "y": [1, 2]} and loaded["c"] == [loaded["a"]] * 2


def test_a_recursive_alias_is_refused(tmp_path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: loop\nexperiments:\n  rank:\n    ranks: &r [0, *r]\n")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(path) in str(info.value) and "line 4" in str(info.value)


def test_deep_nesting_is_refused_in_one_line(tmp_path, capsys) -> None:
    """5000 nested brackets: PyYAML's composer recursed into a RecursionError traceback."""
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\ndescription: " + "[" * 5000 + "]" * 5000 + "\n")
    rc, err = run_cli(capsys, "plan", "--profile", str(path))
    assert rc == 2
    assert_one_line(err, str(path), "nested")


@pytest.mark.parametrize(
    ("dotted", "value"),
    [("description", ["x" * 100_000]), ("train.lr", "f" * 100_000),
     ("experiments.inference.arms", ["sgd", "y" * 100_000]),
     ("experiments.scale.eps", [0.5] * 5000 + [0.5])],
)
def test_messages_show_values_shortened(dotted, value) -> None:
    """No message embeds an unbounded repr: a value is shown in at most 80 characters."""
    message = error_of(with_value(raw(), dotted, value))
    assert dotted.split(".")[-1] in message and "..." in message
    assert len(message) < 400, len(message)


def test_shown_shortens_to_80_characters() -> None:
    assert config.shown("short") == "'short'"
    assert config.shown([1.0, 2.0]) == "[1.0, 2.0]"
    long = config.shown(list(range(1000)))
    assert len(long) <= 80 and "..." in long


def test_pack_out_of_range_states_the_whole_range() -> None:
    """`pack: 100000` said "expected 'auto' or an integer >= 1"."""
    message = error_of(with_value(raw(), "pack", 100_000))
    assert message.startswith("pack: 100000") and "'auto'" in message
    assert ">= 1" in message and "<= 4096" in message


@pytest.mark.parametrize(
    ("dotted", "suggestion"),
    [("train.learning_rate", "'lr'"), ("train.wd", "'weight_decay'"),
     ("train.num_steps", "'steps'"), ("train.batch", "'batch_size'"),
     ("learning_rate", "'train.lr'"),
     ("steps", "'train.steps' or 'experiments.inference.steps'"),
     ("priors.learning.learning_rate", None), ("train.zzzz", None), ("experiments.foo", None)],
)
def test_unknown_keys_get_a_sensible_suggestion_or_none(dotted, suggestion) -> None:
    """`train.learning_rate` was answered "did you mean 'eval_batch_size'?" (difflib with cutoff
    0.0 always suggests something); no suggestion is better than a wrong one."""
    message = error_of(with_value(raw(), dotted, 0.1))
    assert f"unknown key {dotted}" in message
    if suggestion is None:
        assert "did you mean" not in message, message
    else:
        assert f"did you mean {suggestion}?" in message, message


def test_a_long_profile_name_is_refused_with_the_limit() -> None:
    """A 300-character name ended in "fix its permissions" from the file system."""
    message = error_of(with_value(raw(), "name", "a" * 300))
    assert message.startswith("name: ") and "300 characters" in message and "64" in message
    assert len(message) < 400
    assert validate_profile(with_value(raw(), "name", "a" * 64)).name == "a" * 64


def test_a_folder_named_like_a_profile_does_not_shadow_it(tmp_path, monkeypatch, capsys) -> None:
    """`./cpu/` made `--profile cpu` fail with "Is a directory"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke.yaml").write_text("name: not-this-one\n")
    assert config.profile_path("smoke") == config.PARAMS_DIR / "smoke.yaml"
    assert load_profile("smoke").name == "smoke"
    assert config.profile_path("smoke.yaml").resolve() == (tmp_path / "smoke.yaml").resolve()
    rc, err = run_cli(capsys, "plan", "--profile", "smoke", "--outputs", str(tmp_path / "o"))
    assert rc == 0, err


@pytest.mark.parametrize("given", ["./nowhere", "sub/nowhere", "nowhere.yml", "./smoke"])
def test_a_path_that_does_not_name_a_file_is_an_error_naming_it(tmp_path, monkeypatch,
                                                               capsys, given) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    rc, err = run_cli(capsys, "plan", "--profile", given)
    assert rc == 2
    assert_one_line(err, given)
    assert ("is a folder" if given == "./smoke" else "does not exist") in err


# ----------------------------------------------------------------------------- data through the CLI


@pytest.mark.parametrize("damage", ["label 12", "count", "shape", "empty class"])
def test_bad_data_files_stop_the_run_in_one_line(tmp_path, capsys, no_training, damage) -> None:
    """Labels out of range, a label/image count mismatch, 14 x 56 images and a downstream class
    without images were read and trained on (or ended in ZeroDivisionError / IndexError)."""
    from test_data import damaged_fmnist

    folder, bad_file, needle = damaged_fmnist(tmp_path / "fmnist", damage)
    profile = write_profile(tmp_path, **{"data.root": str(folder)})
    rc, err = run_cli(capsys, "run", "--profile", str(profile), "--outputs",
                      str(tmp_path / "out"))
    assert rc == 2
    assert_one_line(err, str(bad_file), needle)
    assert not (tmp_path / "out").exists()
