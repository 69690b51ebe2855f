"""How long a profile's chains must be to pass the convergence gate: R-hat and bulk ESS against
chain length, measured by running one chained run of a stored study for many more cycles.

It takes one group of chains of a study whose priors are learned (an inference final run or a
temperature run: the same prior, subset, tuned values and chains as the study), trains it again
with `--cycles` cycles of `--cycle-length` steps (default: the profile's steps / cycles) and
`--samples-per-cycle`, and prints, for every prefix of `--every` cycles, the diagnostics that
`chains.convergence` gates claims on (rank-normalised split R-hat and bulk ESS of the per-sample
test log-likelihood and of the per-point true-class probabilities), after `--burn-in` cycles.
The first k cycles of a cyclical schedule are the k-cycle schedule, so each prefix is the
shorter run exactly (tested in `tests/test_engine.py`). Nothing is written to the study; one
JSON object per prefix goes to stdout, the wall time to stderr.

    python benchmarks/convergence.py --profile cpu --arm sghmc+learned --n-train 10 \
        --cycles 60 --every 10
    python benchmarks/convergence.py --profile cpu --experiment temperature --temperature 1
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

from bprior_core.analysis.chains import converged, convergence
from bprior_core.config import load_profile
from bprior_core.study.execution import execute_pack, study_runs


def chained_group(runs: list[dict], args) -> list[dict]:
    """The planned chains of the requested run, or an error naming what the study has."""
    def wanted(run: dict) -> bool:
        cfg = run["config"]
        if cfg["experiment"] != args.experiment or cfg["seed"] != args.seed:
            return False
        if args.experiment == "temperature":
            return cfg["train"]["temperature"] == args.temperature
        return (cfg.get("phase") == "final" and cfg["arm"] == args.arm
                and cfg["n_train"] == args.n_train)
    group = [r for r in runs if wanted(r)]
    if not group:
        sys.exit(f"convergence: no chained run {vars(args)} in the study; its tuning must be "
                 "stored (run `bprior run` first) and the arm, size and seed must be planned")
    return sorted(group, key=lambda r: r["config"].get("chain", 0))


def lengthened(run: dict, cycles: int, samples_per_cycle: int, cycle_length: int | None,
               weight_decay: float | None = None) -> dict:
    """The same run with `cycles` cycles of `cycle_length` steps (default: the profile's) and
    no burn-in (the burn-in is dropped here, per prefix); `weight_decay` replaces the head's
    (a Gaussian prior of variance 1 / (n_train * weight_decay) on the head in the posterior)."""
    run = copy.deepcopy(run)
    train = run["config"]["train"]
    cycle_length = cycle_length or train["steps"] // train["cycles"]
    if weight_decay is not None:
        train["weight_decay"] = weight_decay
    train.update(steps=cycle_length * cycles, cycles=cycles,
                 samples_per_cycle=samples_per_cycle, burn_in_cycles=0)
    return run


def prefix_convergence(records: list[dict], kept: slice) -> dict:
    """`chains.convergence` (what gates a claim) of the chains' draws `kept`."""
    chains = [{"diagnostics": {"sample_test_nll": r["diagnostics"]["sample_test_nll"][kept]}}
              for r in records]
    loaded = [{"test": {"sample_true_probs":
                        r["_predictions"]["test"]["sample_true_probs"][kept]}} for r in records]
    out = {k: v for k, v in convergence(chains, loaded).items() if k != "traces"}
    out["converged"] = converged({"diagnostics": {"convergence": out}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--outputs", type=Path, default=None, help="outputs root of the study")
    parser.add_argument("--experiment", default="inference", choices=["inference", "temperature"])
    parser.add_argument("--arm", default="sghmc+learned")
    parser.add_argument("--n-train", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--samples-per-cycle", type=int, default=1)
    parser.add_argument("--cycle-length", type=int, default=None,
                        help="steps per cycle (default: the profile's steps / cycles)")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="the head's weight decay (default: the run's)")
    parser.add_argument("--burn-in", type=int, default=1, help="cycles left out of every prefix")
    parser.add_argument("--every", type=int, default=10, help="report every this many cycles")
    args = parser.parse_args()
    if not 0 <= args.burn_in < args.cycles:
        sys.exit(f"convergence: --burn-in {args.burn_in} must be in [0, --cycles {args.cycles})")

    profile = load_profile(args.profile)
    group = chained_group(study_runs(profile, args.outputs), args)
    runs = [lengthened(r, args.cycles, args.samples_per_cycle, args.cycle_length,
                       args.weight_decay) for r in group]
    start = time.perf_counter()
    records = execute_pack(runs, profile, args.outputs)
    wall = time.perf_counter() - start
    bad = [r["status"] for r in records if r["status"] != "ok"]
    if bad:
        sys.exit(f"convergence: chains ended {bad}")
    nll = np.array([r["diagnostics"]["sample_test_nll"] for r in records], dtype=float)
    cfg = group[0]["config"]
    train = runs[0]["config"]["train"]
    rms = [r["diagnostics"].get("prior_mahalanobis_rms") for r in records]
    print(f"{len(records)} chains x {args.cycles} cycles of {train['steps'] // args.cycles} "
          f"steps in {wall:.0f} s; final prior Mahalanobis RMS per chain: "
          f"{', '.join(f'{x:.3g}' for x in rms if x is not None)}", file=sys.stderr)
    spc = args.samples_per_cycle
    for cycles in range(args.every, args.cycles + 1, args.every):
        if cycles <= args.burn_in:
            continue
        kept = slice(args.burn_in * spc, cycles * spc)
        row = {"arm": cfg["arm"], "n_train": cfg["n_train"], "seed": cfg["seed"],
               "temperature": cfg["train"]["temperature"], "chains": len(records),
               "weight_decay": train["weight_decay"],
               "cycles": cycles, "steps": cycles * train["steps"] // args.cycles,
               "burn_in_cycles": args.burn_in, "draws_per_chain": (cycles - args.burn_in) * spc,
               **prefix_convergence(records, kept),
               "mean_sample_nll": float(nll[:, kept].mean())}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
