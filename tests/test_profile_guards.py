"""Issue 8: profiles that would break a study are refused when they are read (duplicate list
entries, duplicate YAML keys, names that are not one folder name)."""

from __future__ import annotations

import pytest
import yaml
from test_config import raw, with_value  # the profile helpers, written once

from bprior_core import config
from bprior_core.config import ProfileError, load_profile, validate_profile


@pytest.mark.parametrize(
    ("dotted", "value", "repeated"),
    [
        ("experiments.inference.arms", ["sgd", "sgd"], "'sgd'"),
        ("experiments.inference.sizes", [5, 10, 5], "5"),
        ("experiments.rank.ranks", [0, 1, 1], "1"),
        ("experiments.scale.scales", [1.0, 1000, 1e3], "1000.0"),  # the same number, twice
        ("experiments.scale.priors", ["ssl", "ssl"], "'ssl'"),
    ],
)
def test_duplicate_list_entries_are_refused(dotted, value, repeated) -> None:
    validate_profile(raw())  # the unchanged profile is fine
    with pytest.raises(ProfileError) as info:
        validate_profile(with_value(raw(), dotted, value))
    message = str(info.value)
    assert message.startswith(dotted) and repeated in message and "more than once" in message


def test_duplicate_yaml_keys_are_refused_with_key_and_line(tmp_path) -> None:
    text = (config.PARAMS_DIR / "smoke.yaml").read_text()
    good = tmp_path / "good.yaml"
    good.write_text(text)
    assert load_profile(good).train.steps == 12
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  steps: 12\n", "  steps: 12\n  steps: 1000\n"))
    line = text.splitlines().index("  steps: 12") + 1
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    message = str(info.value)
    assert str(bad) in message and "duplicate key 'steps'" in message
    assert f"line {line + 1}" in message and f"first on line {line}" in message


def test_yaml_merge_keys_may_still_be_overridden() -> None:
    loaded = yaml.load("a: &d {x: 1, y: 2}\nb:\n  <<: *d\n  x: 5\n", Loader=config.UniqueKeyLoader)
    assert loaded["b"] == {"x": 5, "y": 2}


@pytest.mark.parametrize("name", ["../escaped", "a/b", "/abs", ".", "..", "sp ace", "a\\b", ""])
def test_profile_names_must_be_one_folder_name(name) -> None:
    with pytest.raises(ProfileError) as info:
        validate_profile(with_value(raw(), "name", name))
    assert "name" in str(info.value)


@pytest.mark.parametrize("name", ["smoke", "cpu-long", "run_2.v1", "A9"])
def test_ordinary_profile_names_are_accepted(name) -> None:
    assert validate_profile(with_value(raw(), "name", name)).name == name
