"""How long a profile's chains must be to pass the convergence gate: R-hat and bulk ESS against
chain length, measured by running chained runs of a stored study for many more cycles.

It takes groups of chains of a study whose priors are learned (inference final runs of the
`--arm`s at `--n-train` and `--seed`, or the temperature experiment's runs at the
`--temperature`s: the same prior, subset, tuned values and chains as the study), trains them
again, all in one pack, with `--cycles` cycles of `--cycle-length` steps (default: the profile's
steps / cycles) and `--samples-per-cycle`, and prints, for every group and every prefix of
`--every` cycles, the diagnostics that `chains.convergence` gates claims on (rank-normalised
split R-hat and bulk ESS of the per-sample test log-likelihood and of the per-point true-class
probabilities) and the same per validation point, after `--burn-in` cycles. The first k cycles
of a cyclical schedule are the k-cycle schedule, so each prefix is the shorter run exactly
(tested in `tests/test_engine.py`).
`--at-temperature` runs inference chains at other temperatures too (each arm at each). After
the prefixes, one `pooled` row per group gives the chains' pooled model average on the test
set, and one `reference` row per group the study's exact head posterior (the reference
experiment's HMC) at the same seed, size and temperature, where the study has one. Nothing is
written to the study; one JSON object per row goes to stdout, the wall time to stderr.

    python benchmarks/convergence.py --profile cpu --arm sghmc+learned --n-train 10 \
        --seed 1000 --cycles 60 --every 10
    python benchmarks/convergence.py --profile cpu --experiment temperature --temperature 0.1,1
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
from bprior_core.study.execution import execute_pack, study_runs_and_records
from bprior_core.study.planning import make_packs


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def chained_groups(runs: list[dict], args) -> dict[str, list[dict]]:
    """The planned chains of each requested run, by label, or an error naming what is missing.
    The seed is `--seed`, else the first seed the study has for the selection."""
    def wanted(run: dict, key) -> bool:
        cfg = run["config"]
        if cfg["experiment"] != args.experiment or cfg.get("chain") is None:
            return False
        if args.experiment == "temperature":
            return cfg["train"]["temperature"] == key
        return cfg.get("phase") == "final" and cfg["arm"] == key and cfg["n_train"] == args.n_train

    keys = (_floats(args.temperature) if args.experiment == "temperature"
            else [a for a in args.arm.split(",") if a])
    groups = {}
    for key in keys:
        matching = [r for r in runs if wanted(r, key)]
        seed = args.seed if args.seed is not None else min(
            (r["config"]["seed"] for r in matching), default=None)
        group = [r for r in matching if r["config"]["seed"] == seed]
        if not group:
            sys.exit(f"convergence: no chained run {key!r} (seed {seed}) in the study's "
                     f"{args.experiment} experiment; its tuning must be stored (run `bprior "
                     "run` first) and the arm, size and seed must be planned")
        label = f"T={key:g}" if args.experiment == "temperature" else key
        groups[label] = sorted(group, key=lambda r: r["config"]["chain"])
    return groups


def at_temperatures(groups: dict[str, list[dict]], temperatures: list[float]
                    ) -> dict[str, list[dict]]:
    """Each group once at each temperature (the runs' own if none are given)."""
    if not temperatures:
        return groups
    out = {}
    for label, group in groups.items():
        for t in temperatures:
            copies = [copy.deepcopy(r) for r in group]
            for run in copies:
                run["config"]["train"]["temperature"] = t
            out[f"{label} T={t:g}"] = copies
    return out


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
    loaded = [{split: {"sample_true_probs": part["sample_true_probs"][kept]}
               for split, part in r["_predictions"].items() if "sample_true_probs" in part}
              for r in records]
    out = {k: v for k, v in convergence(chains, loaded).items() if k != "traces"}
    out["converged"] = converged({"diagnostics": {"convergence": out}})
    return out


def pooled_scores(records: list[dict]) -> dict:
    """Test accuracy and NLL of the chains' model averages averaged together (each chain's
    average of all its samples, burn-in included)."""
    probs = np.mean([np.exp(r["_predictions"]["test"]["log_probs"].astype(np.float64))
                     for r in records], axis=0)
    labels = records[0]["_predictions"]["test"]["labels"].astype(np.int64)
    true = probs[np.arange(len(labels)), labels]
    return {"accuracy": float((probs.argmax(1) == labels).mean()),
            "nll": float(-np.log(np.clip(true, 1e-30, None)).mean())}


def reference_row(chain: dict, stored: dict[str, dict | None], runs: list[dict]) -> dict | None:
    """The study's exact head posterior (reference experiment, HMC) at the chain record's seed,
    size and temperature, with its diagnostics; None where the study has none stored."""
    cfg = chain["config"]
    for candidate in runs:
        c = candidate["config"]
        record = stored.get(candidate["id"])
        if (record is not None and c["experiment"] == "reference" and c["method"] == "hmc"
                and c["seed"] == cfg["seed"] and c["n_train"] == cfg["n_train"]
                and c["train"]["temperature"] == cfg["train"]["temperature"]):
            diag = (record.get("diagnostics") or {}).get("reference") or {}
            return {"arm": c["arm"], "accuracy": record["metrics"]["bma"]["accuracy"],
                    "nll": record["metrics"]["bma"]["nll"],
                    "rhat_val_max": diag.get("rhat_val_max"),
                    "mc_se_accuracy": diag.get("mc_se_accuracy"),
                    "same_subset": (record.get("train_indices_digest")
                                    == chain.get("train_indices_digest"))}
    return None


def build_parser() -> argparse.ArgumentParser:
    """The command line (also checked by tests/test_gpu_session.py)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--outputs", type=Path, default=None, help="outputs root of the study")
    parser.add_argument("--experiment", default="inference", choices=["inference", "temperature"])
    parser.add_argument("--arm", default="sghmc+learned", help="inference arms, comma-separated")
    parser.add_argument("--n-train", type=int, default=10)
    parser.add_argument("--temperature", default="1",
                        help="the temperature experiment's temperatures, comma-separated")
    parser.add_argument("--at-temperature", default="",
                        help="inference chains at these temperatures (default: the runs' own)")
    parser.add_argument("--seed", type=int, default=None,
                        help="default: the first seed the study has for the selection")
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--samples-per-cycle", type=int, default=1)
    parser.add_argument("--cycle-length", type=int, default=None,
                        help="steps per cycle (default: the profile's steps / cycles)")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="the head's weight decay (default: the run's)")
    parser.add_argument("--burn-in", type=int, default=1, help="cycles left out of every prefix")
    parser.add_argument("--every", type=int, default=10, help="report every this many cycles")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if not 0 <= args.burn_in < args.cycles:
        sys.exit(f"convergence: --burn-in {args.burn_in} must be in [0, --cycles {args.cycles})")

    profile = load_profile(args.profile)
    runs, stored = study_runs_and_records(profile, args.outputs)
    groups = at_temperatures(chained_groups(runs, args), _floats(args.at_temperature))
    groups = {label: [lengthened(r, args.cycles, args.samples_per_cycle, args.cycle_length,
                                 args.weight_decay) for r in group]
              for label, group in groups.items()}
    everything = [r for group in groups.values() for r in group]
    start = time.perf_counter()
    records = {}
    for pack in make_packs(everything, len(everything)):
        for run, record in zip(pack, execute_pack(pack, profile, args.outputs), strict=True):
            records[id(run)] = record
    wall = time.perf_counter() - start
    train = everything[0]["config"]["train"]
    print(f"{len(everything)} chains ({len(groups)} groups) x {args.cycles} cycles of "
          f"{train['steps'] // args.cycles} steps in {wall:.0f} s", file=sys.stderr)
    for label, group in groups.items():
        for row in _group_rows(label, group, [records[id(r)] for r in group], args, stored,
                               runs):
            print(json.dumps(row), flush=True)


def _group_rows(label: str, group: list[dict], records: list[dict], args,
                stored: dict[str, dict | None], runs: list[dict]) -> list[dict]:
    """One group's prefix rows, its pooled row and its reference row (if any)."""
    bad = [r["status"] for r in records if r["status"] != "ok"]
    cfg, train = group[0]["config"], group[0]["config"]["train"]
    common = {"group": label, "arm": cfg["arm"], "n_train": cfg["n_train"], "seed": cfg["seed"],
              "temperature": train["temperature"], "chains": len(records),
              "weight_decay": train["weight_decay"]}
    if bad:
        return [{"kind": "failed", **common, "statuses": bad}]
    rms = [r["diagnostics"].get("prior_mahalanobis_rms") for r in records]
    spc, rows = args.samples_per_cycle, []
    for cycles in range(args.every, args.cycles + 1, args.every):
        if cycles <= args.burn_in:
            continue
        kept = slice(args.burn_in * spc, cycles * spc)
        nll = np.array([r["diagnostics"]["sample_test_nll"] for r in records], dtype=float)
        rows.append({"kind": "prefix", **common, "cycles": cycles,
                     "steps": cycles * train["steps"] // args.cycles,
                     "burn_in_cycles": args.burn_in,
                     "draws_per_chain": (cycles - args.burn_in) * spc,
                     **prefix_convergence(records, kept),
                     "mean_sample_nll": float(nll[:, kept].mean())})
    rows.append({"kind": "pooled", **common, "steps": train["steps"], **pooled_scores(records),
                 "prior_mahalanobis_rms": rms})
    reference = reference_row(records[0], stored, runs)
    if reference is not None:
        rows.append({"kind": "reference", **common, **reference})
    return rows


if __name__ == "__main__":
    main()
