"""Executing a study: packs of runs trained on one device, results stored one JSON file per run.

The unit of work is a pack (`planning.make_packs`). A back end (`backends`: this process, a
local process pool, or Ray) trains packs and hands each run's record back to the driver, which
writes it atomically; a result file is named by the hash of its run's configuration, so an
interrupted study resumes where it stopped. Every pack runs with the same number of threads
whatever the back end and however many runs are left, and a pack with any run missing is
trained whole, so a resumed sweep ends with exactly the numbers of an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..analysis.chains import combine_chains
from ..analysis.records import record_problem
from ..analysis.selection import select_tuned
from ..atomic import atomic_write, remove_stale_temporaries
from ..config.profile import Profile
from ..data.subsets import few_shot_indices
from ..jsonsafe import to_plain
from ..training.loop import train_pack
from ..training.models import build_backbone, build_model, num_prior_parameters
from ..training.run import TrainSettings
from ..training.spec import RunOutcome, RunSpec
from ..vocabulary import EXPERIMENTS
from .backends import Execute, pack_runner
from .datasets import DataKey, data_source, downstream_data
from .errors import StudyError
from .finals import final_runs
from .lock import holds_profile_lock
from .paths import output_dir, result_path
from .planned import PlannedStudy, plan_study
from .planning import digest, make_packs, plan
from .predictions import (
    file_problem,
    predictions_loader,
    predictions_name,
    predictions_problem,
    write_predictions,
)
from .priors import build_run_prior, load_prior_and_backbone, prior_location
from .resources import auto_pack_size, resolve_device, threads_per_worker


def resolve_pack_size(profile: Profile, override: int | None = None) -> int:
    """Runs per pack: `override` (the CLI's --pack), else the profile's `pack` (`auto` resolved
    for the profile's device and model)."""
    value = override if override is not None else profile.pack
    if value != "auto":
        return int(value)
    device = resolve_device(profile.device)
    backbone = build_backbone(profile.model)
    ranks = [r["config"]["prior"].get("rank", 0) for r in plan(profile)] or [0]
    return auto_pack_size(device, profile.model, num_prior_parameters(backbone),
                          max(ranks), profile.train.batch_size, profile.precision)


def _run_spec(run: dict, profile: Profile, root: Path | None, labels: torch.Tensor,
              priors: dict) -> tuple[RunSpec, torch.Tensor]:
    """A run's spec; runs with the same prior spec get the same prior object (`priors` memo),
    which lets the packed prior read a shared factor once."""
    cfg = run["config"]
    indices = few_shot_indices(labels, cfg["n_train"], cfg["data"]["subset_protocol"], cfg["seed"])
    heldout = None
    if cfg.get("fit") == "split":
        indices, heldout = split_subset(labels, indices, cfg["seed"])
    source, draw = cfg["prior"]["source"], cfg["prior"]["draw"]
    # read and checked against the model when loaded (`priors.load_prior_and_backbone`)
    learned, backbone_state = load_prior_and_backbone(
        prior_location(profile, source, root, draw))
    key = json.dumps(cfg["prior"], sort_keys=True)
    if key not in priors:
        priors[key] = build_run_prior(cfg["prior"], learned)
    if cfg.get("init") == "scratch":
        backbone_state = scratch_backbone(cfg["model"], cfg["seed"])
    spec = RunSpec(indices, cfg["seed"], priors[key], backbone_state,
                   lr=cfg["train"]["lr"], weight_decay=cfg["train"]["weight_decay"],
                   temperature=cfg["train"]["temperature"], chain=cfg.get("chain", 0),
                   heldout=heldout)
    return spec, indices


SPLIT_SEED = 7_777  # added to the run's seed for the held-out split of its subset


def split_subset(labels: torch.Tensor, indices: torch.Tensor, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A training subset split for selection (`tuning.selection: split`, as Harvey et al.):
    per class, round(k / 5) of its k images held out (at least one), the rest fitted; returns
    (fit indices, held-out indices), both sorted pool indices, fixed by the seed."""
    gen = torch.Generator().manual_seed(seed + SPLIT_SEED)
    fit, held = [], []
    for c in torch.unique(labels[indices]).tolist():
        members = indices[labels[indices] == c]
        members = members[torch.randperm(len(members), generator=gen)]
        k = max(1, round(len(members) / 5))
        held.append(members[:k])
        fit.append(members[k:])
    return torch.sort(torch.cat(fit)).values, torch.sort(torch.cat(held)).values


def scratch_backbone(model: str, seed: int) -> dict[str, torch.Tensor]:
    """Randomly initialised backbone weights (no pretraining), seeded by the run's seed."""
    torch.manual_seed(seed)
    return build_backbone(model).state_dict()


def _record(run: dict, outcome: RunOutcome, indices: torch.Tensor, device: str, pack: int,
            source: dict) -> dict:
    cfg = run["config"]
    return {
        "id": run["id"],
        "config": cfg,
        "status": outcome.status,
        "seed": cfg["seed"],
        "metrics": {"final": outcome.final, "bma": outcome.bma},
        "val_metrics": {"final": outcome.val_final, "bma": outcome.val_bma},
        **({"heldout_metrics": {"final": outcome.heldout_final, "bma": outcome.heldout_bma}}
           if cfg.get("fit") == "split" else {}),
        "n_samples": outcome.n_samples,
        "steps_done": outcome.steps_done,
        "final_loss": outcome.final_loss,
        "diagnostics": outcome.diagnostics,
        "reliability": outcome.reliability,
        "wall_time_s": outcome.wall_time_s,
        "pack_size": pack,
        "train_indices_digest": digest(indices.tolist()),
        "version": __version__,
        "torch_version": torch.__version__,
        "device": device,
        "data_source": source,
        **({"selection": run["selection"]} if "selection" in run else {}),
        # written by the driver beside the record (`store` in run_sweep), not into it
        **({"_predictions": outcome.predictions} if outcome.predictions else {}),
    }


def execute_pack(runs: list[dict], profile: Profile, root: Path | None = None) -> list[dict]:
    """Train one pack of runs (same `pack_key`) and return their result records (not written)."""
    if runs[0]["config"]["experiment"] == "reference":
        from .reference_runs import execute_reference

        return execute_reference(runs, profile, root)
    device = resolve_device(profile.device)
    pool, val, test = downstream_data(DataKey.of(profile), device)
    cfg = runs[0]["config"]
    model = build_model(cfg["model"], pool.num_classes)
    labels = pool.labels.cpu()
    priors: dict = {}
    specs, subsets = zip(*(_run_spec(r, profile, root, labels, priors) for r in runs),
                         strict=True)
    if cfg.get("phase") == "tune":
        test = None  # tuning runs are scored on validation data only
    try:
        outcomes = train_pack(model, pool, test, cfg["method"], TrainSettings(**cfg["train"]),
                              specs, device, profile.precision, val=val)
    except torch.OutOfMemoryError as exc:
        raise StudyError(
            f"a pack of {len(runs)} runs does not fit in {device} memory; set a smaller "
            f"`pack:` in the profile or pass --pack {max(1, len(runs) // 2)}"
        ) from exc
    source = data_source(DataKey.of(profile))
    return [_record(r, o, s, device, len(runs), source)
            for r, o, s in zip(runs, outcomes, subsets, strict=True)]


def execute_run(run: dict, profile: Profile, root: Path | None = None) -> dict:
    """Execute one planned run alone (a pack of one) and return its result record."""
    return execute_pack([run], profile, root)[0]


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write standard JSON (NaN/inf stored as null) to a temporary file in the same folder, then
    rename it into place."""
    plain = to_plain(obj)
    atomic_write(path, lambda f: json.dump(plain, f, indent=1, sort_keys=True, allow_nan=False))


def read_record(path: Path) -> dict | None:
    """A stored result record, or None if the file is missing, unreadable or not a record."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def stored_record(profile: Profile, run: dict, root: Path | None = None) -> dict | None:
    """The run's stored record if its result file holds a complete record
    (`records.record_problem`) of the same configuration; else None (the run is done again)."""
    path = result_path(profile, run, root)
    record = read_record(path)
    if record is None or record_problem(record) or record.get("config") != run["config"]:
        return None
    name = record.get("predictions")
    if name is not None and not (isinstance(name, str) and name == predictions_name(run["id"])
                                 and file_problem(path.parent / name, record) is None):
        return None  # its predictions are gone or broken: done again
    return record


def is_done(profile: Profile, run: dict, root: Path | None = None) -> bool:
    """A run is done when its result file holds a complete record of the same configuration."""
    return stored_record(profile, run, root) is not None


def checked_records(records: object, runs: Sequence[dict]) -> list[dict]:
    """The records a back end returned for the pack `runs`, refused (StudyError) unless each is
    complete (`records.record_problem`) and belongs to one of these runs with its exact
    configuration: nothing a worker sends is written unchecked."""
    expected = {r["id"]: r["config"] for r in runs}
    if not isinstance(records, list):
        raise StudyError(f"a back end returned {type(records).__name__} for a pack, not a list "
                         "of result records")
    for record in records:
        problem = record_problem(record)
        if problem is None and (record["id"] not in expected
                                or record["config"] != expected[record["id"]]):
            problem = "it belongs to no run of this pack"
        if problem is None and "_predictions" in record:
            problem = predictions_problem(record["_predictions"])
        if problem:
            rid = record.get("id") if isinstance(record, dict) else None
            raise StudyError(f"a back end returned an invalid result record "
                             f"({str(rid)[:20]!r}): {problem}; nothing of it was written")
    return records


@holds_profile_lock  # a second process on the same profile and outputs stops at once
def run_sweep(
    profile: Profile,
    runs: list[dict],
    root: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    execute: Execute = execute_pack,
    pack: int | None = None,
    backend: str | None = None,
    address: str | None = None,
) -> dict[str, int]:
    """Execute the packs that hold a run not done yet; write each new record atomically.

    Returns counts of planned / skipped (already done) / ran / diverged runs and the wall time.
    `pack` overrides the profile's pack size; `workers` its number of worker processes (always 1
    on an accelerator). `backend` (default: the profile's) is `local` or `ray` (`ray_backend`,
    on the Ray cluster at `address` or a local Ray instance).
    """
    from tqdm.auto import tqdm

    for folder in ("runs", "priors"):  # under the lock: no process of the profile writes
        remove_stale_temporaries(output_dir(profile, root) / folder)
    packs = make_packs(runs, resolve_pack_size(profile, pack))
    done = {r["id"] for r in runs if is_done(profile, r, root)}
    todo = [p for p in packs if any(r["id"] not in done for r in p)]
    counts = {"planned": len(runs), "skipped": len(done), "ran": 0, "diverged": 0}
    workers = workers or profile.workers
    if resolve_device(profile.device) != "cpu":
        workers = 1
    # the thread count is part of each run's identity (`planning.run_context`): it follows the
    # profile's `workers`, whatever number of processes runs the packs here
    threads = threads_per_worker(profile.workers)
    missing = sum(r["id"] not in done for p in todo for r in p)
    bar = tqdm(total=missing, desc=f"{profile.name} runs", unit="run", disable=not progress)

    def store(records: Sequence[dict], members: Sequence[dict]) -> None:
        """Write the records a back end returned for the pack `members` (checked first)."""
        for record in checked_records(records, members):
            if record["id"] in done:
                continue
            path = result_path(profile, record, root)
            predictions = record.pop("_predictions", None)
            beside = path.parent / predictions_name(record["id"])
            if predictions:  # first: the record, written last, refers to it
                write_predictions(beside, predictions)
                record["predictions"] = beside.name
            try:
                write_json_atomic(record, path)
            except BaseException:  # no record: its predictions would be an orphan
                if predictions:
                    beside.unlink(missing_ok=True)
                raise
            done.add(record["id"])
            counts["ran"] += 1
            counts["diverged"] += record["status"] == "diverged"
            bar.update(1)

    run_packs = pack_runner(backend or profile.backend, workers, address)
    start = time.perf_counter()
    try:
        run_packs(todo, profile, root, execute, threads, store)
    finally:
        bar.close()
    counts["wall_time_s"] = round(time.perf_counter() - start, 1)
    return counts


def counts_text(counts: dict) -> str:
    """What a sweep did, in one sentence."""
    text = (f"{counts['planned']} runs: {counts['ran']} trained in {counts['wall_time_s']:.0f} s, "
            f"{counts['skipped']} already done")
    if counts.get("diverged"):
        text += f", {counts['diverged']} diverged (stored as such)"
    if "priors_s" in counts:
        text += f"; priors ready in {counts['priors_s']:.0f} s"
    return text


def study_runs_and_records(profile: Profile, root: Path | None = None,
                           planned: PlannedStudy | None = None
                           ) -> tuple[list[dict], dict[str, dict | None]]:
    """The study's runs as far as they can be known (the plan, then the final runs of the tuned
    groups whose tuning runs are stored) and each run's stored record (None: not done).
    `planned`: every experiment's study planned already (else planned here)."""
    runs = list(planned.runs) if planned else plan(profile)
    stored = {r["id"]: stored_record(profile, r, root) for r in runs}
    finals = final_runs(profile, lambda run: stored[run["id"]], runs=runs)
    stored.update({r["id"]: stored_record(profile, r, root) for r in finals})
    return runs + finals, stored


def study_runs(profile: Profile, root: Path | None = None) -> list[dict]:
    """Every run of the study known so far: the plan and the final runs of the tuned groups
    whose tuning is done (the rest of the final runs follow when it is)."""
    return study_runs_and_records(profile, root)[0]


@dataclass(frozen=True)
class StudyResults:
    """A study's runs known so far and their stored records, planned and read once: what a
    notebook asks for its tables, figures and claims instead of planning and reading every
    result file again for each of them."""

    runs: tuple[dict, ...]
    stored: Mapping[str, dict | None]
    runs_dir: Path

    def results(self, experiment: str | None = None) -> list[dict]:
        """Stored result records (stale files ignored), in plan order, of one experiment or
        all."""
        return [self.stored[r["id"]] for r in self.runs if self.stored[r["id"]] is not None
                and (not experiment or r["config"]["experiment"] == experiment)]

    def records(self, experiment: str | None = None) -> list[dict]:
        """The records every table, figure and claim reads: the results without the tuning
        runs (`selection.select_tuned`), each group of chains pooled into one record with its
        convergence diagnostics (`chains.combine_chains`)."""
        return combine_chains(select_tuned(self.results(experiment)),
                              predictions_loader(self.runs_dir))


def study_results(profile: Profile, root: Path | None = None,
                  planned: PlannedStudy | None = None) -> StudyResults:
    """The study's runs and stored records (`study_runs_and_records`), read once."""
    runs, stored = study_runs_and_records(profile, root, planned)
    return StudyResults(tuple(runs), stored, output_dir(profile, root) / "runs")


def load_results(
    profile: Profile, root: Path | None = None, experiment: str | None = None
) -> list[dict]:
    """Stored result records of the profile's current study (`StudyResults.results`): the
    plan's runs and the final runs of the tuned groups (`finals.final_runs`)."""
    return study_results(profile, root).results(experiment)


def analysis_records(profile: Profile, root: Path | None = None,
                     experiment: str | None = None) -> list[dict]:
    """The records every table, figure and claim reads (`StudyResults.records`)."""
    return study_results(profile, root).records(experiment)


def sweep_study(profile: Profile, experiments: Iterable[str] = EXPERIMENTS,
                root: Path | None = None, planned: PlannedStudy | None = None,
                **sweep: Any) -> dict[str, float]:
    """Execute what the experiments still need, in two sweeps: the planned runs (tuning runs
    included), then the final runs of the tuned groups their results choose. `sweep` goes to
    `run_sweep` (progress, pack, backend, address, workers, execute); `planned`: the study
    planned already (else planned here). Returns the counts of both sweeps added up, with each
    sweep's wall time (`planned_s`, `final_s`)."""
    planned = planned or plan_study(profile, experiments)
    counts = run_sweep(profile, list(planned.runs), root, **sweep)
    first = counts["wall_time_s"]
    finals = final_runs(profile, lambda run: stored_record(profile, run, root),
                        planned.experiments, planned.runs)
    if finals:
        more = run_sweep(profile, finals, root, **sweep)
        counts = {k: counts[k] + more[k] for k in counts}
    return {**counts, "planned_s": first, "final_s": round(counts["wall_time_s"] - first, 1)}
