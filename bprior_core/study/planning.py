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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..config import fixed_protocol, steps_at, tuning_seeds
from ..config.profile import Profile, as_dict
from ..digests import authors_files_digest, file_digest
from ..vocabulary import (
    CHAINED_ARM_METHODS,
    ENSEMBLE,
    EXPERIMENTS,
    TASK_PRIOR,
    VARIANCE_KINDS,
    arm_parts,
)
from .datasets import DataKey, data_digest
from .errors import StudyError
from .resources import resolve_device, threads_per_worker
from .sources import source_kind

# bumped whenever a change alters the numbers any run produces (engine, samplers, priors, data,
# evaluation): part of every run's identity, so results of older numerics are never reused
NUMERICS_VERSION = 4
PER_RUN_TRAIN_KEYS = ("lr", "weight_decay", "temperature")
# the strength parameter each kind of arm is tuned over (`experiments.inference.tuning`)
TUNED_PARAMETER = {"learned": "scale", "zero": "variance", "isotropic": "variance",
                   "task": "variance", None: "weight_decay"}
_GRID_KEY = {"scale": "scales", "variance": "variances", "weight_decay": "weight_decays"}
# the data keys that change a run's result (the image folder's only for image folders, so that
# other studies keep their run ids)
DATA_KEYS = ("dataset", "subset_protocol", "test_size", "val_size", "image_size", "augment",
             "mean", "std")


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def prior_draw(profile: Profile, seed: int) -> int:
    """The prior draw (prior-learning seed) that downstream seed `seed` uses: seed mod draws, so
    each seed's paired differences carry its own prior draw's variation."""
    return seed % profile.priors.draws


def run_context(profile: Profile) -> dict:
    """What changes a run's numbers besides its own settings: the code's numerics version, the
    precision, the device type, the CPU thread count (cores // workers: floating-point results
    depend on it; None on an accelerator) and the digest of the data files. Part of every run's
    identity, so a stored result is reused only where it would come out the same."""
    try:
        device = resolve_device(profile.device)
    except StudyError:  # e.g. `bprior plan` of a cuda profile on a CPU machine
        device = profile.device
    return {"numerics": NUMERICS_VERSION, "precision": profile.precision, "device": device,
            "threads": threads_per_worker(profile.workers) if device == "cpu" else None,
            "data": data_digest(DataKey.of(profile))}


def prior_source_id(profile: Profile, name: str, draw: int = 0) -> dict:
    """What identifies a prior: how it was learned (settings, seed, the run context it was
    learned in, fp32), or which files it was read from (their path and content digest)."""
    if profile.priors.source == "files":
        prefix = profile.priors.files.prefix(name)
        return {"files": prefix, "digest": authors_files_digest(prefix),
                "variance_floor": profile.priors.variance_floor}
    context = {k: v for k, v in run_context(profile).items() if k != "precision"}
    kind = source_kind(profile, name)
    start = ({"start": prior_source_id(profile, "ssl", draw)} if name == TASK_PRIOR else {})
    return {**start,
        "learned": name,
        # where the source images live is not what they are (`_source_files` digests them)
        "learning": {k: v for k, v in as_dict(profile.priors.learning).items()
                     if k != "source_root"},
        "data": profile.data.dataset,
        "images": kind,
        "labelled_pool": 0 if kind == "source_classes" else profile.data.labelled_pool,
        "model": profile.model,
        "seed": draw,
        "context": context,
        **_source_files(profile, kind),
    }


def _source_files(profile: Profile, kind: str) -> dict:
    """The content of what a prior is learned from beyond the built-in data: the starting
    weights (`model_weights`) and an image folder's source folder (names and sizes)."""
    out = {}
    if profile.model_weights:
        out["model_weights_digest"] = file_digest(profile.model_weights)
    root = profile.priors.learning.source_root
    if root and kind != "downstream_rest":
        from ..data.imagefolder import FolderError, list_classes

        try:
            out["source_digest"] = list_classes(root, "priors.learning.source_root").digest()
        except FolderError:
            out["source_digest"] = None  # preflight says what is wrong with it
    return out


