"""A study: a validated profile expanded into runs, executed resumably, stored one JSON per run.

Data flows one way: profile -> plan (list of run configurations) -> each run executed in
isolation (data subset + model + prior + method) -> `outputs/<profile>/runs/<hash>.json`. A run
never reads another run's result; a result file is named by the hash of its full configuration
and written atomically, so an interrupted study resumes where it stopped and ends with the same
numbers as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .atomic import atomic_torch_save, atomic_write
from .config import load_profile
from .data import (
    TensorTask,
    dataset_labels,
    fashion_mnist_task,
    few_shot_indices,
    load_flowers102,
    take_subset,
)
from .learn import PriorLearningSettings, learn_prior
from .models import build_model, num_prior_parameters
from .prior import GaussianPrior, load_authors_model_state, rescale
from .train import TrainSettings, train_and_evaluate

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ("rank", "scale", "inference")
TEST_SUBSET_SEED = 12345
LEARN_SEED = 0


class StudyError(RuntimeError):
    """A study cannot start: a prior file or data set is missing, or sizes do not match."""


# ----------------------------------------------------------------------------- locations


def default_outputs() -> Path:
    """`$BPRIOR_OUTPUTS`, else `./outputs`; from the checkout's notebooks/ folder (JupyterLab's
    working directory there), the checkout's `outputs/`."""
    if os.environ.get("BPRIOR_OUTPUTS"):
        return Path(os.environ["BPRIOR_OUTPUTS"])
    if Path.cwd().resolve() == REPO_ROOT / "notebooks":
        return REPO_ROOT / "outputs"
    return Path.cwd() / "outputs"


def output_dir(profile: dict, root: Path | None = None) -> Path:
    """`<root>/<profile name>/`, root defaulting to `default_outputs()`."""
    return Path(root or default_outputs()) / profile["name"]


def prior_paths(profile: dict, name: str, root: Path | None = None) -> tuple[Path, Path]:
    """Where a learned prior and its backbone weights are stored."""
    folder = output_dir(profile, root) / "priors"
    return folder / f"{name}.pt", folder / f"{name}_backbone.pt"


# ----------------------------------------------------------------------------- planning


def _digest(obj: Any) -> str:
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
    spec = {"kind": kind, "source": source, "source_id": prior_source_id(profile, source)}
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


def _run(profile, experiment, arm, method, prior, n_train, seed) -> dict:
    config = {
        "experiment": experiment,
        "arm": arm,
        "method": method,
        "prior": prior,
        "n_train": n_train,
        "seed": seed,
        "model": profile["model"],
        "data": {k: profile["data"][k] for k in ("dataset", "subset_protocol", "test_size")},
        "train": profile["train"],
    }
    return {"id": _digest(config), "config": config}


def _arm_method_prior(profile: dict, arm: str) -> tuple[str, str | None]:
    bayes = profile["experiments"]["inference"]["bayes_method"]
    method, _, prior_kind = arm.partition("+")
    if method == "sgd":
        method = "sgd_prior" if prior_kind else "sgd"
    elif method in ("sghmc", "sgld"):
        method = bayes
    return method, prior_kind or None


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
            for rank in cfg["ranks"]:
                prior = _prior_spec(profile, "learned", cfg["prior"], rank, cfg["scale"])
                runs += [_run(profile, "rank", f"rank={rank}", cfg["method"], prior,
                              cfg["n_train"], s) for s in seeds]
        elif experiment == "scale":
            for source in cfg["priors"]:
                for scale in cfg["scales"]:
                    prior = _prior_spec(profile, "learned", source, cfg["rank"], scale)
                    runs += [_run(profile, "scale", f"{source}@{scale:g}", cfg["method"], prior,
                                  cfg["n_train"], s) for s in seeds]
        elif experiment == "inference":
            for n in cfg["sizes"]:
                for arm in cfg["arms"]:
                    method, kind = _arm_method_prior(profile, arm)
                    prior = (None if kind is None else
                             _prior_spec(profile, kind, cfg["prior"], cfg["rank"], cfg["scale"]))
                    if prior is None:
                        prior = {"kind": "none", "source": cfg["prior"],
                                 "source_id": prior_source_id(profile, cfg["prior"])}
                    runs += [_run(profile, "inference", arm, method, prior, n, s) for s in seeds]
    return runs


