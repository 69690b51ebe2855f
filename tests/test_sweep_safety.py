"""Issue 8: result files are standard JSON (NaN stored as null), one process per profile runs a
sweep or learns priors, and a sweep with several workers resumes to byte-identical result files."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import edited, fake_record, set_sizes

from bprior_core import study
from bprior_core.study.lock import lock_path, profile_lock

REPO = Path(__file__).resolve().parent.parent


def strict_loads(text: str):
    """json.loads that refuses the non-standard NaN / Infinity."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def nan_record(run: dict) -> dict:
    return fake_record(run, status="diverged", final_loss=float("nan"),
                       metrics={"final": {"accuracy": 0.2, "nll": float("inf"), "ece": None,
                                          "brier": None}, "bma": None},
                       diagnostics={"grad_norm": [1.0, float("-inf")]})


def test_nan_is_written_as_null_and_reads_back(smoke, tmp_path) -> None:
    run = study.plan(smoke)[0]
    path = study.result_path(smoke, run, tmp_path)
    study.write_json_atomic(nan_record(run), path)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = strict_loads(text)
    assert record["final_loss"] is None and record["metrics"]["final"]["nll"] is None
    assert record["diagnostics"]["grad_norm"] == [1.0, None]
    assert study.read_record(path) == record and study.is_done(smoke, run, tmp_path)


def test_a_sweep_stores_diverged_runs_as_standard_json(smoke, tmp_path) -> None:
    runs = study.plan(smoke, ["inference"])[:3]
    counts = study.run_sweep(smoke, runs, tmp_path, workers=1, progress=False,
                             execute=lambda pack, profile, root: [nan_record(r) for r in pack])
    assert counts["ran"] == 3 and counts["diverged"] == 3
    for run in runs:
        record = strict_loads(study.result_path(smoke, run, tmp_path).read_text())
        assert record["final_loss"] is None
    assert len(study.load_results(smoke, tmp_path)) == 3


# ----------------------------------------------------------------------------- the lock


def fake_execute(pack, profile, root):
    return [fake_record(r) for r in pack]


def test_a_held_lock_stops_a_second_sweep(smoke, tmp_path) -> None:
    runs = study.plan(smoke, ["inference"])[:2]
    with profile_lock(smoke, tmp_path):
        with pytest.raises(study.StudyError) as info:
            study.run_sweep(smoke, runs, tmp_path, workers=1, progress=False,
                            execute=fake_execute)
        message = str(info.value)
        assert "another bprior process is running profile 'smoke'" in message
        assert str(lock_path(smoke, tmp_path)) in message
        assert not (study.output_dir(smoke, tmp_path) / "runs").exists()  # nothing ran
    counts = study.run_sweep(smoke, runs, tmp_path, workers=1, progress=False,
                             execute=fake_execute)
    assert counts["ran"] == 2
    # the lock is released when the sweep ends, also when it fails
    with pytest.raises(RuntimeError, match="boom"):
        study.run_sweep(smoke, study.plan(smoke, ["rank"])[:1], tmp_path, workers=1,
                        progress=False, execute=lambda *a: (_ for _ in ()).throw(
                            RuntimeError("boom")))
    with profile_lock(smoke, tmp_path):
        pass


def test_a_held_lock_stops_prior_learning_but_not_reading(smoke, tmp_path, monkeypatch) -> None:
    smoke = smoke.replace("workers", 1)  # learned in this process, where learn_draws is replaced
    learned = []
    monkeypatch.setattr(study.priors, "learn_draws",
                        lambda *a, **k: learned.extend((a[1], d) for d in a[2]))
    with profile_lock(smoke, tmp_path):
        with pytest.raises(study.StudyError, match="another bprior process is running profile"):
            study.learn_priors(smoke, [("ssl", 0)], tmp_path, progress=False)
        assert learned == []  # nothing learned while another process holds the lock
        monkeypatch.setattr(study.priors, "is_stored", lambda *a: True)
        paths = study.learn_priors(smoke, [("ssl", 0)], tmp_path, progress=False)
        assert list(paths) == [("ssl", 0)]  # stored priors are read without the lock
    monkeypatch.setattr(study.priors, "is_stored", lambda *a: False)
    study.learn_priors(smoke, [("ssl", 0), ("supervised", 1)], tmp_path, progress=False)
    assert learned == [("ssl", 0), ("supervised", 1)]


