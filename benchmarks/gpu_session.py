"""One device session: every GPU measurement the project needs, in one call of at most 9 minutes.

Stages, each a subprocess with its own time limit (a stage that ends early leaves its time to
the later ones; a stage never eats the time reserved for the stages after it):
  environment       the device, torch and CUDA versions
  throughput        `throughput.py`: the small ResNet packed at R = 1, 4, 16, 64, fp32 and bf16
                    (channels-last), then ResNet-50 (224 px, batch 16) packed by channels and
                    stacked (vmap), fp32 and bf16: ms per run-step and the ratio to a raw step
  gpu_check         `gpu_check.py`: every method on ResNet-50 with a rank-5 prior in the
                    authors' four-file format
  chain_study       `bprior run` of the inference, temperature and reference experiments of the
                    study profile (`cpu` with device cuda and pack auto: the cut of the `gpu`
                    profile this session can afford): what the chains read
  chains            `convergence.py` on that study: full-network SGHMC chains of the inference
                    experiment's sampler arms at n = 10 (at the profile's temperature and at
                    T = 1, beside the exact head posterior of the reference experiment) and of
                    the temperature experiment at T = 0.1 and 1, as long as the time left allows
                    (from the measured step time), with R-hat and ESS against chain length
  study             `bprior report`: the rest of the study, then its notebooks under papermill
                    and the offline report (timings.json: the stages of what it ran)
Everything lands in `--out` (the device tool's $OUT: at most 8 files come back): session.log,
stages.json (every stage's status, seconds and summary), throughput.jsonl, gpu_check.txt,
convergence.jsonl and report.tar.gz (the report, its claims and timings).

    bash benchmarks/gpu_session.sh                                 # on the device, out: $OUT
    bash benchmarks/gpu_session.sh --device cpu --tiny --out DIR   # the same code in ~3 min here
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
# the device tool brings back at most 8 files from $OUT, named in letters, digits, '.', '_', '-'
OUT_FILES = ("session.log", "stages.json", "environment.json", "throughput.jsonl",
             "gpu_check.txt", "convergence.jsonl", "report.tar.gz")
# one `run` call: the device's 10-minute command limit less a minute for one rerun's start;
# the tiny check takes about 4 minutes on 2 cores (more where it shares them)
SESSION_BUDGET_S = 540
TINY_BUDGET_S = 1200
CHAIN_STEPS_MAX = 30_000  # the posterior work's estimate of what full-network chains need
CHAINS_STARTUP_S = 25.0  # a convergence.py process before its first step (the cpu study)


@dataclass(frozen=True)
class Stage:
    """A step of the session: its commands (one after the other, or side by side), its time
    share and the file (in --out) its commands' stdout goes to (else the log)."""

    name: str
    budget_s: float
    commands: list[list[str]]
    stdout: str | None = None
    side_by_side: bool = False


@dataclass
class Plan:
    """Where the session runs (a device, or `tiny`: a quick check of this script on a CPU),
    where it writes, and its stages' outcomes so far."""

    device: str
    tiny: bool
    work: Path
    out: Path
    python: str = sys.executable
    budget_s: float = SESSION_BUDGET_S
    results: dict = field(default_factory=dict)

    @property
    def profile_name(self) -> str:
        return "smoke-session" if self.tiny else "cpu-session"

    @property
    def profile_path(self) -> Path:
        return self.work / f"{self.profile_name}.yaml"

    @property
    def outputs(self) -> Path:
        return self.work / "outputs"


def session_profile(plan: Plan) -> Path:
    """The study profile of this session, written to the work folder: `cpu` on the device with
    pack auto, one worker (one process drives the GPU) and each source's prior draws learned
    as one packed network; `smoke` so for the tiny check."""
    source = "smoke" if plan.tiny else "cpu"
    values = yaml.safe_load((ROOT / "params" / f"{source}.yaml").read_text())
    values["priors"]["pack"] = values["priors"]["draws"]
    values.update(name=plan.profile_name, device=plan.device, workers=1,
                  pack=4 if plan.tiny else "auto",
                  description=f"The `{source}` profile on {plan.device} (gpu_session.py)")
    plan.profile_path.parent.mkdir(parents=True, exist_ok=True)
    plan.profile_path.write_text(yaml.safe_dump(values, sort_keys=False))
    return plan.profile_path