# ----------------------------------------------------------------------------- priors


def needed_priors(profile: dict, experiments: Iterable[str] = EXPERIMENTS) -> list[str]:
    """Names of the priors (`ssl`, `supervised`) the enabled experiments use."""
    names = {run["config"]["prior"]["source"] for run in plan(profile, experiments)}
    return sorted(names)


def check_prior_files(profile: dict, experiments: Iterable[str] = EXPERIMENTS) -> None:
    """For `priors.source: files`, fail before anything runs if a needed file is missing."""
    if profile["priors"]["source"] != "files":
        return
    problems = []
    for name in needed_priors(profile, experiments):
        prefix = profile["priors"]["files"][name]
        if not prefix:
            problems.append(f"priors.files.{name} is not set")
            continue
        missing = [f"{prefix}_{s}.pt" for s in ("mean", "variance", "covmat", "model")
                   if not Path(f"{prefix}_{s}.pt").exists()]
        if missing:
            problems.append(f"priors.files.{name}: missing {', '.join(missing)}")
    if problems:
        raise StudyError(
            "prior files are missing (the authors' four-file format <prefix>_mean.pt, "
            "_variance.pt, _covmat.pt, _model.pt is expected): " + "; ".join(problems)
        )


def source_task(profile: dict) -> TensorTask:
    """The source task for prior learning (optionally a subset of it)."""
    task = fashion_mnist_task("source", "train", profile["data"]["root"])
    n = profile["priors"]["learning"]["source_train_size"]
    if 0 < n < len(task):
        gen = torch.Generator().manual_seed(0)
        task = task.subset(torch.randperm(len(task), generator=gen)[:n])
    return task


def learn_priors(
    profile: dict, names: Iterable[str], root: Path | None = None, device="cpu", progress=True
) -> dict[str, Path]:
    """Learn (or reuse, if already stored with the same settings) the named priors."""
    objective = {"ssl": "simclr", "supervised": "supervised"}
    learning = dict(profile["priors"]["learning"])
    learning.pop("source_train_size")
    settings = PriorLearningSettings(**learning)
    paths = {}
    for name in names:
        prior_file, backbone_file = prior_paths(profile, name, root)
        wanted = prior_source_id(profile, name)
        if prior_file.exists() and backbone_file.exists():
            stored = GaussianPrior.load(prior_file)
            if stored.meta.get("source_id") == wanted:
                paths[name] = prior_file
                continue
        torch.manual_seed(LEARN_SEED)  # the backbone's initial weights
        model = build_model(profile["model"], num_classes=5)
        prior, state = learn_prior(
            model, source_task(profile), objective[name], settings, seed=LEARN_SEED,
            device=device, progress=progress,
        )
        prior = GaussianPrior(prior.mean, prior.variance, prior.cov_factor,
                              meta={**prior.meta, "source_id": wanted})
        prior_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(state, backbone_file)
        prior.save(prior_file)
        paths[name] = prior_file
    return paths


def prepare_priors(
    profile: dict, root: Path | None = None, progress: bool = True,
    experiments: Iterable[str] = EXPERIMENTS,
) -> dict[str, GaussianPrior]:
    """Learn (profile `priors.source: learn`) or read (`files`) the priors the experiments use."""
    names = needed_priors(profile, experiments)
    check_prior_files(profile, experiments)
    if profile["priors"]["source"] == "learn":
        learn_priors(profile, names, root, resolve_device(profile["device"]), progress)
    profile_json = json.dumps(profile, sort_keys=True)
    return {
        n: load_prior_and_backbone(profile_json, n, str(root) if root else None)[0] for n in names
    }


