"""`benchmarks/gpu_session.sh` / `gpu_session.py`, the device session prepared on the CPU: its
time sharing, its chain length from measured step times, and the whole session at toy size
(`--device cpu --tiny`: every stage's code, the smoke study, its notebooks and report)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.py"


@pytest.fixture
def session(monkeypatch):
    return load_benchmark(monkeypatch, "gpu_session")


def _row(pack: int, ms_per_step: float, **extra) -> dict:
    return {"device": "cuda", "model": "small_resnet", "method": "sghmc", "precision": "fp32",
            "pack": pack, "ms_per_step": ms_per_step, **extra}


def test_chain_steps_follow_the_measured_step_of_the_nearest_pack(session) -> None:
    rows = [_row(4, 2.0), _row(16, 5.0), _row(64, 12.0),
            _row(16, 1.0, precision="bf16"), _row(16, 1.0, method="sgd")]
    assert session.CHAINS_STARTUP_S == 25.0
    # 24 chains: the pack of 64's step (the smallest measured pack that holds them), half of
    # (125 - 25) s / 12 ms = 4,166 steps, cut to a multiple of the 150-step cycle
    assert session.chain_steps(rows, 125.0, 24, "cuda") == 4050
    # more chains than any measured pack: the largest pack's step, scaled by chains / pack
    assert session.chain_steps(rows[:2], 125.0, 24, "cuda") == 6600  # 0.5 * 100 / 7.5 ms
    assert session.chain_steps(rows, 1e6, 24, "cuda") == session.CHAIN_STEPS_MAX
    assert session.chain_steps(rows, 0.1, 24, "cuda") == 600
    assert session.chain_steps([], 100.0, 24, "cuda") == 600  # nothing measured: the least
    assert session.chain_steps(rows, 100.0, 24, "cpu") == 600  # rows of another device


def test_a_stage_gets_what_is_left_less_the_later_stages_shares(session) -> None:
    stages = [session.Stage(name, budget, []) for name, budget in
              (("a", 10), ("b", 20), ("c", 30))]
    assert session.limits(stages, 0, deadline=100.0, now=0.0) == 50.0
    assert session.limits(stages, 1, deadline=100.0, now=5.0) == 65.0  # a ended early
    assert session.limits(stages, 2, deadline=100.0, now=95.0) == 5.0
    # an earlier stage that overran leaves a tenth of the share, never nothing
    assert session.limits(stages, 2, deadline=100.0, now=99.5) == 3.0


def _plan(session, tmp_path):
    return session.Plan("cpu", True, tmp_path / "work", tmp_path / "out")


def test_a_stage_past_its_limit_is_killed_and_says_so(session, tmp_path) -> None:
    plan = _plan(session, tmp_path)
    plan.out.mkdir(parents=True)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    printer = [sys.executable, "-c", "print('{\"x\": 1}')"]
    with open(tmp_path / "log", "a") as log:
        start = time.perf_counter()
        out = session.run_stage(session.Stage("s", 1, [], "rows.jsonl", side_by_side=True),
                                [printer, sleeper], 2.0, plan, log)
        assert time.perf_counter() - start < 30
        assert out["status"] == "timeout" and out["returncodes"] == [0, "timeout"]
        # one after the other: a command that fails makes the stage fail, the next still runs
        failing = [sys.executable, "-c", "raise SystemExit(3)"]
        out = session.run_stage(session.Stage("t", 1, [], "rows.jsonl"), [failing, printer],
                                30.0, plan, log)
    assert out["status"] == "failed" and out["returncodes"] == [3, 0]
    assert session._jsonl(plan.out / "rows.jsonl") == [{"x": 1}]  # this stage's rows only


def test_stages_are_named_as_the_command_line_offers_them(session, tmp_path) -> None:
    plan = _plan(session, tmp_path)
    assert tuple(s.name for s in session.stages(plan)) == session.STAGE_NAMES
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny",
                             "--stages", "study,report", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "unknown stage(s) report" in result.stderr


def test_the_device_commands_parse_and_name_what_the_study_has(session, monkeypatch,
                                                               tmp_path) -> None:
    """The commands the device call runs (never run here at that size) are checked against
    each script's own command line and the study profile: a typo would cost a device session."""
    from bprior_core.config import load_profile

    plan = session.Plan("cuda", False, tmp_path / "work", tmp_path / "out")
    plan.out.mkdir(parents=True)
    profile = load_profile(session.session_profile(plan))
    # a rerun's chains read the step times an earlier call left in the work folder
    (plan.work / "throughput.jsonl").write_text(json.dumps(_row(64, 5.0)) + "\n")
    rerun = session.chains_commands(plan, 100.0)[0]
    assert rerun[rerun.index("--cycles") + 1] == "50"  # 0.5 * 75 s / 5 ms = 7,500 steps
    (plan.out / "throughput.jsonl").write_text(json.dumps(_row(64, 10.0)) + "\n")
    commands = [*session.throughput_commands(plan), session.gpu_check_command(plan),
                *session.chains_commands(plan, 100.0)]
    parsed = {}
    for cmd in commands:
        script = Path(cmd[1])
        args = load_benchmark(monkeypatch, script.stem).build_parser().parse_args(cmd[2:])
        parsed.setdefault(script.stem, []).append(args)
        assert getattr(args, "device", "cuda") == "cuda"
    models = {(a.model, a.packing) for a in parsed["throughput"]}
    assert models == {("small_resnet", "auto"), ("resnet50", "auto"), ("resnet50", "stacked")}
    assert {p for a in parsed["throughput"] for p in a.packs.split(",")} == {"1", "4", "16", "64"}
    inference, temperature = parsed["convergence"]
    assert set(inference.arm.split(",")) <= set(profile.experiments.inference.arms)
    assert inference.n_train in profile.experiments.inference.sizes
    assert {float(t) for t in temperature.temperature.split(",")} <= set(
        profile.experiments.temperature.temperatures)
    # half of (100 - 25) s at 10 ms a step for up to 64 chains: 3,750 steps, 25 cycles of 150
    assert inference.cycles * inference.cycle_length == 3750


