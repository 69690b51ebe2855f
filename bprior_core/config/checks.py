"""Checks across a profile's keys: the model and data exist and fit, each prior's images, the
protocol's seeds and sizes, training settings that train."""

from __future__ import annotations

from pathlib import Path

from ..settings import PriorLearningSettings, TrainSettings
from ..vocabulary import (
    CHAINED_ARM_METHODS,
    CONTROL_EXPERIMENTS,
    ONE_PRIOR_EXPERIMENTS,
    PER_SEED,
    RANK,
    REFERENCE,
    SCALE,
    TASK_PRIOR,
    TEMPERATURE,
    arm_parts,
)
from .fields import ProfileError, shown
from .profile import Profile, TrainSection, as_dict
from .protocol import _check_fixed_protocol
from .schema import CLASS_COUNTS, MIN_CHAINS, MIN_GRID


def downstream_classes(p: Profile) -> int:
    """How many classes the downstream task has (an image folder: its train/ class folders)."""
    data = p.data
    if data.dataset != "imagefolder":
        return CLASS_COUNTS[data.dataset]
    from ..data.imagefolder import scan_root

    return len(scan_root(data.root)["train"].classes)


def _check_consistency(p: Profile) -> None:
    learning, exps = p.priors.learning, p.experiments
    _check_train_settings(p.train)
    if p.priors.source == "learn":
        snapshots = learning.swag_steps // learning.collect_every
        if snapshots < 2:
            raise ProfileError(
                f"priors.learning: swag_steps={learning.swag_steps} with collect_every="
                f"{learning.collect_every} gives {snapshots} snapshot(s); SWAG needs >= 2"
            )
        # the learned factor keeps the last min(max_rank, snapshots) deviations
        max_rank = min(learning.max_rank, snapshots)
        for where, rank in [("experiments.rank.ranks", max(exps.rank.ranks)),
                            ("experiments.scale.rank", exps.scale.rank),
                            ("experiments.inference.rank", exps.inference.rank),
                            ("experiments.temperature.rank", exps.temperature.rank)]:
            if not exps.experiment(where.split(".")[1]).enabled:
                continue
            if rank > max_rank:
                raise ProfileError(
                    f"{where}: rank {rank} is larger than the {max_rank} low-rank rows the learned "
                    "prior will store (min of priors.learning.max_rank and the number of SWAG "
                    f"snapshots); use a rank <= {max_rank}"
                )
    _check_model(p)
    if p.data.dataset == "fashion_mnist" and p.model != "small_resnet":
        raise ProfileError("model: fashion_mnist (28x28 grayscale) needs model 'small_resnet'")
    if p.data.dataset == "flowers102" and p.priors.source == "learn":
        raise ProfileError(
            "priors.source: 'learn' is implemented for fashion_mnist and imagefolder; flowers102 "
            "needs priors.source 'files' with priors.files.ssl / priors.files.supervised"
        )
    _check_imagefolder(p)


def validation_from_pool(p: Profile) -> bool:
    """Whether the validation set is drawn from the labelled pool (not an image folder's own
    val/ folder, nor Flowers-102's official split)."""
    data = p.data
    if data.dataset == "imagefolder":
        from ..data.imagefolder import scan_root

        return "val" not in scan_root(data.root)
    return data.dataset == "fashion_mnist"


# priors.learning keys that say where the source images come from, not how to learn
SOURCE_KEYS = ("source_train_size", "source_root")


def learning_settings(p: Profile) -> PriorLearningSettings:
    """The profile's prior-learning settings (`priors.learning` less its source keys)."""
    learning = p.priors.learning
    return PriorLearningSettings(**{k: v for k, v in as_dict(learning).items()
                                    if k not in SOURCE_KEYS})