def _prior_spec(profile: Profile, kind: str, source: str, seed: int, rank: int = 0,
                scale: float = 1.0, variance: float | None = None, rule: str | None = None,
                eps: float | None = None) -> dict:
    """A run's prior: `learned` (truncated to `rank`, rescaled by `scale` under `rule` and
    `eps`), `zero` / `isotropic` (variance given, or trace-matched to that learned prior when
    `variance` is None), `task` (the covariance control's prior at total variance D x
    `variance`, `experiments.covariance.share` of it along the task directions) or `none`;
    always with the source prior draw it derives from."""
    draw = prior_draw(profile, seed)
    spec = {"kind": kind, "source": source, "draw": draw,
            "source_id": prior_source_id(profile, source, draw)}
    if kind == "none":
        return spec
    if kind == "task":
        return {**spec, "variance": variance,
                "share": profile.experiments.covariance.share}
    spec["truncation"] = "principal"
    if kind in VARIANCE_KINDS:
        spec["variance"] = variance
        if variance is not None:
            return spec
    spec.update(rank=rank, scale=scale,
                rule=profile.priors.rescaling_rule if rule is None else rule,
                eps=profile.priors.eps if eps is None else eps)
    return spec


def _planned_run(profile, experiment, arm, method, prior, n_train, seed,
                 train: dict | None = None, **extra: Any) -> dict:
    config = {
        "experiment": experiment,
        "arm": arm,
        "method": method,
        "prior": prior,
        "n_train": n_train,
        "seed": seed,
        "model": profile.model,
        "data": {k: getattr(profile.data, k) for k in DATA_KEYS[:4] + (
            DATA_KEYS[4:] if profile.data.dataset == "imagefolder" else ())},
        "train": as_dict(profile.train) if train is None else train,
        **extra,
    }
    return {"id": None, "config": config}  # `plan` adds the context and the id


def _arm_method_prior(profile: Profile, arm: str) -> tuple[str, str | None]:
    """An inference arm -> (training method, prior kind). `sghmc`/`sgld` and the `ensemble`
    control (the same sampler run at temperature 0) use the profile's bayes_method; `probe`
    trains the head on the frozen pretrained backbone; `sgd` fine-tunes everything without a
    prior (weight decay only)."""
    bayes = profile.experiments.inference.bayes_method
    method, prior_kind = arm_parts(arm)
    if method == "sgd":
        method = "sgd_prior" if prior_kind else "sgd"
    elif method in CHAINED_ARM_METHODS:
        method = bayes
    return method, prior_kind


def is_sampler_arm(arm: str) -> bool:
    """Whether an arm samples (a sampler, or the T = 0 ensemble of its schedule): its final
    runs have chains, and the fixed protocol evaluates it on `evaluation.sampler_seeds`."""
    return arm_parts(arm)[0] in CHAINED_ARM_METHODS


def _arm_train(profile: Profile, arm: str, n: int) -> dict:
    """The training settings of an arm at size n: the profile's, with the inference protocol's
    steps at that size (`experiments.inference.steps`), at temperature 0 for the ensemble."""
    train = {**as_dict(profile.train), "steps": steps_at(profile, n)}
    if arm_parts(arm)[0] == ENSEMBLE:
        train["temperature"] = 0.0
    return train


def _seeds(profile: Profile, cfg: dict) -> range:
    return range(cfg.seeds or profile.seeds)


def arm_grid(profile: Profile, arm: str) -> list[dict | None]:
    """The points an inference arm is tuned over: its strength parameter's grid crossed with the
    learning rates (`tuning.lrs`; None: the profile's lr), each {parameter, value, lr}; or
    [None] without tuning."""
    tuning = profile.experiments.inference.tuning
    if not tuning.enabled:
        return [None]
    parameter = TUNED_PARAMETER[arm_parts(arm)[1]]
    return [{"parameter": parameter, "value": value, "lr": lr}
            for value in getattr(tuning, _GRID_KEY[parameter]) for lr in tuning.lrs or [None]]


# experiments whose arms are tuned, and (protocol `fixed`) fixed on the tuning seeds


def _seeds_of(profile: Profile, experiment: str) -> Callable[[str, int], Sequence[int]]:
    """(arm, size) -> the seeds an experiment's runs of that arm are planned for: the tuning
    seeds (protocol `fixed`, tuning runs only: final runs follow on the evaluation seeds); the
    per-seed protocol's own seeds; or the experiment's seeds."""
    if experiment == "per_seed":
        cfg = profile.experiments.per_seed
        seeds = range(cfg.first_seed, cfg.first_seed + cfg.seeds)
        return lambda arm, n: seeds
    if fixed_protocol(profile):
        seeds = tuning_seeds(profile)
        return lambda arm, n: seeds
    fixed = _seeds(profile, profile.experiments.inference)
    return lambda arm, n: fixed