def test_the_session_profile_is_the_cpu_study_on_the_device(session, tmp_path) -> None:
    from bprior_core.config import load_profile

    plan = session.Plan("cuda", False, tmp_path / "work", tmp_path / "out")
    profile = load_profile(session.session_profile(plan))
    cpu = load_profile("cpu")
    assert (profile.name, profile.device, profile.workers) == ("cpu-session", "cuda", 1)
    assert profile.pack == "auto" and profile.priors.pack == profile.priors.draws == 6
    assert profile.experiments == cpu.experiments and profile.train == cpu.train


def test_cuda_asked_for_without_a_gpu_stops_with_a_message(session, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    assert "--device cpu --tiny" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_whole_session_at_toy_size_on_the_cpu(session, tmp_path) -> None:
    """What the device call runs, on this CPU in about 4 minutes: every stage ends ok and
    leaves what the device tool can bring back (at most 8 plain files)."""
    out = tmp_path / "out"
    env = {**os.environ, "BPRIOR_CARRY": str(tmp_path / "no-carry"), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "--device",
                             "cpu", "--tiny", "--out", str(out), "--work",
                             str(tmp_path / "work")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert len(names) <= 8 and set(names) <= set(session.OUT_FILES), names
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) and (out / n).is_file() for n in names)
    summary = json.loads((out / "stages.json").read_text())
    assert {n: s["status"] for n, s in summary["stages"].items()} == {
        n: "ok" for n in session.STAGE_NAMES}
    throughput = summary["throughput"]
    assert {(r["precision"], r["stacked"]) for r in throughput} >= {
        ("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)}
    assert all(r["ms_per_run_step"] > 0 for r in throughput)
    assert set(summary["claims"]) >= {"PC", "C1", "C3", "C4", "C4p"}
    assert summary["timings"]["notebooks"] > 0
    with tarfile.open(out / "report.tar.gz") as tar:
        assert {"report.html", "claims.json", "timings.json"} <= set(tar.getnames())
    kinds = {(r["kind"], r["group"]) for r in summary["chains"]}
    assert ("pooled", "T=0.001") in kinds and ("prefix", "sghmc+zero T=1") in kinds
    last = [r for r in summary["chains"] if r["kind"] == "prefix"]
    assert all(r["draws_per_chain"] == 5 and r["rhat"] >= 1.0 and r["rhat_val_points_q95"]
               for r in last)
    # at T = 1 the inference chains stand beside the exact head posterior of the same subset
    reference = [r for r in summary["chains"] if r["kind"] == "reference"]
    assert reference and all(r["same_subset"] and r["temperature"] == 1.0 for r in reference)
    assert "ms/step" in (out / "gpu_check.txt").read_text()
