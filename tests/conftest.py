"""Shared fixtures: single-threaded torch, the Fashion-MNIST tasks (loaded once), tiny models."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from bprior_core.data import fashion_mnist, tasks
from bprior_core.training.models import Classifier, build_model

# Tests that need the shared smoke study are end-to-end and slow: building the study takes about
# a minute on 2 cores before the first of them runs, and the report on it another 40 s.
SMOKE_STUDY_FIXTURES = {"smoke_study", "smoke_report"}
# With pytest-xdist (`--dist loadgroup`), the tests that share the smoke priors (10 s to learn)
# run in one worker, so they are learned once.
SHARED_FIXTURE_GROUPS = {"smoke_priors": "smoke-priors"}


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test that needs the shared smoke study `slow` (`make test` leaves them out,
    CI's `make test-all` runs them), and group the tests that share an expensive fixture for
    pytest-xdist."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if SMOKE_STUDY_FIXTURES & names:
            item.add_marker(pytest.mark.slow)
        groups = [g for f, g in SHARED_FIXTURE_GROUPS.items() if f in names]
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups[0]))


@pytest.fixture(scope="session", autouse=True)
def _single_thread_session():
    """One intra-op thread, already for session- and module-scoped fixtures (they are set up
    before function-scoped ones): the tensors here are tiny and thread hand-offs dominate (about
    10x slower on this 2-core machine with two threads). Restores the setting at the end."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextmanager
def _environment(name: str, value: str):
    """`$name` set to `value` inside the block, then as it was."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@pytest.fixture(scope="session", autouse=True)
def _short_notebook_cell_limit():
    """A notebook cell here takes seconds: a kernel message lost under load (nbclient then
    waits for it until the cell limit, and the notebook runs again) costs 2 minutes, not 15."""
    from bprior_core.report.build import CELL_TIMEOUT_ENV

    with _environment(CELL_TIMEOUT_ENV, "120"):
        yield


@pytest.fixture(scope="session", autouse=True)
def _cache_in_a_temporary_folder(tmp_path_factory):
    """Decoded image folders go to a folder of this session, not the user's ~/.cache."""
    with _environment(tasks.CACHE_ENV, str(tmp_path_factory.mktemp("bprior-cache"))):
        yield


@pytest.fixture(autouse=True)
def _single_thread(_single_thread_session):
    """The same for every test, in case an earlier test changed the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fmnist_raw_train() -> tasks.TensorTask:
    """All 60k Fashion-MNIST training images with their original labels 0-9."""
    return fashion_mnist.load_fashion_mnist("train")


@pytest.fixture(scope="session")
def downstream_train() -> tasks.TensorTask:
    """The downstream training task (original classes 5-9, labels 0-4)."""
    return fashion_mnist.fashion_mnist_task("downstream", "train")


@pytest.fixture(scope="session")
def downstream_test() -> tasks.TensorTask:
    """The downstream test task (original classes 5-9, labels 0-4)."""
    return fashion_mnist.fashion_mnist_task("downstream", "test")


@pytest.fixture(scope="session")
def source_small(fmnist_raw_train) -> tasks.TensorTask:
    """256 random images of the source task (classes 0-4)."""
    source = tasks.select_classes(fmnist_raw_train, fashion_mnist.SOURCE_CLASSES)
    gen = torch.Generator().manual_seed(0)
    return source.subset(torch.randperm(len(source), generator=gen)[:256])


def _make_small_model(seed: int = 0, num_classes: int = 5) -> Classifier:
    """A small ResNet classifier whose initial weights depend only on `seed`."""
    torch.manual_seed(seed)
    return build_model("small_resnet", num_classes)


@pytest.fixture
def make_model():
    """Factory: `make_model(seed)` -> a fresh small ResNet classifier seeded by `seed`."""
    return _make_small_model


# ----------------------------------------------------------------------------- smoke study
# The smoke profile's priors are learned once, and its whole study run once, per test session;
# tests copy these folders instead of learning and training again.

SMOKE_PACK = 4  # the shared study's runs per pack


@pytest.fixture(scope="session")
def smoke():
    """The validated smoke profile (a frozen `Profile`: `replace` makes an edited copy)."""
    from bprior_core.config import load_profile

    return load_profile("smoke")


@pytest.fixture(scope="session")
def smoke_priors(smoke, tmp_path_factory):
    """An outputs root with every prior draw of the smoke profile learned."""
    from bprior_core import study

    root = tmp_path_factory.mktemp("smoke-priors")
    study.learn_priors(smoke, study.needed_draws(smoke), root=root, progress=False)
    return root


@pytest.fixture(scope="session")
def smoke_study(smoke, smoke_priors, tmp_path_factory):
    """An outputs root with the smoke priors and every smoke run done, tuning and final runs
    (packs of SMOKE_PACK, one worker): the uninterrupted reference of the resume tests and the
    report's results."""
    from bprior_core import study

    root = copy_root(smoke_priors, tmp_path_factory.mktemp("smoke-study") / "outputs")
    study.sweep_study(smoke, study.EXPERIMENTS, root, workers=1, progress=False,
                      pack=SMOKE_PACK)
    return root


def copy_root(source, target):
    """A copy of an outputs root (the shared fixtures must not be changed by a test)."""
    import shutil

    shutil.copytree(source, target)
    return target


def fake_record(run: dict, **extra) -> dict:
    """A complete result record for `run` without training (`records.record_problem` passes),
    for tests of the sweep's bookkeeping."""
    metrics = {"accuracy": 0.5, "nll": 1.0, "ece": 0.1, "brier": 0.6}
    return {"id": run["id"], "config": run["config"], "status": "ok",
            "seed": run["config"]["seed"], "metrics": {"final": metrics, "bma": None},
            "val_metrics": {"final": metrics, "bma": None}, "n_samples": 1, "steps_done": 1,
            "final_loss": 1.0, "diagnostics": {},
            **({"heldout_metrics": {"final": metrics, "bma": None}}
               if run["config"].get("fit") == "split" else {}), **extra}


BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load_benchmark(monkeypatch, name: str):
    """The script `benchmarks/<name>.py` as a module, importing its neighbours as it does when
    run (`python benchmarks/<name>.py`), registered in sys.modules for this test (dataclasses
    look their module up there)."""
    import importlib.util
    import sys

    path = BENCHMARKS / f"{name}.py"
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def edited(profile, edit):
    """A copy of typed `profile` whose mapping `edit(mapping)` changed in place, unchecked: for
    tests that reshape a profile the way a YAML file could (`Profile.replace` sets one key)."""
    from bprior_core.config import Profile
    from bprior_core.config.profile import from_mapping

    values = profile.to_dict()
    edit(values)
    return from_mapping(Profile, values)


def set_sizes(inference: dict, sizes: list[int]) -> dict:
    """Set an (unvalidated or validated) inference section's sizes, with its per-size lists
    (steps, evaluation seeds, power target) cut or padded to one value per size."""
    inference["sizes"] = list(sizes)
    lists = [(inference, "steps")] + [(inference.get("evaluation") or {}, key) for key in
                                      ("seeds", "sampler_seeds", "pilot_sd", "target_mde")]
    for holder, key in lists:
        values = holder.get(key)
        if values:
            holder[key] = (list(values) + [values[-1]] * len(sizes))[: len(sizes)]
    return inference