def throughput_commands(plan: Plan) -> list[list[str]]:
    """The small ResNet at four pack sizes, then ResNet-50 packed and stacked."""
    base = [plan.python, str(BENCH / "throughput.py"), "--device", plan.device,
            "--precision", "fp32,bf16", "--channels-last", "on"]
    if plan.tiny:
        small = ["--packs", "1,2", "--methods", "sghmc", "--steps", "2", "--warmup", "1"]
        big = ["--model", "torchvision:resnet18", "--image-size", "32", "--packs", "2",
               "--methods", "sghmc", "--steps", "1", "--warmup", "1", "--alone-up-to", "1"]
    else:
        small = ["--packs", "1,4,16,64", "--methods", "sgd,sghmc", "--steps", "30",
                 "--warmup", "5", "--alone-up-to", "16"]
        big = ["--model", "resnet50", "--packs", "1,16", "--methods", "sghmc", "--steps", "10",
               "--warmup", "3", "--alone-up-to", "1", "--rank", "5"]
    return [base + small, base + big, base + big + ["--packing", "stacked"]]


def gpu_check_command(plan: Plan) -> list[str]:
    size = ["--steps", "4", "--image-size", "32"] if plan.tiny else ["--steps", "20"]
    return [plan.python, str(BENCH / "gpu_check.py"), "--device", plan.device, *size]


# what the chains stage reads: the inference arms' chains, the temperature experiment's, and
# the reference posterior they stand beside
CHAIN_EXPERIMENTS = ("inference", "temperature", "reference")


def bprior(plan: Plan, verb: str, experiments: tuple[str, ...] = ()) -> list[str]:
    only = [arg for name in experiments for arg in ("--experiment", name)]
    return [plan.python, "-m", "bprior_core", verb, "--profile", str(plan.profile_path),
            "--outputs", str(plan.outputs), *only]


def chain_steps(throughput_rows: list[dict], seconds: float, chains: int, device: str,
                lo: int = 600, hi: int = CHAIN_STEPS_MAX) -> int:
    """Steps per chain that surely fit in `seconds` for a pack of `chains` SGHMC chains, from
    the measured fp32 SGHMC step of the smallest measured pack at least that large (else the
    largest, scaled): half of what is left after CHAINS_STARTUP_S (reading the study, loading
    the data), since two packs share the device and every sample scores the test set, and a
    killed pack prints nothing. A multiple of 150 (the cycle length) in [lo, hi]."""
    rows = [r for r in throughput_rows if r.get("model") == "small_resnet"
            and r.get("method") == "sghmc" and r.get("precision") == "fp32"
            and r.get("device", "").startswith(device) and "ms_per_step" in r]
    if not rows:
        return lo
    bigger = [r for r in rows if r["pack"] >= chains]
    row = (min(bigger, key=lambda r: r["pack"]) if bigger
           else max(rows, key=lambda r: r["pack"]))
    per_step_s = row["ms_per_step"] / 1e3 * max(1.0, chains / row["pack"])
    steps = int(0.5 * (seconds - CHAINS_STARTUP_S) / per_step_s) // 150 * 150
    return max(lo, min(hi, steps))


