"""Golden run ids (issue 25): the planned and final runs of every profile in `params/` keep
their ids, so a refactor of how the profile is read cannot make stored results unreachable or,
worse, reuse them for a changed run. The machine's context (device, cores, data files, prior
files) is pinned, so the ids are the same on every machine.

After a change that is *meant* to change runs (then bump `NUMERICS_VERSION` if the numbers
change), print the new table with `python tests/test_run_ids.py` and paste it into
`run_ids.json`, saying in the commit why the ids moved."""

from __future__ import annotations

import json
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import pytest

from bprior_core.config import load_profile
from bprior_core.data import imagefolder
from bprior_core.study import finals, planning, resources
from bprior_core.vocabulary import EXPERIMENTS

PARAMS = Path(__file__).parents[1] / "params"
GOLDEN = Path(__file__).with_name("run_ids.json")


class _Listing:
    def digest(self) -> str:
        return "source-folder"


def _pinned_context() -> ExitStack:
    """The machine out of the ids: 2 cores, a CPU, fixed digests for data and prior files."""
    stack = ExitStack()
    for target, name, value in [
            (planning, "data_digest", lambda key: "data-files"),
            (planning, "resolve_device",
             lambda name: "cpu" if name in ("auto", "cpu") else name),
            (resources, "usable_cores", lambda: 2),
            (planning, "authors_files_digest", lambda prefix: "prior-files"),
            (planning, "file_digest", lambda path: "weights-file"),
            (imagefolder, "list_classes", lambda *args: _Listing())]:
        stack.enter_context(mock.patch.object(target, name, value))
    return stack


def run_ids(path: Path, repo: Path) -> list:
    """[number of runs, digest of their sorted ids] for the tuning, single-phase and final runs
    (whichever points tuning chooses) of the profile at `path`. A run's id is the digest of its
    config; paths under `repo` (a profile's relative paths made absolute) are written relative
    to it first, so the table does not depend on where the repository lies."""
    profile = load_profile(path)
    with _pinned_context():
        runs = planning.plan(profile) + finals._any_finals(profile, EXPERIMENTS)
    assert all(run["id"] == planning.digest(run["config"]) for run in runs)
    ids = [planning.digest(json.loads(json.dumps(run["config"]).replace(str(repo), "<repo>")))
           for run in runs]
    return [len(runs), planning.digest(sorted(ids))]


def _profiles(folder: Path) -> dict[str, list]:
    """Every profile of a copy of params/ beside the example image folder it reads."""
    from bprior_core.data.imagefolder import write_example

    write_example(folder / "data" / "example-folder", per_class=4)
    shutil.copytree(PARAMS, folder / "params")
    return {f.name: run_ids(f, folder) for f in sorted((folder / "params").glob("*.yaml"))}


@pytest.fixture(scope="module")
def current(tmp_path_factory) -> dict[str, list]:
    return _profiles(tmp_path_factory.mktemp("repo"))


def test_every_profile_has_golden_run_ids(current) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert sorted(current) == sorted(golden), (
        "params/ and tests/run_ids.json list different profiles; add the new one's line "
        "(`python tests/test_run_ids.py` prints them all)")


@pytest.mark.parametrize("name", sorted(f.name for f in PARAMS.glob("*.yaml")))
def test_run_ids_are_unchanged(current, name) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert current[name] == golden.get(name), (
        f"{name}: the runs' ids moved ([count, digest] {golden.get(name)} -> {current[name]}); "
        "stored results would no longer be found. If that is intended, see this file's docstring")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        json.dump(_profiles(Path(tmp)), sys.stdout, indent=1)
        print()
