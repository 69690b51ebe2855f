"""The typed profile (issue 25): one frozen tree that is also the schema; nothing below the
loader reads a profile by string keys; `to_dict()` is the validated mapping run ids digest."""

from __future__ import annotations

import ast
import dataclasses
import shutil
from pathlib import Path

import pytest

from bprior_core.config import SCHEMA, Profile, ProfileError, load_profile, validate_profile
from bprior_core.config.profile import schema_of
from bprior_core.config.validation import _validate

PACKAGE = Path(__file__).parents[1] / "bprior_core"
PARAMS = sorted((Path(__file__).parents[1] / "params").glob("*.yaml"))
# the loader: it reads the raw YAML mapping and checks it key by key before the tree exists
LOADER = {"config/loading.py", "config/validation.py"}
PROFILE_NAMES = {"profile", "prof"}
# config/'s checks name the profile `p` (elsewhere `p` is any mapping)
CONFIG_PROFILE_NAMES = PROFILE_NAMES | {"p"}


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _string_lookups(tree: ast.AST) -> list[int]:
    """Lines where a profile (a name in PROFILE_NAMES, or a chain from it) is read by a string
    key: `profile["a"]`, `profile.data["root"]`, `profile.get("a")`."""
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)
                and _root_name(node.value) in PROFILE_NAMES):
            lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get" and _root_name(node.func.value) in PROFILE_NAMES):
            lines.append(node.lineno)
    return lines


def _dict_profile_parameters(tree: ast.AST, names: set[str] = PROFILE_NAMES) -> list[int]:
    """Lines of functions that declare a parameter named as a profile (`names`) as a dict."""
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for arg in node.args.args + node.args.kwonlyargs
            if arg.arg in names and arg.annotation is not None
            and "dict" in ast.unparse(arg.annotation)]


def test_no_string_key_lookup_on_a_profile_outside_the_loader() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in LOADER:
            continue
        tree = ast.parse(path.read_text())
        found += [f"{rel}:{line}: string-key lookup" for line in _string_lookups(tree)]
        names = CONFIG_PROFILE_NAMES if rel.startswith("config/") else PROFILE_NAMES
        found += [f"{rel}:{line}: profile: dict" for line in _dict_profile_parameters(tree, names)]
    assert not found, "read the typed profile by attribute:\n" + "\n".join(found)


def test_the_lookup_check_can_fail() -> None:
    """The check above sees the forms it forbids (else it would pass vacuously)."""
    code = ("def f(profile: dict):\n    a = profile['data']['root']\n"
            "    b = profile.priors.files['ssl']\n    c = profile.get('name')\n")
    tree = ast.parse(code)
    assert sorted(set(_string_lookups(tree))) == [2, 3, 4]
    assert _dict_profile_parameters(tree) == [1]
    assert _dict_profile_parameters(ast.parse("def g(p: dict): pass"), CONFIG_PROFILE_NAMES) == [1]


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> Path:
    """A copy of params/ beside the example image folder that one of them reads."""
    from bprior_core.data.imagefolder import write_example

    repo = tmp_path_factory.mktemp("repo")
    write_example(repo / "data" / "example-folder", per_class=4)
    shutil.copytree(PARAMS[0].parent, repo / "params")
    return repo / "params"


@pytest.mark.parametrize("name", [p.name for p in PARAMS])
def test_every_profile_round_trips_through_its_mapping(params: Path, name: str) -> None:
    """`to_dict()` is the mapping the loader validated; validating it again gives the same
    profile, so a profile written out reads back unchanged."""
    profile = load_profile(params / name)
    assert isinstance(profile, Profile)
    values = profile.to_dict()
    assert _validate(values, SCHEMA, "") == values
    assert validate_profile(values) == profile


def test_the_schema_is_the_tree() -> None:
    """Every dataclass field is a schema key and back, nested sections included."""
    def keys(cls: type, prefix: str = "") -> set[str]:
        out = set()
        for f in dataclasses.fields(cls):
            if "section" in f.metadata:
                out |= keys(f.metadata["section"], f"{prefix}{f.name}.")
            else:
                out.add(prefix + f.name)
        return out

    def schema_keys(schema: dict, prefix: str = "") -> set[str]:
        return {k for name, spec in schema.items()
                for k in (schema_keys(spec, f"{prefix}{name}.") if isinstance(spec, dict)
                          else {prefix + name})}

    assert keys(Profile) == schema_keys(SCHEMA)
    assert schema_of(Profile) == SCHEMA
    assert SCHEMA["train"]["cycles"].hi is not None  # the settings' ranges carry over


def test_a_profile_is_frozen_and_not_a_mapping() -> None:
    profile = load_profile("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.seeds = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        profile["seeds"]  # type: ignore[index]  # noqa: B018


def test_replace_sets_one_key_or_merges_a_section() -> None:
    profile = load_profile("smoke")
    draws = profile.priors.draws + 1
    one = profile.replace("priors.draws", draws)
    assert one.priors.draws == draws and profile.priors.draws == draws - 1
    assert one.priors.source == profile.priors.source
    merged = profile.replace("priors", {"source": "files", "files": {"ssl": "x"}})
    assert merged.priors.source == "files" and merged.priors.files.ssl == "x"
    assert merged.priors.files.supervised == profile.priors.files.supervised
    assert merged.priors.learning == profile.priors.learning
    assert profile.replace("", {"seeds": 2, "workers": 1}).seeds == 2
    with pytest.raises(KeyError, match="no key 'draw'"):
        profile.replace("priors.draw", 1)
    with pytest.raises(TypeError, match="section"):
        profile.replace("priors", 3)


def test_the_loader_messages_are_kept() -> None:
    """An unknown key still gets the closest key; a bad value its key path."""
    base = load_profile("smoke").to_dict()
    with pytest.raises(ProfileError, match="did you mean 'draws'"):
        validate_profile({**base, "priors": {**base["priors"], "drawz": 2}})
    with pytest.raises(ProfileError, match="priors.draws"):
        validate_profile({**base, "priors": {**base["priors"], "draws": 0}})