@lru_cache(maxsize=4)
def load_prior_and_backbone(
    profile_json: str, name: str, root: str | None
) -> tuple[GaussianPrior, dict[str, torch.Tensor]]:
    """The stored prior `name` and its backbone weights (cached per process)."""
    profile = json.loads(profile_json)
    if profile["priors"]["source"] == "files":
        prefix = profile["priors"]["files"][name]
        floor = profile["priors"]["variance_floor"]
        prior = GaussianPrior.from_authors_files(prefix, variance_floor=floor)
        return prior, load_authors_model_state(prefix)
    prior_file, backbone_file = prior_paths(profile, name, Path(root) if root else None)
    if not prior_file.exists():
        raise StudyError(f"prior {name!r} has not been learned yet ({prior_file} missing); "
                         "run the 01_learn_prior step (`bprior report` does it first)")
    state = torch.load(backbone_file, map_location="cpu", weights_only=True)
    return GaussianPrior.load(prior_file), state


def build_run_prior(spec: dict, learned: GaussianPrior) -> GaussianPrior | None:
    """The prior a run uses: the learned one truncated and rescaled, or a baseline.

    Baselines: `zero` is N(0, v I) with a given v, or (v unset) with v the average variance of the
    rescaled learned prior; `isotropic` is N(pretrained weights, v I) with that same average
    variance. So zero -> isotropic changes only the mean, isotropic -> learned only the shape of
    the covariance."""
    kind = spec["kind"]
    if kind == "none":
        return None
    if kind == "zero" and spec["variance"] is not None:
        return GaussianPrior.isotropic(torch.zeros_like(learned.mean), spec["variance"])
    scaled = rescale(learned.truncated(spec["rank"]), spec["scale"], spec["rule"], spec["eps"])
    if kind == "learned":
        return scaled
    if kind == "zero":
        return scaled.trace_matched_isotropic(torch.zeros_like(learned.mean))
    if kind == "isotropic":
        return scaled.trace_matched_isotropic(learned.mean)
    raise ValueError(f"unknown prior kind {kind!r}")


# ----------------------------------------------------------------------------- data


@lru_cache(maxsize=2)
def downstream_data(data_json: str) -> tuple[Any, Any]:
    """Downstream train set and the fixed test set (cached per process)."""
    data = json.loads(data_json)
    if data["dataset"] == "fashion_mnist":
        train = fashion_mnist_task("downstream", "train", data.get("root"))
        test = fashion_mnist_task("downstream", "test", data.get("root"))
    else:
        root = data.get("root") or str(Path.home() / ".cache" / "bprior")
        train = load_flowers102("train", root, data.get("download", False))
        test = load_flowers102("test", root, data.get("download", False))
    n_test = data.get("test_size", 0)
    if 0 < n_test < len(dataset_labels(test)):
        gen = torch.Generator().manual_seed(TEST_SUBSET_SEED)
        test = take_subset(test, torch.sort(torch.randperm(len(dataset_labels(test)),
                                                           generator=gen)[:n_test]).values)
    return train, test


# ----------------------------------------------------------------------------- execution


def resolve_device(name: str) -> str:
    """`auto` -> cuda if available, else mps if available, else cpu."""
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def execute_run(run: dict, profile: dict, root: Path | None = None) -> dict:
    """Execute one planned run and return its result record (does not write it)."""
    cfg = run["config"]
    data_cfg = {**cfg["data"], "root": profile["data"]["root"],
                "download": profile["data"]["download"]}
    train_all, test = downstream_data(json.dumps(data_cfg, sort_keys=True))
    indices = few_shot_indices(
        dataset_labels(train_all), cfg["n_train"], cfg["data"]["subset_protocol"], cfg["seed"]
    )
    train = take_subset(train_all, indices)
    learned, backbone_state = load_prior_and_backbone(
        json.dumps(profile, sort_keys=True), cfg["prior"]["source"], str(root) if root else None
    )
    num_classes = int(dataset_labels(train_all).max()) + 1
    model = build_model(cfg["model"], num_classes)
    if learned.dim != num_prior_parameters(model.backbone):
        raise StudyError(
            f"prior {cfg['prior']['source']!r} has D={learned.dim} parameters but model "
            f"{cfg['model']!r} has {num_prior_parameters(model.backbone)}"
        )
    model.backbone.load_state_dict(backbone_state)
    prior = build_run_prior(cfg["prior"], learned)
    outcome = train_and_evaluate(
        model, train, test, cfg["method"], TrainSettings(**cfg["train"]), prior,
        seed=cfg["seed"], device=resolve_device(profile["device"]),
    )
    return {
        "id": run["id"],
        "config": cfg,
        "status": outcome.status,
        "seed": cfg["seed"],
        "metrics": {"final": outcome.final, "bma": outcome.bma},
        "n_samples": outcome.n_samples,
        "steps_done": outcome.steps_done,
        "final_loss": outcome.final_loss,
        "wall_time_s": outcome.wall_time_s,
        "train_indices_digest": _digest(indices.tolist()),
        "version": __version__,
        "torch_version": torch.__version__,
        "device": resolve_device(profile["device"]),
    }