def _check_model(p: Profile) -> None:
    from ..training.models import ModelError, check_model_name

    try:
        check_model_name(p.model)
    except ModelError as exc:
        raise ProfileError(f"model: {exc}") from None
    weights = p.model_weights
    if weights is not None and not p.model.startswith("torchvision:"):
        raise ProfileError(f"model_weights: only torchvision:<name> models take weights; "
                           f"{p.model!r} does not")
    if weights is not None and not Path(weights).is_file():
        raise ProfileError(f"model_weights: {weights} is not a file (a local state dict saved "
                           "with torch.save)")
    if weights is not None:  # weights that do not fit are named before anything runs
        from ..training.models import build_model

        try:
            build_model(p.model, 2, weights)
        except ModelError as exc:
            raise ProfileError(str(exc)) from None


def _check_imagefolder(p: Profile) -> None:
    """An image folder's keys: a root that holds usable splits, a source folder for learned
    priors, normalisation of one value per channel."""
    data, learning = p.data, p.priors.learning
    if data.dataset != "imagefolder":
        for key in ("augment", "mean", "std"):
            if getattr(data, key):
                raise ProfileError(f"data.{key}: only used with data.dataset 'imagefolder'")
        if learning.source_root:
            raise ProfileError("priors.learning.source_root: only used with data.dataset "
                               "'imagefolder'")
        return
    from ..data.imagefolder import FolderError, list_classes
    from ..training.models import input_channels

    if not data.root:
        raise ProfileError("data.root: an image folder needs it (the folder holding train/ and "
                           "test/ class folders)")
    channels = input_channels(p.model)
    for key in ("mean", "std"):
        values = getattr(data, key)
        if values is not None and len(values) != channels:
            raise ProfileError(f"data.{key}: {shown(values)} has {len(values)} values; "
                               f"model {p.model} takes {channels}-channel images")
    if p.priors.source == "learn" and _priors_used(p) - {"oracle"}:
        if not learning.source_root:
            raise ProfileError("priors.learning.source_root: learned priors on an image folder "
                               "need a source folder of class subfolders (<source_root>/<class>/*)")
        try:
            list_classes(learning.source_root, "priors.learning.source_root")
        except FolderError as exc:
            raise ProfileError(str(exc)) from None


def _check_protocol(p: Profile) -> None:
    """The credible-protocol keys: margins > 0 (schema), grids of >= 2 distinct values and the
    same length for every arm, a validation set for tuning, >= 3 chains for R-hat, a headline
    convention among those swept, and one draw where the priors come from files."""
    exps = p.experiments
    tuning = exps.inference.tuning
    if exps.inference.enabled and tuning.enabled:
        lengths = {k: len(getattr(tuning, k)) for k in ("scales", "variances", "weight_decays")}
        for key, values in ((k, getattr(tuning, k)) for k in lengths):
            if len(values) < MIN_GRID:
                raise ProfileError(
                    f"experiments.inference.tuning.{key}: a tuning grid needs at least "
                    f"{MIN_GRID} values, spanning the strong and the weak side, got "
                    f"{shown(values)}")
        if len(set(lengths.values())) > 1:
            raise ProfileError(
                "experiments.inference.tuning: every arm gets the same number of grid values "
                f"(the same tuning budget); got {lengths}")
        if p.data.val_size == 0 and tuning.selection == "validation":
            raise ProfileError("experiments.inference.tuning.enabled needs a validation set: set "
                               "data.val_size (e.g. 500), or tuning.selection: split")
        if tuning.selection == "split":
            _check_split_sizes(p)
    val_size, classes = p.data.val_size, downstream_classes(p)
    if val_size and (val_size < classes or val_size % classes):
        raise ProfileError(
            f"data.val_size: {val_size} cannot be split evenly over the {classes} downstream "
            f"classes (a class-balanced validation set; {val_size} would leave classes empty "
            f"or unequal); use a multiple of {classes}, e.g. "
            f"{classes * max(1, val_size // classes)}")
    reference = exps.reference
    if reference.enabled:
        if reference.chains < MIN_CHAINS:
            raise ProfileError(f"experiments.reference.chains: the reference posterior is judged "
                               f"on R-hat over at least {MIN_CHAINS} chains, got "
                               f"{reference.chains}")
        if 1.0 not in reference.temperatures:
            raise ProfileError("experiments.reference.temperatures: the reference posterior is "
                               "the Bayes posterior, T = 1: list 1.0 among them, e.g. [0.1, 0.3, "
                               "1.0, 3.0]")
        if reference.curve_seeds > reference.seeds:
            raise ProfileError(f"experiments.reference.curve_seeds: {reference.curve_seeds} is "
                               f"more than its {reference.seeds} seeds; use at most that")
    temp = exps.temperature
    if temp.enabled and temp.chains < MIN_CHAINS:
        raise ProfileError(f"experiments.temperature.chains: the temperature claims are judged "
                           f"on R-hat and ESS over at least {MIN_CHAINS} chains per "
                           f"temperature, got {temp.chains}")
    inference = exps.inference
    samplers = [a for a in inference.arms if arm_parts(a)[0] in CHAINED_ARM_METHODS]
    if inference.enabled and samplers and inference.chains < MIN_CHAINS:
        raise ProfileError(
            f"experiments.inference.chains: whether the samplers converged, stated beside C4 "
            f"and C4b, takes R-hat and bulk ESS over at least {MIN_CHAINS} chains, got "
            f"{inference.chains} for the arms {shown(samplers)}; use chains: {MIN_CHAINS}")
    scale = exps.scale
    rules = scale.rules or [p.priors.rescaling_rule]
    eps = scale.eps or [p.priors.eps]
    if p.priors.rescaling_rule not in rules or p.priors.eps not in eps:
        raise ProfileError(
            f"experiments.scale: the profile's convention (priors.rescaling_rule "
            f"{p.priors.rescaling_rule!r}, priors.eps {p.priors.eps:g}) gives the "
            f"headline verdict and must be among the swept rules {shown(rules)} and eps "
            f"{shown(eps)}")
    _check_sources(p)
    _check_fixed_protocol(p)
    if p.priors.source == "files" and p.priors.draws != 1:
        raise ProfileError("priors.draws: published prior files are one draw per source; set "
                           "priors.draws: 1 (several draws need priors.source: learn)")