def _tuned_arm_runs(profile: Profile, experiment: str, prior_name: str, arms: list[str],
                    sizes: list[int], selection: str) -> list[dict]:
    """Runs of `arms` at `sizes` with prior `prior_name` (the inference experiment's scale,
    rank and tuning grids): one per tuning seed and grid point, in phase `tune` (scored on
    validation only, or with `selection: split` on a held-out part of the subset;
    `final_runs` adds the chosen point's final runs), or one per seed without tuning."""
    inference = profile.experiments.inference
    seeds_of, runs = _seeds_of(profile, experiment), []
    for n in sizes:
        for arm in arms:
            method, kind = _arm_method_prior(profile, arm)
            for point in arm_grid(profile, arm):
                train, extra = _arm_train(profile, arm, n), {}
                values = {"scale": inference.scale,
                          "variance": inference.nonlearned_variance}
                if point is not None:
                    extra.update(tuned=point, phase="tune", seed_role="tuning")
                    if selection == "split":
                        extra["fit"] = "split"  # fit on 4/5, scored on the held-out 1/5
                    if point["parameter"] == "weight_decay":
                        train = {**train, "weight_decay": point["value"]}
                    else:
                        values[point["parameter"]] = point["value"]
                    if point["lr"] is not None:
                        train = {**train, "lr": point["lr"]}
                for s in seeds_of(arm, n):
                    prior = _prior_spec(profile, kind or "none", prior_name, s,
                                        inference.rank, values["scale"], values["variance"])
                    runs.append(_planned_run(profile, experiment, arm, method, prior, n, s,
                                             train, **extra))
    return runs


def _inference_runs(profile: Profile, cfg: dict) -> list[dict]:
    return _tuned_arm_runs(profile, "inference", cfg.prior, cfg.arms, cfg.sizes,
                           cfg.tuning.selection)


def control_size(profile: Profile) -> int:
    """The positive controls' training size: the control's own, else the smallest inference
    size."""
    exps = profile.experiments
    return exps.control.n_train or min(exps.inference.sizes, key=lambda n: n or 1e9)


def _control_runs(profile: Profile, cfg: dict) -> list[dict]:
    """The positive control: the oracle prior and the baselines with the inference protocol
    (tuning, rank, seeds, draws) at one size; every arm starts from the oracle's backbone."""
    selection = profile.experiments.inference.tuning.selection
    return _tuned_arm_runs(profile, "control", "oracle", cfg.arms, [control_size(profile)],
                           selection)


def _covariance_runs(profile: Profile, cfg: dict) -> list[dict]:
    """The covariance control: the task prior and the isotropic prior at its mean (the SimCLR
    draw's weights, where every arm starts), tuned over the same variances, at the control's
    size with the inference protocol."""
    selection = profile.experiments.inference.tuning.selection
    return _tuned_arm_runs(profile, "covariance", TASK_PRIOR, cfg.arms,
                           [control_size(profile)], selection)


def _per_seed_runs(profile: Profile, cfg: dict) -> list[dict]:
    """The per-seed protocol (Harvey et al.): every seed tunes its own setting."""
    prior = profile.experiments.inference.prior
    return _tuned_arm_runs(profile, "per_seed", prior, cfg.arms, cfg.sizes,
                           cfg.selection)


REFERENCE_METHODS = {"reference": "hmc", "head_sgd": "sgd", "head_sghmc": "sghmc"}


def _reference_runs(profile: Profile, cfg: dict) -> list[dict]:
    """The reference posterior and the two arms on its subspace (`reference` module), per size
    and evaluation seed (from `experiments.inference.evaluation.first_seed`): `reference` at
    T = 1, `head_sgd`, `head_sghmc` (the profile's temperature and schedule at that size); on
    the first `curve_seeds` seeds, `reference T=t` at every other temperature of the curve. The
    head's features come from the inference prior's pretrained backbone (the seed's draw)."""
    first = profile.experiments.inference.evaluation.first_seed
    source = profile.experiments.inference.prior
    sampler = {k: getattr(cfg, k) for k in ("chains", "draws", "warmup", "leapfrog")}
    runs = []
    for n in cfg.sizes:
        train = {**as_dict(profile.train), "steps": steps_at(profile, n)}
        for i, s in enumerate(range(first, first + cfg.seeds)):
            prior = {**_prior_spec(profile, "none", source, s), "kind": "head",
                     "variance": cfg.head_variance}
            temperatures = cfg.temperatures if i < cfg.curve_seeds else [1.0]
            for t in temperatures:
                arm = "reference" if t == 1.0 else f"reference T={t:g}"
                runs.append(_planned_run(profile, "reference", arm, "hmc", prior, n, s,
                                         {**train, "temperature": t}, hmc=sampler,
                                         subspace="head", seed_role="evaluation"))
            for arm in ("head_sgd", "head_sghmc"):
                runs.append(_planned_run(profile, "reference", arm, REFERENCE_METHODS[arm],
                                         prior, n, s, train, subspace="head",
                                         seed_role="evaluation"))
    return runs


