"""A profile expanded into runs, and runs grouped into packs.

A run is `{"id": hash of its config, "config": {...}}`; its config says everything that changes its
result. Runs that share a shape (`pack_key`: the same experiment, model, method, training-set size
and training settings up to the per-run learning rate, weight decay and temperature) are grouped
in plan order and cut into packs of at most `pack` runs. Packs are formed over the whole plan,
never over what is left to do, so a resumed sweep trains exactly the packs an uninterrupted one
does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

EXPERIMENTS = ("rank", "scale", "inference")
LEARN_SEED = 0
PER_RUN_TRAIN_KEYS = ("lr", "weight_decay", "temperature")


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def prior_source_id(profile: dict, name: str) -> dict:
    """What identifies a prior: how it was learned, or which files it was read from."""
    if profile["priors"]["source"] == "files":
        return {"files": profile["priors"]["files"][name],
                "variance_floor": profile["priors"]["variance_floor"]}
    return {
        "learned": name,
        "learning": profile["priors"]["learning"],
        "data": profile["data"]["dataset"],
        "model": profile["model"],
        "seed": LEARN_SEED,
    }


def _prior_spec(profile: dict, kind: str, source: str, rank: int, scale: float) -> dict:
    spec = {"kind": kind, "source": source, "source_id": prior_source_id(profile, source),
            "truncation": "principal"}
    if kind == "learned" or kind == "isotropic":
        spec.update(rank=rank, scale=scale, rule=profile["priors"]["rescaling_rule"],
                    eps=profile["priors"]["eps"])
    if kind == "zero":
        variance = profile["experiments"]["inference"]["nonlearned_variance"]
        if variance is None:  # trace-matched to the rescaled learned prior
            spec.update(rank=rank, scale=scale, rule=profile["priors"]["rescaling_rule"],
                        eps=profile["priors"]["eps"])
        spec["variance"] = variance
    return spec


def _planned_run(profile, experiment, arm, method, prior, n_train, seed,
                 train: dict | None = None) -> dict:
    config = {
        "experiment": experiment,
        "arm": arm,
        "method": method,
        "prior": prior,
        "n_train": n_train,
        "seed": seed,
        "model": profile["model"],
        "data": {k: profile["data"][k] for k in ("dataset", "subset_protocol", "test_size")},
        "train": profile["train"] if train is None else train,
    }
    return {"id": digest(config), "config": config}


def _arm_method_prior(profile: dict, arm: str) -> tuple[str, str | None]:
    """An inference arm `method+prior` -> (training method, prior kind). `sghmc`/`sgld` and the
    `ensemble` control (the same sampler run at temperature 0) use the profile's bayes_method."""
    bayes = profile["experiments"]["inference"]["bayes_method"]
    method, _, prior_kind = arm.partition("+")
    if method == "sgd":
        method = "sgd_prior" if prior_kind else "sgd"
    elif method in ("sghmc", "sgld", "ensemble"):
        method = bayes
    return method, prior_kind or None


def _arm_train(profile: dict, arm: str) -> dict:
    """The training settings of an arm: the profile's, at temperature 0 for the ensemble."""
    if arm.startswith("ensemble+"):
        return {**profile["train"], "temperature": 0.0}
    return profile["train"]


def plan(profile: dict, experiments: Iterable[str] = EXPERIMENTS) -> list[dict]:
    """Every run of the profile's enabled experiments, in a fixed order."""
    runs, exps = [], profile["experiments"]
    seeds = range(profile["seeds"])
    for experiment in experiments:
        if experiment not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {experiment!r}; expected one of {EXPERIMENTS}")
        cfg = exps[experiment]
        if not cfg["enabled"]:
            continue
        if experiment == "rank":
            traces = ("scaled", "fixed") if cfg["fixed_trace"] else ("scaled",)
            for trace in traces:
                for rank in cfg["ranks"]:
                    prior = {**_prior_spec(profile, "learned", cfg["prior"], rank, cfg["scale"]),
                             "trace": trace}
                    arm = f"rank={rank}" + (", fixed trace" if trace == "fixed" else "")
                    runs += [_planned_run(profile, "rank", arm, cfg["method"], prior,
                                          cfg["n_train"], s) for s in seeds]
        elif experiment == "scale":
            for source in cfg["priors"]:
                for scale in cfg["scales"]:
                    prior = _prior_spec(profile, "learned", source, cfg["rank"], scale)
                    runs += [_planned_run(profile, "scale", f"{source}@{scale:g}", cfg["method"],
                                          prior, cfg["n_train"], s) for s in seeds]
        elif experiment == "inference":
            for n in cfg["sizes"]:
                for arm in cfg["arms"]:
                    method, kind = _arm_method_prior(profile, arm)
                    prior = (None if kind is None else
                             _prior_spec(profile, kind, cfg["prior"], cfg["rank"], cfg["scale"]))
                    if prior is None:
                        prior = {"kind": "none", "source": cfg["prior"],
                                 "source_id": prior_source_id(profile, cfg["prior"])}
                    runs += [_planned_run(profile, "inference", arm, method, prior, n, s,
                                          _arm_train(profile, arm)) for s in seeds]
    return runs


def needed_priors(profile: dict, experiments: Iterable[str] = EXPERIMENTS) -> list[str]:
    """Names of the priors (`ssl`, `supervised`) the enabled experiments use."""
    return sorted({run["config"]["prior"]["source"] for run in plan(profile, experiments)})


def pack_key(config: dict) -> str:
    """What runs must share to train in one pack: everything but the seed, the prior, the arm's
    name and the per-run training values."""
    shared = {k: v for k, v in config.items() if k not in ("seed", "prior", "arm")}
    shared["train"] = {k: v for k, v in config["train"].items() if k not in PER_RUN_TRAIN_KEYS}
    return digest(shared)


def make_packs(runs: list[dict], size: int) -> list[list[dict]]:
    """Runs grouped by `pack_key` (groups in order of first appearance, runs in plan order) and
    cut into packs of at most `size`."""
    if size < 1:
        raise ValueError(f"pack size must be >= 1, got {size}")
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(pack_key(run["config"]), []).append(run)
    return [members[i:i + size] for members in groups.values()
            for i in range(0, len(members), size)]