def _priors_used(p: Profile) -> set[str]:
    """The prior names the enabled experiments use (the control: the oracle prior)."""
    exps = p.experiments
    used = {exps.experiment(e).prior for e in ONE_PRIOR_EXPERIMENTS if exps.experiment(e).enabled}
    if exps.scale.enabled:
        used |= set(exps.scale.priors)
    if exps.control.enabled:
        used.add("oracle")
    if exps.covariance.enabled:
        used |= {"ssl", TASK_PRIOR}  # the task prior starts from the SimCLR draw's weights
    if exps.reference.enabled:
        used.add(exps.inference.prior)  # its backbone gives the features
    return used


def training_sizes(p: Profile) -> dict[str, list[int]]:
    """Dotted key -> the training sizes an enabled experiment draws from the labelled pool."""
    exps = p.experiments
    out = {f"experiments.{e}.n_train": [exps.experiment(e).n_train]
           for e in (RANK, SCALE, TEMPERATURE) if exps.experiment(e).enabled}
    if exps.inference.enabled:
        out["experiments.inference.sizes"] = list(exps.inference.sizes)
    if exps.control.enabled and exps.control.n_train is not None:
        out["experiments.control.n_train"] = [exps.control.n_train]
    for name in (PER_SEED, REFERENCE):
        if exps.experiment(name).enabled:
            out[f"experiments.{name}.sizes"] = list(exps.experiment(name).sizes)
    return out


