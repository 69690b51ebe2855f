"""The Ray back end: the local back end's result files, packs retried when a worker dies, resume,
and one-line errors for a missing `ray` package or an unreachable cluster.

`ray` is imported plainly: CI installs the extra (`make test` installs `.[test,ray]`), so a
missing package is a failure here, not a skip.

Every test here is marked slow: the module starts a local Ray cluster (about 30 s of tests on 2
cores alone), whose processes, beside another pytest worker, made a test take 76 s and would
put the seconds-bound checks of an unreachable cluster at risk; `make test-all` runs them in one
process."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
import ray
import torch
import yaml
from conftest import fake_record

from bprior_core import study
from bprior_core.cli import main
from bprior_core.config import ProfileError, load_profile, validate_profile

pytestmark = pytest.mark.slow

TIMING = ("wall_time_s",)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance with 2 CPUs for the module; the hooks below are defined in this test
    module, which workers cannot import, so they travel by value."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    modules = [sys.modules[__name__], sys.modules["conftest"]]  # the hooks use conftest's too
    for module in modules:
        ray.cloudpickle.register_pickle_by_value(module)
    yield
    for module in modules:
        ray.cloudpickle.unregister_pickle_by_value(module)
    ray.shutdown()


# one thread per pack (cores // workers) keeps two packs side by side on the 2 CPUs, and the
# tiny tensors fast
WORKERS = os.cpu_count() or 1


@pytest.fixture(scope="module")
def tiny() -> dict:
    """The smoke profile cut to a 2-run rank sweep (as tests/test_study.py's mini study), with
    one worker per core (the thread count, cores // workers, is part of a run's identity)."""
    profile = load_profile("smoke").replace("", {"seeds": 1, "workers": WORKERS})
    profile = profile.replace("priors.learning", dict(source_train_size=128, pretrain_steps=2,
                                                      swag_steps=6, collect_every=2,
                                                      bn_refresh_batches=1))
    profile = profile.replace("experiments.rank", dict(ranks=[0, 3], fixed_trace=False,
                                                       scales=None))
    return profile


@pytest.fixture(scope="module")
def learned(tiny, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("learned")
    # priors are learned with cores // workers threads: the CLI run below uses WORKERS too
    study.learn_priors(tiny, study.needed_draws(tiny, ["rank"]),
                       root=root, progress=False)
    return root


@pytest.fixture(scope="module")
def local_results(tiny, learned, tmp_path_factory) -> dict[str, dict]:
    """The local back end's records, one pack at a time in this process (1 thread each)."""
    root = tmp_path_factory.mktemp("local")
    shutil.copytree(learned, root, dirs_exist_ok=True)
    runs = study.plan(tiny, ["rank"])
    for run in runs:
        study.run_sweep(tiny, [run], root, workers=WORKERS, progress=False, pack=1)
    return records(tiny, runs, root)


def ray_sweep(profile: dict, runs: list[dict], root: Path, **kwargs) -> dict[str, int]:
    """`run_sweep` on the Ray back end as these tests run it (one run per pack)."""
    return study.run_sweep(profile, runs, root, workers=WORKERS, progress=False, pack=1,
                           backend="ray", **kwargs)


def records(profile: dict, runs: list[dict], root: Path) -> dict[str, dict]:
    """Each run's stored record without its timing fields."""
    out = {}
    for run in runs:
        record = json.loads(study.result_path(profile, run, root).read_text())
        out[run["id"]] = {k: v for k, v in record.items() if k not in TIMING}
    return out


def fresh(learned: Path, tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    shutil.copytree(learned, root)
    return root


def without_prior_files(members, profile, root):
    """On a worker: a pack that fails if it reads a prior file (it gets the driver's priors)."""
    from unittest import mock

    def refuse(*args, **kwargs):
        raise AssertionError("a Ray worker read a prior file")

    with (mock.patch.object(study.priors, "load_prior", refuse),
          mock.patch.object(study.priors, "load_torch_file", refuse)):
        out = study.execute_pack(members, profile, root)
    return [{**r, "worker_threads": torch.get_num_threads()} for r in out]


def dies_once(members, profile, root):
    """On a worker: the first attempt at each pack kills its worker process."""
    marker = Path(root) / f"attempted-{members[0]['id']}"
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return study.execute_pack(members, profile, root)


# ----------------------------------------------------------------------------- results


def test_ray_writes_the_local_back_ends_result_files(ray_local, tiny, learned, local_results,
                                                      tmp_path) -> None:
    root = fresh(learned, tmp_path)
    runs = study.plan(tiny, ["rank"])
    counts = ray_sweep(tiny, runs, root, execute=without_prior_files)
    assert counts["ran"] == len(runs) == 2 and counts["skipped"] == 0
    got = records(tiny, runs, root)
    assert {r.pop("worker_threads") for r in got.values()} == {1}
    assert got == local_results
    for run in runs:  # back to a plain record
        study.write_json_atomic(
            {**got[run["id"]], "wall_time_s": 0.0}, study.result_path(tiny, run, root))

    # resume: a lost result file retrains only its pack, to the same numbers
    study.result_path(tiny, runs[1], root).unlink()
    again = ray_sweep(tiny, runs, root)
    assert again["skipped"] == 1 and again["ran"] == 1
    assert records(tiny, runs, root) == local_results


def test_a_pack_whose_worker_dies_is_retried(ray_local, tiny, learned, local_results,
                                             tmp_path) -> None:
    root = fresh(learned, tmp_path)
    runs = study.plan(tiny, ["rank"])
    counts = ray_sweep(tiny, runs, root, execute=dies_once)
    assert counts["ran"] == len(runs)
    assert len(list(root.glob("attempted-*"))) == len(runs)  # every pack died once
    assert records(tiny, runs, root) == local_results


def test_a_packs_own_error_reaches_the_driver_unretried(ray_local, tiny, learned,
                                                        tmp_path) -> None:
    def fails(members, profile, root):
        (Path(root) / f"attempt-{os.getpid()}-{len(list(Path(root).glob('attempt-*')))}").touch()
        raise study.StudyError("this pack does not fit")

    root = fresh(learned, tmp_path)
    runs = study.plan(tiny, ["rank"])[:1]
    with pytest.raises(study.StudyError, match="^this pack does not fit$"):
        ray_sweep(tiny, runs, root, execute=fails)
    assert len(list(root.glob("attempt-*"))) == 1
    assert not (study.output_dir(tiny, root) / "runs").exists()


def test_the_profiles_backend_key_is_the_default(ray_local, tiny, learned, tmp_path) -> None:
    def where(members, profile, root):
        return [fake_record(r, pid=os.getpid())
                for r in members]

    runs = study.plan(tiny, ["rank"])
    profile = tiny.replace("backend", "ray")
    root = fresh(learned, tmp_path)
    study.run_sweep(profile, runs, root, workers=WORKERS, progress=False, execute=where)
    pids = {json.loads(study.result_path(tiny, r, root).read_text())["pid"] for r in runs}
    assert os.getpid() not in pids
    with pytest.raises(ProfileError, match="backend.*'local', 'ray'"):
        validate_profile({**tiny.to_dict(), "backend": "dask"})


def test_cli_run_with_the_ray_backend(ray_local, tiny, local_results, tmp_path, capsys) -> None:
    """`bprior run --backend ray` on a profile file: priors learned on the driver, packs on Ray,
    the local back end's records."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**tiny.to_dict(), "workers": WORKERS, "pack": 1}))
    out = tmp_path / "outputs"
    assert main(["run", "--profile", str(path), "--outputs", str(out), "--experiment", "rank",
                 "--backend", "ray"]) == 0
    assert "2 trained in" in capsys.readouterr().out
    assert records(tiny, study.plan(tiny, ["rank"]), out) == local_results


# ----------------------------------------------------------------------------- bad input


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("bprior: error: ")
    return err


@pytest.mark.parametrize("command", ["run", "report"])
def test_without_ray_installed_the_cli_says_how_to_install_it(command, monkeypatch, tmp_path,
                                                               capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "outputs"
    assert main([command, "--profile", "smoke", "--outputs", str(out), "--backend", "ray"]) == 2
    assert "pip install -e '.[ray]'" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("command", ["run", "report"])
def test_an_unreachable_address_fails_before_anything_is_written(command, tmp_path,
                                                                  capsys) -> None:
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "outputs"
    assert main([command, "--profile", "smoke", "--outputs", str(out), "--backend", "ray",
                 "--address", address]) == 2
    assert address in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--address", "127.0.0.1:6379"], "--address is for the Ray back end"),
    (["--backend", "ray", "--address", "nowhere"], "expected auto, HOST:PORT"),
])
def test_address_misuse_is_one_line(extra, message, tmp_path, capsys) -> None:
    out = tmp_path / "outputs"
    assert main(["run", "--profile", "smoke", "--outputs", str(out), *extra]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("server", ["http", "silent"])
def test_a_reachable_address_that_is_not_ray_fails_within_seconds(server, tmp_path,
                                                                  capsys) -> None:
    """Issue 14: `python3 -m http.server` on the port made `--address` hang for minutes; a
    server that accepts and says nothing must not hang either."""
    import http.server
    import threading
    import time

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # not on the stderr the test reads
            pass

    if server == "http":
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
    address = f"127.0.0.1:{port}"
    out = tmp_path / "outputs"
    start = time.monotonic()
    try:
        assert main(["run", "--profile", "smoke", "--outputs", str(out), "--backend", "ray",
                     "--address", address]) == 2
    finally:
        httpd.shutdown() if server == "http" else listener.close()
    assert time.monotonic() - start < 15
    message = one_line_error(capsys)
    assert address in message
    assert ("not as a Ray cluster does" if server == "http" else "does not answer") in message
    assert not out.exists()
