"""The priors a study uses: learned here (SWAG on the source task) or read from published files,
then truncated, rescaled or replaced by a baseline for each run."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..atomic import atomic_torch_save, remove_stale_temporaries
from ..config import learning_settings
from ..config.profile import Profile
from ..digests import authors_files_digest, file_digest
from ..priors.files import (
    AUTHORS_SUFFIXES,
    PriorFileError,
    checked_backbone_state,
    load_authors_model_state,
    load_authors_prior,
    load_prior,
    load_torch_file,
    save_prior,
)
from ..priors.gaussian import GaussianPrior, check_covers, rescale
from ..priors.learning import learn_prior, learn_priors_packed, learn_task_directions
from ..training.models import build_backbone, build_model, num_prior_parameters
from ..vocabulary import EXPERIMENTS, TASK_PRIOR, VARIANCE_KINDS
from .errors import StudyError
from .finals import needed_priors
from .lock import profile_lock
from .paths import output_dir, prior_paths
from .planned import PlannedStudy, plan_study
from .planning import prior_source_id
from .resources import (
    resolve_device,
    set_worker_threads,
    threads_per_worker,
    torch_threads,
    worker_initargs,
)
from .sources import OBJECTIVES, source_kind, source_task


def check_prior_files(profile: Profile, experiments: Iterable[str] = EXPERIMENTS,
                      planned: PlannedStudy | None = None) -> None:
    """For `priors.source: files`, fail before anything runs if a needed file is missing."""
    if profile.priors.source != "files":
        return
    problems = []
    names = planned.priors if planned else needed_priors(profile, experiments)
    for name in names:
        prefix = profile.priors.files.prefix(name)
        if not prefix:
            problems.append(f"priors.files.{name} is not set")
            continue
        missing = [f"{prefix}_{s}.pt" for s in AUTHORS_SUFFIXES
                   if not Path(f"{prefix}_{s}.pt").exists()]
        if missing:
            problems.append(f"priors.files.{name}: missing {', '.join(missing)}")
    if problems:
        raise StudyError(
            "prior files are missing (the authors' four-file format <prefix>_mean.pt, "
            "_variance.pt, _covmat.pt, _model.pt is expected): " + "; ".join(problems)
        )


def _stored_source_id(prior_file: Path, backbone_file: Path, model: str) -> str | None:
    """The `source_id` of a stored learned prior, or None when it or its backbone weights are
    missing, cannot be read, do not fit the model or were not stored together (a corrupt or
    mismatched file is learned again, like a missing one)."""
    if not (prior_file.exists() and backbone_file.exists()):
        return None
    try:
        _read_learned(prior_file, backbone_file, model)
    except PriorFileError as exc:
        warnings.warn(f"{exc}; learning this prior again", stacklevel=3)
        return None
    return load_prior(prior_file).meta.get("source_id")


def _read_learned(prior_file: Path, backbone_file: Path, model: str
                  ) -> tuple[GaussianPrior, dict[str, torch.Tensor]]:
    """A learned prior and its backbone weights, checked: the weights fit the model and are
    finite, the prior covers the model's backbone, and the weights are the ones stored with this
    prior (their digest is in the prior's meta: a backbone file swapped for another prior's is
    refused)."""
    prior = load_prior(prior_file)
    backbone = build_backbone(model)
    state = checked_backbone_state(load_torch_file(backbone_file), backbone, backbone_file)
    tied = prior.meta.get("backbone_digest")
    if tied != file_digest(backbone_file):
        raise PriorFileError(
            f"{backbone_file} is not the backbone stored with the prior {prior_file} (its digest "
            f"differs from the one the prior records); delete both files to learn them again")
    try:
        check_covers(prior, num_prior_parameters(backbone), f"the prior in {prior_file}")
    except ValueError as exc:
        raise PriorFileError(str(exc)) from None
    return prior, state


def learn_priors(
    profile: Profile, draws: Iterable[tuple[str, int] | str], root: Path | None = None,
    device="cpu", progress=True,
) -> dict[tuple[str, int], Path]:
    """Learn (or reuse, if already stored with the same settings) the priors `(name, draw)` (a
    bare name is draw 0); draw d is learned with seed d (initial weights, batch order,
    augmentations). Each prior is learned with `threads_per_worker(workers)` threads, on the
    CPU in `workers` processes at once, so priors do not depend on how they were scheduled.
    Learning holds the profile's lock (`lock.profile_lock`): a second process stops at once
    instead of learning the same priors."""
    pairs = [(d, 0) if isinstance(d, str) else tuple(d) for d in draws]
    paths = {(n, d): prior_paths(profile, n, root, d)[0] for n, d in pairs}
    if all(is_stored(profile, n, d, root) for n, d in pairs):
        return paths
    with profile_lock(profile, root):
        remove_stale_temporaries(output_dir(profile, root) / "priors")
        todo = [(n, d) for n, d in pairs if not is_stored(profile, n, d, root)]
        # a task prior starts from its SimCLR draw's weights: those are learned first
        starts = sorted({("ssl", d) for n, d in todo if n == TASK_PRIOR}
                        - {(n, d) for n, d in pairs if n != TASK_PRIOR})
        first = [t for t in todo if t[0] != TASK_PRIOR]
        first += [t for t in starts if not is_stored(profile, *t, root)]
        _learn(profile, first, [t for t in todo if t[0] == TASK_PRIOR], root, device, progress)
    return paths


# relative cost of learning one prior (measured on the cpu profile: SimCLR's two views make a
# draw about twice a supervised one; task directions are one short supervised phase)
_COST = {"ssl": 2.0, TASK_PRIOR: 0.4}

Job = tuple[str, tuple[int, ...]]  # a source's name and the draws learned together


def _jobs(first: list[tuple[str, int]], pack: int) -> list[Job]:
    """The draws of each source in packs of at most `pack` (`priors.pack`), costliest first."""
    jobs: list[Job] = []
    for name in dict.fromkeys(n for n, _ in first):
        draws = [d for n, d in first if n == name]
        jobs += [(name, tuple(draws[i:i + pack])) for i in range(0, len(draws), pack)]
    return sorted(jobs, key=lambda job: -_COST.get(job[0], 1.0))


def _learn(profile: Profile, first: list[tuple[str, int]], then: list[tuple[str, int]],
           root: Path | None, device: str, progress: bool) -> None:
    """Learn the priors `first` (draws of one source together, `priors.pack` at a time), then
    `then` (task priors, each after its SimCLR draw).

    In worker processes on the CPU when there are several: the costliest first, and each task
    prior submitted as soon as its SimCLR draw is stored, so the workers never wait for a whole
    phase to end."""
    workers = profile.workers
    threads = threads_per_worker(workers)
    packs, tasks = _jobs(first, profile.priors.pack), [(n, (d,)) for n, d in then]
    if not (device == "cpu" and workers > 1 and len(packs) + len(tasks) > 1):
        with torch_threads(threads):
            for name, draws in packs + tasks:
                learn_draws(profile, name, draws, root, device, progress)
        return
    import multiprocessing as mp

    waiting = {}  # SimCLR draw -> the task priors that start from it
    for name, draws in tasks:
        waiting.setdefault(draws[0], []).append((name, draws))
    jobs = packs + [job for d, held in waiting.items() if ("ssl", d) not in first
                    for job in held]
    with ProcessPoolExecutor(min(workers, len(packs) + len(tasks)),
                             mp_context=mp.get_context("spawn"),
                             initializer=set_worker_threads,
                             initargs=worker_initargs(threads)) as pool:
        running = {pool.submit(learn_draws, profile, *job, root, device, False): job
                   for job in jobs}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name, draws = running.pop(future)
                future.result()
                if name != "ssl":
                    continue
                for job in (t for d in draws for t in waiting.get(d, [])):
                    running[pool.submit(learn_draws, profile, *job, root, device, False)] = job


def is_stored(profile: Profile, name: str, draw: int, root: Path | None) -> bool:
    """Whether prior (name, draw) is stored, readable, with the current learning settings."""
    stored = _stored_source_id(*prior_paths(profile, name, root, draw), profile.model)
    return stored == prior_source_id(profile, name, draw)


def learn_draws(profile: Profile, name: str, draws: tuple[int, ...], root: Path | None = None,
                device="cpu", progress: bool = True) -> list[Path]:
    """Learn the draws `draws` of prior `name` (draw d with seed d) and store each with its
    backbone (a task prior: the directions from the stored SimCLR draw's weights, which it
    keeps as its backbone); several draws of a SWAG prior are trained together as one packed
    network (`priors.learning.learn_priors_packed`: each draw's prior up to rounding), the time
    split evenly."""
    start = time.perf_counter()
    source = source_task(profile, name)
    models = []
    for draw in draws:
        torch.manual_seed(draw)  # the backbone's initial weights (unless model_weights gives them)
        models.append(build_model(profile.model, source.num_classes, profile.model_weights))
    settings = learning_settings(profile)
    if name == TASK_PRIOR:
        learned = []
        for model, draw in zip(models, draws, strict=True):
            state = load_prior_and_backbone(prior_location(profile, "ssl", root, draw))[1]
            model.backbone.load_state_dict(state)
            learned.append((learn_task_directions(model, source, settings, seed=draw,
                                                  device=device, progress=progress), state))
    elif len(draws) == 1:
        learned = [learn_prior(models[0], source, OBJECTIVES[name], settings, seed=draws[0],
                               device=device, progress=progress)]
    else:
        learned = learn_priors_packed(models, source, OBJECTIVES[name], settings, draws,
                                      device=device, progress=progress)
    wall = round((time.perf_counter() - start) / len(draws), 1)
    source_meta = {"images": source_kind(profile, name), "size": len(source)}
    return [_store(profile, name, draw, prior, state, source_meta, wall, root)
            for draw, (prior, state) in zip(draws, learned, strict=True)]


def _store(profile: Profile, name: str, draw: int, prior: GaussianPrior, state: dict,
           source_meta: dict, wall: float, root: Path | None) -> Path:
    """Write a learned prior and its backbone (the backbone first: the prior records its
    digest)."""
    prior_file, backbone_file = prior_paths(profile, name, root, draw)
    prior_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state, backbone_file)
    prior = GaussianPrior(prior.mean, prior.variance, prior.cov_factor,
                          meta={**prior.meta, "source_id": prior_source_id(profile, name, draw),
                                "source": source_meta, "wall_time_s": wall,
                                "backbone_digest": file_digest(backbone_file)})
    save_prior(prior, prior_file)
    return prior_file


@dataclass(frozen=True)
class PriorLocation:
    """Where a prior is read from (a hashable cache key): a learned prior's file and its backbone
    weights, or the prefix of the authors' four files with the variance floor to apply."""

    name: str
    draw: int = 0
    files_prefix: str | None = None
    variance_floor: float | None = None
    prior_file: Path | None = None
    backbone_file: Path | None = None
    model: str = "small_resnet"  # the weights are checked against this model's backbone
    digest: str | None = None  # the files' content: a file replaced is read again


def prior_location(profile: Profile, name: str, root: Path | None = None, draw: int = 0
                   ) -> PriorLocation:
    """Where the profile's prior `name` (draw `draw`) lives."""
    model = profile.model
    if profile.priors.source == "files":
        prefix = profile.priors.files.prefix(name)
        return PriorLocation(name, 0, prefix, profile.priors.variance_floor, model=model,
                             digest=authors_files_digest(prefix))
    prior_file, backbone_file = prior_paths(profile, name, root, draw)
    digest = file_digest(prior_file) if prior_file.is_file() else None
    return PriorLocation(name, draw, prior_file=prior_file, backbone_file=backbone_file,
                         model=model, digest=digest)


@lru_cache(maxsize=8)
def load_prior_and_backbone(where: PriorLocation) -> tuple[GaussianPrior, dict[str, torch.Tensor]]:
    """The stored prior and its backbone weights (cached per process)."""
    if where in _preloaded:
        return _preloaded[where]
    if where.files_prefix is not None:
        prior = load_authors_prior(where.files_prefix, variance_floor=where.variance_floor)
        backbone = build_backbone(where.model)
        model_file = f"{where.files_prefix}_model.pt"
        state = checked_backbone_state(load_authors_model_state(where.files_prefix), backbone,
                                       model_file)
        try:
            check_covers(prior, num_prior_parameters(backbone),
                         f"the prior {where.files_prefix}_{{mean,variance,covmat}}.pt")
        except ValueError as exc:
            raise PriorFileError(str(exc)) from None
        return prior, state
    if not where.prior_file.exists():
        raise StudyError(f"prior {where.name!r} has not been learned yet ({where.prior_file} "
                         "missing); run the 01_learn_prior step (`bprior report` does it first)")
    return _read_learned(where.prior_file, where.backbone_file, where.model)


# Priors handed in by a back end whose workers cannot read the driver's files (`ray_backend`):
# `load_prior_and_backbone` returns these without looking for files.
_preloaded: dict[PriorLocation, tuple[GaussianPrior, dict[str, torch.Tensor]]] = {}


def preload_priors(
    priors: dict[PriorLocation, tuple[GaussianPrior, dict[str, torch.Tensor]]],
) -> None:
    """Make `load_prior_and_backbone` return these (prior, backbone weights) pairs instead of
    reading their files, and forget what it cached before; `preload_priors({})` undoes it."""
    _preloaded.clear()
    _preloaded.update(priors)
    load_prior_and_backbone.cache_clear()


def prepare_priors(
    profile: Profile, root: Path | None = None, progress: bool = True,
    experiments: Iterable[str] = EXPERIMENTS, planned: PlannedStudy | None = None,
) -> dict[str, GaussianPrior]:
    """Learn (profile `priors.source: learn`) or read (`files`) the priors the experiments use
    (`planned`: the study planned already, else planned here); returns the first draw of
    each."""
    planned = planned or plan_study(profile, experiments)
    check_prior_files(profile, experiments, planned)
    if profile.priors.source == "learn":
        learn_priors(profile, planned.draws, root, resolve_device(profile.device), progress)
    return {n: load_prior_and_backbone(prior_location(profile, n, root))[0]
            for n in planned.priors}


def build_run_prior(spec: dict, learned: GaussianPrior) -> GaussianPrior | None:
    """The prior a run uses: the learned one truncated and rescaled, or a baseline.

    Truncation to rank r keeps the top-r principal directions of the low-rank part
    (`GaussianPrior.principal`). With `trace: fixed` (rank experiment) the diagonal is raised so
    that the rescaled prior's total variance equals that of the full-rank rescaled prior, so that
    ranks differ only in the shape of the covariance.

    `task` (the covariance control) is the stored task prior's directions at the isotropic
    prior's mean and trace (`GaussianPrior.shaped`).

    Baselines: `zero` is N(0, v I) and `isotropic` N(pretrained weights, v I), with a given v
    (tuned on validation), or (v unset) with v the average variance of the rescaled learned
    prior (trace matching; then zero -> isotropic changes only the mean, isotropic -> learned
    only the shape of the covariance)."""
    kind = spec["kind"]
    if kind in ("none", "head"):  # no backbone prior (the reference's prior is the head's)
        return None
    if kind == "task":
        return learned.shaped(spec["variance"], spec["share"])
    if kind in VARIANCE_KINDS and spec.get("variance") is not None:
        mean = learned.mean if kind == "isotropic" else torch.zeros_like(learned.mean)
        return GaussianPrior.isotropic(mean, spec["variance"])
    scaled = rescale(learned.principal(spec["rank"]), spec["scale"], spec["rule"], spec["eps"])
    if spec.get("trace") == "fixed":
        full = rescale(learned, spec["scale"], spec["rule"], spec["eps"])
        scaled = scaled.with_trace(float(full.diag_of_covariance().double().sum()))
    if kind == "learned":
        return scaled
    if kind == "zero":
        return scaled.trace_matched_isotropic(torch.zeros_like(learned.mean))
    if kind == "isotropic":
        return scaled.trace_matched_isotropic(learned.mean)
    raise ValueError(f"unknown prior kind {kind!r}")