def _check_sources(p: Profile) -> None:
    """The labelled pool and the learned priors' sources: a pool that holds the validation set
    and every training size, class-balanced; the SimCLR prior outside the pool and the control's
    oracle prior need a pool that leaves images outside it; the control needs a size."""
    data, priors, exps = p.data, p.priors, p.experiments
    pool, classes = data.labelled_pool, downstream_classes(p)
    if pool and data.dataset == "flowers102":
        raise ProfileError("data.labelled_pool: fashion_mnist and imagefolder training images "
                           "are split into a labelled pool and an unlabelled rest; set it to 0 "
                           "for flowers102 (its official splits are used)")
    if pool:
        if pool % classes:
            raise ProfileError(f"data.labelled_pool: {pool} images cannot be split evenly over "
                               f"the {classes} downstream classes; use a multiple of {classes}")
        room = pool - (data.val_size if validation_from_pool(p) else 0)
        for key, sizes in training_sizes(p).items():
            largest = max(sizes) if 0 not in sizes else room + 1
            if largest > room:
                raise ProfileError(
                    f"{key}: {shown(sizes)} needs up to {largest} training images, but the "
                    f"labelled pool of {pool} (data.labelled_pool) leaves {room} after the "
                    f"{data.val_size} validation images; raise data.labelled_pool to at least "
                    f"{data.val_size + largest} or use smaller sizes (0, the whole pool, is "
                    "not allowed with a labelled pool)")
    needs_rest = []
    if priors.ssl_source == "outside_pool" and "ssl" in _priors_used(p):
        needs_rest.append("priors.ssl_source 'outside_pool' (the SimCLR prior's images)")
    if "oracle" in _priors_used(p):
        needs_rest.append("the oracle prior (experiments.control, or an experiment's prior "
                          "'oracle')")
    if TASK_PRIOR in _priors_used(p):
        needs_rest.append("the covariance control's task prior (experiments.covariance)")
    for what in needs_rest:
        if not pool or priors.source != "learn":
            raise ProfileError(
                f"{what} is learned from the downstream training images outside the labelled "
                "pool: it needs priors.source 'learn' and data.labelled_pool > 0 (e.g. 2500)")
    control = exps.control
    if control.enabled and control.n_train is None and not exps.inference.enabled:
        raise ProfileError("experiments.control.n_train: with the inference experiment off, "
                           "give the control's training size")
    for name in CONTROL_EXPERIMENTS:
        if exps.experiment(name).enabled and not exps.inference.tuning.enabled:
            raise ProfileError(f"experiments.{name}: a positive control is tuned like the "
                               "inference arms; set experiments.inference.tuning.enabled: true")
    if exps.covariance.enabled and control.n_train is None \
            and not exps.inference.enabled:
        raise ProfileError("experiments.control.n_train: the covariance control runs at the "
                           "control's size; with the inference experiment off, give it")


def _check_split_sizes(p: Profile) -> None:
    """`tuning.selection: split` holds out images of every class of each training subset: each
    tuned size needs at least 2 images per class (balanced subsets)."""
    classes = downstream_classes(p)
    if p.data.subset_protocol != "balanced":
        raise ProfileError("experiments.inference.tuning.selection: 'split' splits every class of "
                           "a training subset; it needs data.subset_protocol 'balanced'")
    exps = p.experiments
    sizes = list(exps.inference.sizes) if exps.inference.enabled else []
    if exps.control.enabled and exps.control.n_train:
        sizes.append(exps.control.n_train)
    small = [n for n in sizes if n and n < 2 * classes]
    if small:
        raise ProfileError(
            f"experiments.inference.tuning.selection: 'split' holds out at least one image of "
            f"each of the {classes} classes, so every tuned size needs >= {2 * classes} images; "
            f"{shown(small)} are smaller: use larger sizes or selection 'validation'")


def _check_train_settings(train: TrainSection) -> None:
    """Build the training settings and the samplers' cyclical schedule now, so that their
    cross-field errors (e.g. more cycles than steps) surface before anything trains. The schema
    has already bounded steps and cycles (settings.MAX_STEPS, MAX_CYCLES), so the schedule built
    here is small (MAX_CYCLES + 1 cycle starts at most; 3e7 cycles once took 88 s and 2.4 GB)."""
    from ..sgmcmc.schedules import CyclicalSchedule

    try:
        s = TrainSettings(**as_dict(train))
        CyclicalSchedule(s.steps, s.cycles, s.lr, s.explore_fraction,
                                s.samples_per_cycle, s.burn_in_cycles)
    except ValueError as exc:
        raise ProfileError(f"train: {exc}") from None
