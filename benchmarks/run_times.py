"""Wall time of one downstream run of each method with a profile's settings (default `cpu`).

Uses the profile's stored SSL prior (run `bprior run --profile cpu` or the report first), one
thread (as each sweep worker has), training size n = 50. Usage:
    python benchmarks/run_times.py [--profile cpu] [--n-train 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bprior_core import study
from bprior_core.config import load_profile
from bprior_core.data import few_shot_indices
from bprior_core.models import build_model
from bprior_core.train import TrainSettings, train_and_evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--n-train", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = load_profile(args.profile)
    learned, state = study.load_prior_and_backbone(json.dumps(profile, sort_keys=True), "ssl",
                                                   None)
    data = {**profile["data"]}
    train_all, test = study.downstream_data(json.dumps(data, sort_keys=True))
    train = train_all.subset(few_shot_indices(train_all.labels, args.n_train, "balanced", 0))
    prior = study.build_run_prior(
        {"kind": "learned", "rank": profile["experiments"]["inference"]["rank"],
         "scale": profile["experiments"]["inference"]["scale"],
         "rule": profile["priors"]["rescaling_rule"], "eps": profile["priors"]["eps"]}, learned)
    settings = TrainSettings(**profile["train"])
    for method in ("sgd", "sgd_prior", "sgld", "sghmc"):
        model = build_model(profile["model"], train_all.num_classes)
        model.backbone.load_state_dict(state)
        start = time.perf_counter()
        out = train_and_evaluate(model, train, test, method, settings, prior, seed=0)
        wall = time.perf_counter() - start
        acc = (out.bma or out.final)["accuracy"]
        print(f"{method:10s} {wall:6.2f} s  ({settings.steps} steps, {out.n_samples} samples, "
              f"test {len(test)} images)  accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