def test_a_second_process_is_refused_while_the_first_runs(smoke, tmp_path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from bprior_core.config import load_profile
            from bprior_core.study.lock import profile_lock
            with profile_lock(load_profile("smoke"), Path({str(tmp_path)!r})):
                print("locked", flush=True)
                sys.stdin.read()
        """)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(study.StudyError, match=f"held by process {child.pid}"):
            study.run_sweep(smoke, study.plan(smoke)[:1], tmp_path, workers=1, progress=False,
                            execute=fake_execute)
    finally:
        child.communicate("", timeout=60)
    counts = study.run_sweep(smoke, study.plan(smoke)[:1], tmp_path, workers=1, progress=False,
                             execute=fake_execute)
    assert counts["ran"] == 1


# ----------------------------------------------------------------------------- workers: 2, resumed


TIMING_KEYS = {"wall_time_s"}


def untimed(content: bytes) -> bytes:
    """A result file's bytes with its timing value blanked out."""
    return re.sub(rb'"wall_time_s": [^,\n]+', b'"wall_time_s": T', content)


def without_timing(path: Path) -> dict:
    record = json.loads(path.read_text())
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}


def test_two_worker_sweep_with_one_run_left_resumes_byte_identical(smoke, tmp_path) -> None:
    profile = copy.deepcopy(smoke)
    profile = profile.replace("", dict(seeds=2, workers=2, pack=1))
    profile = profile.replace("priors.draws", 1)
    profile = profile.replace("experiments.inference.tuning.enabled", False)
    profile = profile.replace("priors.learning", dict(source_train_size=128, pretrain_steps=2,
                                                      swag_steps=4, collect_every=2,
                                                      bn_refresh_batches=1, max_rank=2))
    profile = edited(profile, lambda values: set_sizes(values["experiments"]["inference"], [5]))
    profile = profile.replace("experiments.inference", dict(arms=["sgd", "sgd+learned"], rank=2))
    profile = profile.replace("train", dict(steps=4))
    study.learn_priors(profile, ["ssl"], root=tmp_path, progress=False)
    runs = study.plan(profile, ["inference"])
    assert len(runs) == 4
    counts = study.run_sweep(profile, runs, tmp_path, progress=False)
    assert counts["ran"] == 4
    paths = [study.result_path(profile, r, tmp_path) for r in runs]
    before = {p: p.read_bytes() for p in paths}
    assert all(json.loads(b)["status"] == "ok" for b in before.values())
    lost = paths[2]
    lost.unlink()
    counts = study.run_sweep(profile, runs, tmp_path, progress=False)
    assert counts["ran"] == 1 and counts["skipped"] == 3
    for p in paths:
        if p != lost:
            assert p.read_bytes() == before[p]  # untouched
    assert without_timing(lost) == {k: v for k, v in json.loads(before[lost]).items()
                                    if k not in TIMING_KEYS}
    # byte-identical once the timing is set aside
    assert untimed(lost.read_bytes()) == untimed(before[lost])


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_workers_end_when_their_parent_is_killed(tmp_path) -> None:
    """Issue 14: kill -9 of `bprior run` left its worker processes training (and writing prior
    files without the lock) for good; now they follow their parent within about a second."""
    import signal
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing as mp, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from bprior_core.study.resources import set_worker_threads, worker_initargs\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(2, mp_context=mp.get_context('spawn'),\n"
        "                               initializer=set_worker_threads,\n"
        "                               initargs=worker_initargs(1))\n"
        "    pids = [pool.submit(os.getpid).result() for _ in range(4)]\n"
        "    [pool.submit(time.sleep, 120) for _ in range(2)]\n"
        "    print(' '.join(map(str, sorted(set(pids)))), flush=True)\n"
        "    time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert workers and all(_alive(p) for p in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers)
    finally:
        parent.kill()
        for pid in workers if "workers" in locals() else []:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