def _scale_runs(profile: Profile, cfg: dict) -> list[dict]:
    runs = []
    rules = cfg.rules or [profile.priors.rescaling_rule]
    eps_values = cfg.eps or [profile.priors.eps]
    several = len(rules) * len(eps_values) > 1
    for source in cfg.priors:
        for rule in rules:
            for eps in eps_values:
                for scale in cfg.scales:
                    arm = f"{source}@{scale:g}" + (f" ({rule}, eps {eps:g})" if several else "")
                    runs += [_planned_run(profile, "scale", arm, cfg.method,
                                          _prior_spec(profile, "learned", source, s, cfg.rank,
                                                      scale, rule=rule, eps=eps),
                                          cfg.n_train, s) for s in _seeds(profile, cfg)]
    if cfg.scratch:
        runs += [_planned_run(profile, "scale", "scratch", "sgd",
                              _prior_spec(profile, "none", cfg.priors[0], s), cfg.n_train,
                              s, init="scratch") for s in _seeds(profile, cfg)]
    return runs


def _rank_runs(profile: Profile, cfg: dict) -> list[dict]:
    """Every rank at every scale of the rank experiment (`scales`, else `scale`), at the scaled
    trace and, with `fixed_trace`, at the full-rank prior's total variance."""
    runs = []
    traces = ("scaled", "fixed") if cfg.fixed_trace else ("scaled",)
    scales = cfg.scales or [cfg.scale]
    for scale in scales:
        at = f" @ {scale:g}" if len(scales) > 1 else ""
        for trace in traces:
            for rank in cfg.ranks:
                arm = f"rank={rank}" + (", fixed trace" if trace == "fixed" else "") + at
                runs += [_planned_run(profile, "rank", arm, cfg.method,
                                      {**_prior_spec(profile, "learned", cfg.prior, s, rank,
                                                     scale), "trace": trace},
                                      cfg.n_train, s) for s in _seeds(profile, cfg)]
    return runs


def _temperature_runs(profile: Profile, cfg: dict) -> list[dict]:
    runs = []
    for temperature in cfg.temperatures:
        train = {**as_dict(profile.train), "temperature": temperature}
        for s in _seeds(profile, cfg):
            prior = _prior_spec(profile, "learned", cfg.prior, s, cfg.rank, cfg.scale)
            runs += [_planned_run(profile, "temperature", f"T={temperature:g}", cfg.method,
                                  prior, cfg.n_train, s, train, chain=chain)
                     for chain in range(cfg.chains)]
    return runs


_PLANNERS = {"rank": _rank_runs, "scale": _scale_runs, "inference": _inference_runs,
             "temperature": _temperature_runs, "control": _control_runs,
             "covariance": _covariance_runs, "per_seed": _per_seed_runs,
             "reference": _reference_runs}


def plan(profile: Profile, experiments: Iterable[str] = EXPERIMENTS) -> list[dict]:
    """Every run of the profile's enabled experiments, in a fixed order; each run's config
    carries the `run_context` and its id is the digest of that config."""
    runs = []
    for experiment in experiments:
        if experiment not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {experiment!r}; expected one of {EXPERIMENTS}")
        cfg = profile.experiments.experiment(experiment)
        if cfg.enabled:
            runs += _PLANNERS[experiment](profile, cfg)
    context = run_context(profile)
    for run in runs:
        run["config"]["context"] = context
        run["id"] = digest(run["config"])
    return runs


def pack_key(config: dict) -> str:
    """What runs must share to train in one pack: everything but the seed, chain, prior,
    initial weights, the arm's name and tuned value, and the per-run training values."""
    shared = {k: v for k, v in config.items()
              if k not in ("seed", "prior", "arm", "chain", "tuned", "init")}
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
