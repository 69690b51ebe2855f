"""Wall time of whole downstream runs (training and evaluation) with a profile's settings.

For each method of the inference experiment at one training size, times one run alone (a pack
of one) and the profile's seeds as one pack, with the profile's stored priors (run
`bprior run --profile cpu` or the report first). Usage:
    python benchmarks/run_times.py [--profile cpu] [--n-train 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from bprior_core import study
from bprior_core.config import load_profile


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--n-train", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = load_profile(args.profile)
    runs = [r for r in study.plan(profile, ["inference"])
            if r["config"]["n_train"] == args.n_train]
    if not runs:
        raise SystemExit(f"no inference run with n_train={args.n_train} in {args.profile}")
    seen = set()
    for run in runs:
        cfg = run["config"]
        if cfg["method"] in seen:
            continue
        seen.add(cfg["method"])
        seeds = [r for r in runs if r["config"]["arm"] == cfg["arm"]]
        for pack in ([run], seeds):
            start = time.perf_counter()
            records = study.execute_pack(pack, profile)
            wall = time.perf_counter() - start
            record = records[0]
            acc = (record["metrics"]["bma"] or record["metrics"]["final"] or {}).get("accuracy")
            print(f"{cfg['method']:10s} pack of {len(pack)}: {wall:6.2f} s "
                  f"({wall / len(pack):5.2f} s per run; {cfg['train']['steps']} steps, "
                  f"{record['n_samples']} samples); first run's accuracy {acc}")


if __name__ == "__main__":
    main()
