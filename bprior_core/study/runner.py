"""The one sequence that runs a study, used by `bprior run` and `bprior report`: connect the back
end, check everything that can fail early, learn or read the priors, then sweep the runs; and
what a study still lacks (the report is built only over a complete one)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from ..config import load_profile, profile_path
from ..config.profile import Profile
from ..vocabulary import EXPERIMENTS
from .backends import connect
from .execution import study_runs_and_records, sweep_study
from .planned import plan_study
from .preflight import preflight
from .priors import is_stored, prepare_priors


def run_study(
    profile: Profile, root: Path | None = None, experiments: Iterable[str] = EXPERIMENTS,
    profile_file: str | Path | None = None, pack: int | None = None,
    backend: str | None = None, address: str | None = None, progress: bool = True,
) -> dict[str, float]:
    """Everything a study still needs, in order; nothing is written before the checks pass.
    Returns the sweep's counts with `priors_s`, the seconds spent on the priors."""
    experiments = list(experiments)
    backend = backend or profile.backend
    connect(backend, address)  # a back end that is not ready fails before anything is written
    # outputs writable and owned by this profile file, device, prior files, data, sizes
    planned = plan_study(profile, experiments)  # once: every step below reads it
    preflight(profile, root, experiments, profile_file=profile_file, planned=planned)
    start = time.perf_counter()
    prepare_priors(profile, root, progress=progress, experiments=experiments, planned=planned)
    priors_s = round(time.perf_counter() - start, 1)
    counts = sweep_study(profile, experiments, root, planned=planned, progress=progress,
                         pack=pack, backend=backend, address=address)
    return {**counts, "priors_s": priors_s}


def run_experiment(
    profile_or_name: Profile | str, experiment: str, root: Path | None = None, progress: bool = True
) -> dict[str, float]:
    """`run_study` for one experiment of a profile (what notebooks 02-05 call). Given a profile
    name or path, the outputs folder is also checked to belong to that profile file."""
    if isinstance(profile_or_name, str):
        profile_file = profile_path(profile_or_name)
        profile = load_profile(profile_file)
    else:
        profile, profile_file = profile_or_name, None
    return run_study(profile, root, [experiment], profile_file=profile_file, progress=progress)


def missing_work(profile: Profile, root: Path | None = None) -> list[str]:
    """What the profile's study still lacks, in words (empty when it is complete): learned prior
    draws not stored, and runs without a stored result (the final runs of a tuned group count
    once its tuning runs are stored)."""
    missing = []
    planned = plan_study(profile)
    if profile.priors.source == "learn":
        draws = [f"{name} draw {draw}" for name, draw in planned.draws
                 if not is_stored(profile, name, draw, root)]
        if draws:
            shown = ", ".join(draws[:3]) + (", ..." if len(draws) > 3 else "")
            missing.append(f"{len(draws)} learned prior(s) ({shown})")
    runs, stored = study_runs_and_records(profile, root, planned)
    undone = sum(stored[run["id"]] is None for run in runs)
    if undone:
        missing.append(f"{undone} of {len(runs)} runs")
    return missing