def chains_commands(plan: Plan, seconds: float) -> list[list[str]]:
    """Two packs side by side: the inference arms at n = 10 (each at the profile's temperature
    and at T = 1, the reference posterior's), and the temperature experiment at T = 0.1 and 1.
    Cycles of 150 steps after one burn-in cycle; the head's weight decay 1 / n (a head prior
    of variance 1, as the reference posterior's)."""
    base = [plan.python, str(BENCH / "convergence.py"), "--profile", str(plan.profile_path),
            "--outputs", str(plan.outputs)]
    if plan.tiny:
        short = ["--cycles", "6", "--cycle-length", "8", "--every", "3"]  # 5 draws: R-hat
        inference = ["--arm", "sghmc+learned,sghmc+zero", "--at-temperature", "0.001,1", *short]
        temperature = ["--experiment", "temperature", "--temperature", "0,0.001", *short]
        return [base + inference, base + temperature]
    # this call's measurements, else those a previous call left in the work folder (a rerun)
    rows = _jsonl(plan.out / "throughput.jsonl") or _jsonl(plan.work / "throughput.jsonl")
    steps = chain_steps(rows, seconds, 24, plan.device)
    cycles = steps // 150
    every = ["--every", str(max(1, cycles // 10)), "--cycle-length", "150",
             "--cycles", str(cycles)]
    inference = ["--arm", "sghmc+learned,sghmc+zero,sghmc+isotropic", "--n-train", "10",
                 "--at-temperature", "0.001,1", "--weight-decay", "0.1", *every]
    temperature = ["--experiment", "temperature", "--temperature", "0.1,1",
                   "--weight-decay", "0.02", *every]
    return [base + inference, base + temperature]


STAGE_NAMES = ("environment", "throughput", "gpu_check", "chain_study", "chains", "study")


def stages(plan: Plan) -> list[Stage]:
    """The session's stages in order, with their time shares (seconds on the device; scaled
    to the session's budget). The experiments the chains read are run first, so that the
    chains are measured even where the rest of the study does not fit; `study` then runs what
    is left and the notebooks. The chains' commands are made when their stage starts (their
    length follows the measured step time)."""
    env = [plan.python, "-c", ENVIRONMENT_SNIPPET]
    return [
        Stage("environment", 20, [env], "environment.json"),
        Stage("throughput", 110, throughput_commands(plan), "throughput.jsonl"),
        Stage("gpu_check", 30, [gpu_check_command(plan)], "gpu_check.txt"),
        Stage("chain_study", 160, [bprior(plan, "run", CHAIN_EXPERIMENTS)]),
        Stage("chains", 100, [], "convergence.jsonl", side_by_side=True),
        Stage("study", 120, [bprior(plan, "report")]),
    ]


# progress bars in a log file: a line every 20 s instead of every update
QUIET_PROGRESS = {**os.environ, "TQDM_MININTERVAL": "20", "PYTHONUNBUFFERED": "1"}

ENVIRONMENT_SNIPPET = """
import importlib.util, json, os, platform, torch
cuda = torch.cuda.is_available()
cpu = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
       if line.startswith("model name")][:1] if os.path.exists("/proc/cpuinfo") else []
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda,
                  "device": torch.cuda.get_device_name(0) if cuda else (cpu or ["cpu"])[0],
                  "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory
                                          / 2**30, 1) if cuda else None,
                  "cpus": os.cpu_count(), "python": platform.python_version(),
                  "papermill": importlib.util.find_spec("papermill") is not None,
                  "bprior_data": os.environ.get("BPRIOR_DATA")}))
"""


def _jsonl(path: Path) -> list[dict]:
    """The JSON objects of a file's lines (others skipped), or [] if it is missing."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def run_stage(stage: Stage, commands: list[list[str]], limit_s: float, plan: Plan,
              log) -> dict:
    """Run a stage's commands (side by side, or one after the other: timings must not share
    the device), all killed at `limit_s` from the stage's start; its outcome."""
    start = time.perf_counter()
    stdout_path = plan.out / stage.stdout if stage.stdout else None
    if stdout_path:
        stdout_path.write_text("")  # a rerun's rows replace the last ones

    def started(cmd: list[str]):
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        target = open(stdout_path, "a") if stdout_path else log  # noqa: SIM115
        return subprocess.Popen(cmd, stdout=target, stderr=log, cwd=ROOT, env=QUIET_PROGRESS,
                                start_new_session=True), target

    def waited(proc, target) -> int | str:
        try:
            code = proc.wait(timeout=max(1.0, limit_s - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            code = "timeout"
        if target is not log:
            target.close()
        return code

    if stage.side_by_side:
        codes = [waited(*p) for p in [started(cmd) for cmd in commands]]
    else:
        codes = []
        for cmd in commands:
            codes.append(waited(*started(cmd)))
            if codes[-1] == "timeout":
                break
    seconds = round(time.perf_counter() - start, 1)
    status = ("timeout" if "timeout" in codes else "ok" if all(c == 0 for c in codes)
              else "failed")
    return {"status": status, "seconds": seconds, "limit_s": round(limit_s, 1),
            "returncodes": codes}


def limits(stage_list: list[Stage], index: int, deadline: float, now: float) -> float:
    """A stage's time: what is left before the deadline less the shares of the stages after
    it (so an early stage that overruns cannot starve them), at least a tenth of its own."""
    later = sum(s.budget_s for s in stage_list[index + 1:])
    return max(stage_list[index].budget_s / 10, deadline - now - later)


def summarise(plan: Plan) -> dict:
    """What a reader of the session needs from its files: throughput rows, the study's
    timings and verdicts, the chains' last prefix and pooled rows."""
    out: dict = {}
    env = _jsonl(plan.out / "environment.json")
    if env:
        out["environment"] = env[0]
    keys = ("model", "method", "pack", "precision", "stacked", "ms_per_run_step", "ratio",
            "raw_ms_per_step", "packed_speedup", "error")
    out["throughput"] = [{k: r[k] for k in keys if k in r}
                         for r in _jsonl(plan.out / "throughput.jsonl")]
    study = plan.outputs / plan.profile_name
    runs = study / "runs"
    out["study_results_stored"] = (sum(1 for p in runs.glob("*.json")) if runs.is_dir() else 0)
    for name in ("timings.json", "claims.json"):
        path = study / name
        if path.exists():
            data = json.loads(path.read_text())
            out[name.removesuffix(".json")] = (
                {c["id"]: c["verdict"] for c in data} if name == "claims.json" else data)
    rows = _jsonl(plan.out / "convergence.jsonl")
    last = {}
    for row in rows:
        if row.get("kind") == "prefix":
            last[row["group"]] = row
    out["chains"] = list(last.values()) + [r for r in rows if r.get("kind") != "prefix"]
    return out


def pack_report(plan: Plan) -> None:
    """The report, its claims, timings and experiment pages as one file (the device tool
    brings back at most 8)."""
    study = plan.outputs / plan.profile_name
    if not (study / "report.html").exists():
        return
    with tarfile.open(plan.out / "report.tar.gz", "w:gz") as tar:
        for name in ("report.html", "claims.json", "timings.json", "profile.json", "html"):
            if (study / name).exists():
                tar.add(study / name, arcname=name)


def run_session(plan: Plan, only: list[str] | None = None) -> dict:
    """Every stage (or those named in `only`) in order within the session's budget;
    stages.json after each."""
    plan.out.mkdir(parents=True, exist_ok=True)
    session_profile(plan)
    stage_list = [s for s in stages(plan) if only is None or s.name in only]
    scale = plan.budget_s / sum(s.budget_s for s in stage_list)
    stage_list = [replace(s, budget_s=s.budget_s * scale) for s in stage_list]
    start = time.perf_counter()
    deadline = start + plan.budget_s
    with open(plan.out / "session.log", "a") as log:
        for index, stage in enumerate(stage_list):
            limit = limits(stage_list, index, deadline, time.perf_counter())
            log.write(f"\n=== {stage.name} (limit {limit:.0f} s) ===\n")
            log.flush()
            print(f"[gpu_session] {stage.name}: limit {limit:.0f} s", flush=True)
            commands = (chains_commands(plan, limit) if stage.name == "chains"
                        else stage.commands)
            plan.results[stage.name] = run_stage(stage, commands, limit, plan, log)
            if stage.stdout:  # kept for a rerun on this machine ($OUT is emptied per call)
                shutil.copy(plan.out / stage.stdout, plan.work / stage.stdout)
            print(f"[gpu_session] {stage.name}: {plan.results[stage.name]}", flush=True)
            write_summary(plan, time.perf_counter() - start)
    pack_report(plan)
    return write_summary(plan, time.perf_counter() - start)


def write_summary(plan: Plan, seconds: float) -> dict:
    summary = {"device": plan.device, "tiny": plan.tiny, "profile": plan.profile_name,
               "budget_s": plan.budget_s, "seconds": round(seconds, 1),
               "stages": plan.results, **summarise(plan)}
    (plan.out / "stages.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda",
                        help="cuda (the device machine), or cpu with --tiny")
    parser.add_argument("--tiny", action="store_true",
                        help="every stage at toy size (the smoke study): a check of this script")
    parser.add_argument("--out", type=Path,
                        default=Path(os.environ.get("OUT", "outputs/gpu-session")),
                        help="where the files to bring back go (default: $OUT, the device "
                             "tool's folder, else outputs/gpu-session)")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "bprior-gpu-session",
                        help="where the study and its profile are written (kept between calls "
                             "on one machine: a rerun resumes the study)")
    parser.add_argument("--stages", default=None,
                        help=f"only these stages, comma-separated (of {', '.join(STAGE_NAMES)}): "
                             "a rerun of what failed; the study's outputs stay in --work")
    parser.add_argument("--budget-s", type=float, default=None,
                        help=f"seconds for every stage together (default {SESSION_BUDGET_S}, "
                             f"--tiny {TINY_BUDGET_S})")
    args = parser.parse_args()
    if args.budget_s is None:
        args.budget_s = TINY_BUDGET_S if args.tiny else SESSION_BUDGET_S
    if args.budget_s <= 0:
        sys.exit(f"gpu_session: --budget-s must be > 0, got {args.budget_s}")
    only = args.stages.split(",") if args.stages else None
    unknown = sorted(set(only or ()) - set(STAGE_NAMES))
    if unknown:
        sys.exit(f"gpu_session: unknown stage(s) {', '.join(unknown)}; the stages are "
                 f"{', '.join(STAGE_NAMES)}")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            sys.exit("gpu_session: --device cuda but torch sees no CUDA device; use "
                     "--device cpu --tiny to check this script on a CPU")
    plan = Plan(args.device, args.tiny, args.work.resolve(), args.out.resolve(),
                budget_s=args.budget_s)
    summary = run_session(plan, only)
    failed = [n for n, r in summary["stages"].items() if r["status"] != "ok"]
    print(f"[gpu_session] done in {summary['seconds']:.0f} s; "
          f"{'all stages ok' if not failed else 'not ok: ' + ', '.join(failed)}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
