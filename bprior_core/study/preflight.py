"""Checks that run before anything is learned or trained, so that a study fails in seconds with a
message naming the key or file, not after an hour of prior learning with a traceback.

`preflight` checks, in order: that the prior files the experiments need exist, that the device
exists, that every training size can be drawn from the downstream training pool
(`check_training_sizes`; this loads the data, so a missing or corrupt data file shows here too),
that the outputs folder is writable, and that it belongs to this profile file (`claim_outputs`).
Only the last two write anything (`outputs/<name>/` and its `profile.json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch

from ..atomic import atomic_write_text
from ..config import ProfileError
from ..config.profile import Profile
from ..data.tasks import DataFileError, DataUnavailableError
from ..priors.files import PriorFileError
from ..vocabulary import CONTROL_EXPERIMENTS, EXPERIMENTS
from .datasets import DataKey, downstream_data, locate_data
from .errors import StudyError
from .paths import output_dir
from .planned import PlannedStudy
from .planning import control_size, plan
from .priors import check_prior_files, load_prior_and_backbone, prior_location
from .resources import resolve_device

PROFILE_RECORD = "profile.json"
# the profile key that holds the training sizes of each experiment
SIZE_KEYS = {"rank": ("n_train",), "scale": ("n_train",), "inference": ("sizes",),
             "temperature": ("n_train",), "control": ("n_train",),
             "covariance": ("n_train",), "per_seed": ("sizes",), "reference": ("sizes",)}


def preflight(
    profile: Profile, root: Path | None = None, experiments: Iterable[str] = EXPERIMENTS,
    profile_file: str | Path | None = None, planned: PlannedStudy | None = None,
) -> str:
    """Check everything a study needs before it learns or trains anything; return the device.

    Raises ProfileError (a profile value cannot work: training sizes) or StudyError (the outputs
    folder belongs to another profile file or is not writable, the device or a prior file is
    missing). `profile_file`: the YAML file the profile was read from (the CLI and the report
    pass it), for `claim_outputs`; None (a profile built in Python) skips that check.
    `planned`: the study planned already (else planned here)."""
    experiments = list(experiments)
    check_prior_files(profile, experiments, planned)
    check_published_priors(profile, experiments, planned)
    warn_random_start(profile)
    device = resolve_device(profile.device)
    pool, _, _ = downstream_data(DataKey.of(profile), device)
    check_training_sizes(profile, pool.labels.cpu(), experiments)
    # the checks above write nothing; these two create outputs/<name>/
    check_outputs_writable(profile, root)
    if profile_file is not None:
        claim_outputs(profile, profile_file, root)
    return device


def random_start(profile: Profile) -> bool:
    """Whether learned priors start from randomly initialised weights although the backbone is
    a torchvision model, which usually comes pretrained (nothing is downloaded here)."""
    return (profile.model.startswith("torchvision:") and not profile.model_weights
            and profile.priors.source == "learn")


def warn_random_start(profile: Profile) -> None:
    """One line when `random_start`: a torchvision backbone without `model_weights`."""
    if random_start(profile):
        warnings.warn(f"model {profile.model} has no model_weights: its priors are learned "
                      "from randomly initialised weights (nothing is downloaded); give "
                      "model_weights to start from a pretrained checkpoint", stacklevel=2)


def check_published_priors(profile: Profile, experiments: Iterable[str] = EXPERIMENTS,
                           planned: PlannedStudy | None = None) -> None:
    """For `priors.source: files`: read each needed prior and its weights (checked against the
    model, `priors.load_prior_and_backbone`) and refuse a rank the files do not hold."""
    if profile.priors.source != "files":
        return
    wanted: dict[str, tuple[int, str]] = {}
    for run in planned.runs if planned else plan(profile, experiments):
        spec = run["config"]["prior"]
        rank = spec.get("rank") or 0
        if rank > wanted.get(spec["source"], (-1, ""))[0]:
            wanted[spec["source"]] = (rank, f"experiments.{run['config']['experiment']}")
    for name, (rank, key) in wanted.items():
        prior, _ = load_prior_and_backbone(prior_location(profile, name))
        if rank > prior.rank:
            raise ProfileError(
                f"{key}: rank {rank} is more than the {prior.rank} low-rank rows stored in "
                f"{profile.priors.files.prefix(name)}_covmat.pt (priors.files.{name}); use a rank "
                f"<= {prior.rank}")


def dry_checks(profile: Profile, experiments: Iterable[str] = EXPERIMENTS,
               root: Path | None = None, profile_file: str | Path | None = None,
               ) -> list[tuple[str, str | None]]:
    """The checks of `preflight`, writing nothing (`bprior plan` runs them): (what was checked,
    None or the error `bprior run` would stop with). Prior files and data are read and checked
    as `run` reads them; the outputs folder is checked for writing without creating it."""
    experiments = list(experiments)

    def priors() -> None:
        check_prior_files(profile, experiments)
        check_published_priors(profile, experiments)

    def data() -> None:
        locate_data(DataKey.of(profile))
        pool, _, _ = downstream_data(DataKey.of(profile), "cpu")
        check_training_sizes(profile, pool.labels.cpu(), experiments)

    def outputs() -> None:
        check_outputs_writable(profile, root, create=False)
        if profile_file is not None:
            claim_outputs(profile, profile_file, root, write=False)

    checks = [("prior files", priors), ("device", lambda: resolve_device(profile.device)),
              ("data", data), ("outputs", outputs)]
    out = []
    for name, check in checks:
        try:
            check()
            out.append((name, None))
        except (StudyError, ProfileError, DataUnavailableError, DataFileError, PriorFileError,
                OSError) as exc:
            out.append((name, str(exc)))
    return out


def check_outputs_writable(profile: Profile, root: Path | None = None, create: bool = True
                           ) -> Path:
    """Create `outputs/<name>/` and a temporary file in it, or raise StudyError naming it;
    `create=False` (`bprior plan`) checks the folder, or the nearest folder above it that
    exists, for writing without creating anything."""
    folder = output_dir(profile, root)
    try:
        if not create:
            existing = next(p for p in (folder, *folder.parents) if p.exists())
            if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
                raise PermissionError(13, "Permission denied", str(existing))
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise StudyError(
            f"the outputs folder {folder} is not writable ({exc.strerror or exc}); fix its "
            "permissions, or choose another folder with --outputs or $BPRIOR_OUTPUTS"
        ) from None
    return folder


def profile_digest(profile: Profile) -> str:
    """A digest of the validated profile's content (comments and layout do not count)."""
    return hashlib.sha256(json.dumps(profile.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def claim_outputs(profile: Profile, profile_file: str | Path, root: Path | None = None,
                  write: bool = True) -> None:
    """Refuse two different profile files with the same `name`, which would share (and mix)
    `outputs/<name>/`.

    `outputs/<name>/profile.json` records the profile file that owns the folder (its resolved
    path) and the digest of its validated content. A later run is accepted when it comes from
    the same file, whatever its content now: editing a profile and running it again is the normal
    workflow (results are keyed by each run's configuration hash, stale files are ignored); the
    recorded digest is updated. A run from another file is accepted when its content is the same
    as the owner's (a copy of the file), or when the owner file no longer exists (the file was
    moved: the new path takes over). Otherwise it is refused with a StudyError saying how to fix
    it: give one profile another name, or delete the folder."""
    folder = output_dir(profile, root)
    record_path = folder / PROFILE_RECORD
    path, digest = str(Path(profile_file).resolve()), profile_digest(profile)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        owner, owner_digest = str(record["profile_file"]), str(record["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        owner = owner_digest = None  # no record yet (or an unreadable one): this file owns it
    if owner is not None and owner != path:
        if digest == owner_digest:
            return  # a copy of the owner's profile: same results
        if Path(owner).exists():
            raise StudyError(
                f"profile {profile.name!r} from {path} is not the profile whose results are "
                f"in {folder} ({owner}, recorded in {record_path}): two different profile files "
                "have the same name and would mix their results. Give this profile another "
                f"`name:`, or delete {folder} to start over with this file"
            )
    if not write:
        return
    atomic_write_text(record_path, json.dumps(
        {"name": profile.name, "profile_file": path, "digest": digest}, indent=1) + "\n")


def _sizes(profile: Profile, experiments: Iterable[str]):
    """(dotted key, list of training sizes) of the enabled experiments."""
    for experiment in experiments:
        cfg = profile.experiments.experiment(experiment)
        if not cfg.enabled:
            continue
        for key in SIZE_KEYS[experiment]:
            if experiment in CONTROL_EXPERIMENTS:  # both at the control's size
                yield "experiments.control.n_train", [control_size(profile)]
                continue
            value = getattr(cfg, key)
            yield f"experiments.{experiment}.{key}", value if isinstance(value, list) else [value]


def check_training_sizes(
    profile: Profile, labels: torch.Tensor, experiments: Iterable[str] = EXPERIMENTS
) -> None:
    """Every training size must be drawable from the pool `labels` (0 = the full pool): at most
    the pool's size, and with `subset_protocol: balanced` a multiple of the number of classes
    with no more per class than the smallest class holds (`data.subsets.few_shot_indices`)."""
    n_pool = len(labels)
    counts = torch.bincount(labels)
    counts = counts[counts > 0]
    n_classes, smallest = len(counts), int(counts.min())
    balanced = profile.data.subset_protocol == "balanced"
    for key, sizes in _sizes(profile, experiments):
        for n in sizes:
            if n > n_pool:
                raise ProfileError(
                    f"{key}: {n} training images are more than the {n_pool} of the downstream "
                    f"training pool; use at most {n_pool}, or 0 for the full pool"
                )
            if not balanced or n in (0, n_pool):
                continue
            largest = n_classes * smallest
            if n % n_classes:
                lower, upper = n - n % n_classes, n - n % n_classes + n_classes
                near = " or ".join(str(v) for v in (lower, upper) if 0 < v <= largest)
                raise ProfileError(
                    f"{key}: {n} training images cannot be split evenly over the {n_classes} "
                    f"downstream classes (subset_protocol 'balanced' takes n/{n_classes} of "
                    f"each); use a multiple of {n_classes} between {n_classes} and {largest} "
                    f"(e.g. {near}), 0 for the full pool, or subset_protocol 'reproduction'"
                )
            if n > largest:
                raise ProfileError(
                    f"{key}: {n} training images need {n // n_classes} per class but the "
                    f"smallest downstream class has {smallest}; use at most {largest}, or 0 for "
                    "the full pool"
                )