def result_path(profile: dict, run: dict, root: Path | None = None) -> Path:
    return output_dir(profile, root) / "runs" / f"{run['id']}.json"


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON to a temporary file in the same folder, then rename it into place."""
    atomic_write(path, lambda f: json.dump(obj, f, indent=1, sort_keys=True))


def is_done(profile: dict, run: dict, root: Path | None = None) -> bool:
    """A run is done when its result file exists and holds the same configuration."""
    path = result_path(profile, run, root)
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("config") == run["config"]
    except (json.JSONDecodeError, OSError):
        return False


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _execute_and_store(run: dict, profile: dict, root: Path | None) -> dict:
    record = execute_run(run, profile, root)
    write_json_atomic(record, result_path(profile, run, root))
    return record


def run_sweep(
    profile: dict,
    runs: list[dict],
    root: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    execute: Callable[[dict, dict, Path | None], dict] = _execute_and_store,
) -> dict[str, int]:
    """Execute the runs that are not done yet; returns counts of done / skipped / diverged."""
    from tqdm.auto import tqdm

    todo = [r for r in runs if not is_done(profile, r, root)]
    counts = {"planned": len(runs), "skipped": len(runs) - len(todo), "ran": 0, "diverged": 0}
    workers = workers or profile["workers"]
    if resolve_device(profile["device"]) != "cpu":
        workers = 1
    bar = tqdm(total=len(todo), desc=f"{profile['name']} runs", unit="run", disable=not progress)
    start = time.perf_counter()
    try:
        if workers <= 1 or len(todo) <= 1:
            for run in todo:
                record = execute(run, profile, root)
                _count(counts, record, bar)
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                     initargs=(threads,)) as pool:
                futures = [pool.submit(execute, run, profile, root) for run in todo]
                for future in as_completed(futures):
                    _count(counts, future.result(), bar)
    finally:
        bar.close()
    counts["wall_time_s"] = round(time.perf_counter() - start, 1)
    return counts


def _count(counts: dict, record: dict, bar) -> None:
    counts["ran"] += 1
    counts["diverged"] += record["status"] == "diverged"
    bar.update(1)


def load_results(
    profile: dict, root: Path | None = None, experiment: str | None = None
) -> list[dict]:
    """Stored result records of the profile's current plan (stale files are ignored)."""
    records = []
    for run in plan(profile):
        if experiment and run["config"]["experiment"] != experiment:
            continue
        path = result_path(profile, run, root)
        if path.exists():
            record = json.loads(path.read_text())
            if record.get("config") == run["config"]:
                records.append(record)
    return records


def run_experiment(
    profile_or_name: dict | str, experiment: str, root: Path | None = None, progress: bool = True
) -> dict[str, int]:
    """Plan and execute one experiment of a profile (what the notebooks call)."""
    profile = (load_profile(profile_or_name) if isinstance(profile_or_name, str)
               else profile_or_name)
    check_prior_files(profile, [experiment])
    return run_sweep(profile, plan(profile, [experiment]), root, progress=progress)
