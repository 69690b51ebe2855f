"""The profile as a typed tree: one frozen dataclass per section, each field with its spec.

The tree IS the schema: `SCHEMA` (the nested mapping of `Field`s the loader validates against) is
derived from these classes, each field's spec given once (`key(...)`), the settings' sections
(`train`, `priors.learning`) taking their fields and ranges from `settings`. The loader
(`validation.validate_profile`) checks a raw mapping against `SCHEMA`, keeping its messages, and
returns a `Profile`; nothing below the loader reads a profile by string keys.
`Profile.to_dict()` is the validated mapping, the one that run identities digest.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from ..settings import (
    MAX_STEPS,
    PRECISIONS,
    PriorLearningSettings,
    PriorParameters,
    TrainSettings,
)
from ..vocabulary import (
    ARMS,
    EXPERIMENTS,
    PRIOR_NAMES,
    SGD_ISOTROPIC,
    SGD_LEARNED,
    SGD_TASK,
    SGD_ZERO,
    SSL,
    SUPERVISED,
)
from .fields import Field, _choice, _int, _like, _list_like, _num, settings_field
from .schema import (
    DATASETS,
    MAX_EVAL_SEEDS,
    MAX_IMAGES,
    MAX_PACK,
    MAX_SEED_ID,
    MAX_SEEDS,
    MAX_WORKERS,
    PROTOCOLS,
    SSL_SOURCES,
)


def key(spec: Field) -> Any:
    """A profile key: its spec (type, default, bounds or choices) and that default."""
    default = spec.default
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"spec": spec})
    return dataclasses.field(default=default, metadata={"spec": spec})


def section(cls: type) -> Any:
    """A nested section of the profile: the dataclass `cls`, its defaults by default."""
    return dataclasses.field(default_factory=cls, metadata={"section": cls})


@dataclass(frozen=True)
class DataSection:
    """The profile's `data` section."""

    dataset: str = key(_choice(*DATASETS))
    # fashion_mnist / flowers102: where the files are; imagefolder: the folder holding
    # train/<class>/*, test/<class>/* and optionally val/<class>/*
    root: str | None = key(Field(str, None, nullable=True))
    # imagefolder: side of the square the images are resized and centre-cropped to
    image_size: int = key(_int(8, 1024, 32))
    # imagefolder: training augmentations on the device (any of crop, flip, rotation);
    # null: none
    augment: list[str] | None = key(Field(list, None, items=str, nullable=True))
    # imagefolder: per-channel normalisation; null: the training images' own mean and std
    mean: list[float] | None = key(Field(list, None, items=float, nullable=True, lo=-10.0, hi=10.0))
    std: list[float] | None = key(Field(list, None, items=float, nullable=True, lo=1e-6, hi=10.0))
    download: bool = key(Field(bool, False))
    subset_protocol: str = key(_choice("balanced", "reproduction"))
    test_size: int = key(_int(0, MAX_IMAGES, 0))
    # class-balanced validation set drawn once from the labelled pool and kept out of every
    # training subset (flowers102: a class-balanced subset of the official validation split);
    # 0 turns validation (and so tuning) off
    val_size: int = key(_int(0, MAX_IMAGES, 0))
    # the downstream classes' training images that carry labels: a class-balanced pool
    # drawn once, from which the validation set and every training subset come; the other
    # downstream training images are used by prior learning only (SimCLR without labels,
    # the control's oracle prior with them). 0: every downstream training image is in it
    labelled_pool: int = key(_int(0, MAX_IMAGES, 0))


@dataclass(frozen=True)
class PriorFiles:
    """The profile's `priors.files` section."""

    ssl: str | None = key(Field(str, None, nullable=True))
    supervised: str | None = key(Field(str, None, nullable=True))

    def prefix(self, name: str) -> str | None:
        """The files' prefix of prior `name` (`ssl` or `supervised`; null: not given)."""
        return getattr(self, name)


@dataclass(frozen=True)
class LearningSection(PriorLearningSettings):
    """The profile's `priors.learning` section."""

    source_train_size: int = key(_int(0, MAX_IMAGES, 0))
    # imagefolder: the priors' source images, <source_root>/<class>/* (the supervised
    # prior uses the labels, SimCLR ignores them)
    source_root: str | None = key(Field(str, None, nullable=True))

    def __post_init__(self) -> None:
        pass  # the loader checks every value; its messages name the profile key


@dataclass(frozen=True)
class PriorsSection:
    """The profile's `priors` section."""

    source: str = key(_choice("learn", "files"))
    # independently learned priors per source (prior-learning seeds 0..draws-1); downstream
    # seed s uses draw s mod draws, so paired differences over seeds carry both variations
    draws: int = key(_int(1, MAX_SEEDS, 1))
    # draws of one source trained together as one packed network (each draw's prior up to
    # rounding); on 2 CPU cores at batch 128 packs measured no faster than one by one
    pack: int = key(_int(1, MAX_SEEDS, 1))
    files: PriorFiles = section(PriorFiles)
    # the SimCLR prior's images: the source classes only, or every training image of the
    # dataset outside the labelled pool (source classes and the unlabelled downstream rest,
    # as ImageNet covers CIFAR-10's classes for the paper's SimCLR prior)
    ssl_source: str = key(_choice(*SSL_SOURCES))
    # authors' files: clamp non-positive variances up to this floor (null: refuse them)
    variance_floor: float | None = key(_num(1e-30, 1.0, None, nullable=True))
    rescaling_rule: str = key(_choice("same", "authors"))
    eps: float = key(_like(PriorParameters, "eps", 0.0))
    learning: LearningSection = section(LearningSection)


@dataclass(frozen=True)
class TrainSection(TrainSettings):
    """The profile's `train` section: the fields of `TrainSettings`, checked
    by the loader (its messages name the profile key)."""

    def __post_init__(self) -> None:
        pass  # the loader has checked every value and says which key is wrong


@dataclass(frozen=True)
class Margins:
    """The profile's `claims.margins` section."""

    accuracy: float = key(_num(1e-9, 1.0, 0.01))
    nll: float = key(_num(1e-9, 100.0, 0.02))
    ece: float = key(_num(1e-9, 1.0, 0.01))
    brier: float = key(_num(1e-9, 2.0, 0.01))

    def by_metric(self) -> dict[str, float]:
        """metric -> margin, as the claims take them."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClaimsSection:
    """The profile's `claims` section."""

    # the smallest effect that matters, per metric: an interval that contains 0 gives
    # "not supported" below it and "inconclusive" when it reaches it
    margins: Margins = section(Margins)


@dataclass(frozen=True)
class RankExperiment:
    """The profile's `experiments.rank` section."""

    enabled: bool = key(Field(bool, True))
    prior: str = key(_choice(*PRIOR_NAMES))
    method: str = key(_choice("sghmc", "sgld", "sgd_prior"))
    scale: float = key(_like(PriorParameters, "scale", 1e3))
    # every rank at each of these scales (null: [scale]); C1 is judged at the scale
    # where the best rank's validation NLL is lowest, where the prior binds
    scales: list[float] | None = key(_list_like(PriorParameters, "scale", None, nullable=True))
    ranks: list[int] = key(_list_like(PriorLearningSettings, "max_rank", [0, 1, 2, 5, 10]))
    seeds: int | None = key(_int(1, MAX_SEEDS, None, nullable=True))  # null: the profile's seeds
    # also run every rank at the full-rank prior's total variance (trace)
    fixed_trace: bool = key(Field(bool, True))
    n_train: int = key(_int(0, MAX_IMAGES, 50))


@dataclass(frozen=True)
class ScaleExperiment:
    """The profile's `experiments.scale` section."""

    enabled: bool = key(Field(bool, True))
    priors: list[str] = key(Field(list, [SUPERVISED, SSL], items=str))
    method: str = key(_choice("sghmc", "sgld", "sgd_prior"))
    scales: list[float] = key(_list_like(PriorParameters, "scale", [10.0**e for e in range(10)]))
    # conventions swept: every rule x eps pair (the profile's priors.rescaling_rule and
    # priors.eps give the headline verdict and must be among them)
    # null: [priors.rescaling_rule]
    rules: list[str] | None = key(Field(list, None, items=str, nullable=True))
    # null: [priors.eps]
    eps: list[float] | None = key(_list_like(PriorParameters, "eps", None, nullable=True))
    # a run trained from scratch (no pretraining, SGD, no prior) per seed: "no prior"
    scratch: bool = key(Field(bool, True))
    rank: int = key(_like(PriorLearningSettings, "max_rank", 10))
    n_train: int = key(_int(0, MAX_IMAGES, 50))
    seeds: int | None = key(_int(1, MAX_SEEDS, None, nullable=True))


@dataclass(frozen=True)
class Evaluation:
    """The profile's `experiments.inference.evaluation` section."""

    first_seed: int = key(_int(0, MAX_SEED_ID, 1000))
    # seeds of the SGD-type arms (and of the controls at their size); null: the
    # power target's count (`target_mde`, `pilot_sd`), else the profile's seeds
    seeds: list[int] | None = key(
        Field(list, None, items=int, nullable=True, lo=1, hi=MAX_EVAL_SEEDS))
    # seeds of the sampler arms (each seed is `chains` runs) and of their controls
    # (T = 0 ensemble, deep ensemble, long SGD), the first of the SGD-type arms'
    # (which run on at least these); null: `seeds`
    sampler_seeds: list[int] | None = key(
        Field(list, None, items=int, nullable=True, lo=1, hi=MAX_EVAL_SEEDS))
    # power by design: the paired SD over seeds expected at each size (accuracy,
    # the noisiest claim's; a pilot study's) and the minimum detectable effect
    # wanted there at the claims' corrected level; seeds follow from both
    pilot_sd: list[float] | None = key(
        Field(list, None, items=float, nullable=True, lo=1e-6, hi=1.0))
    target_mde: list[float] | None = key(
        Field(list, None, items=float, nullable=True, lo=1e-4, hi=1.0))


@dataclass(frozen=True)
class Tuning:
    """The profile's `experiments.inference.tuning` section."""

    enabled: bool = key(Field(bool, False))
    # the learned prior's scale; the zero and isotropic priors' variance; sgd's
    # weight decay
    scales: list[float] = key(_list_like(PriorParameters, "scale", [1e1, 1e3, 1e5, 1e7, 1e9]))
    variances: list[float] = key(
        _list_like(PriorParameters, "variance", [1e-3, 0.03, 1.0, 30.0, 1e3]))
    weight_decays: list[float] = key(
        _list_like(TrainSettings, "weight_decay", [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]))
    # learning rates every arm is tuned over too (crossed with its strength grid);
    # null: train.lr only
    lrs: list[float] | None = key(_list_like(TrainSettings, "lr", None, nullable=True))
    # what scores a tuning run: the fixed validation set (`validation`), or, as
    # Harvey et al. do, a split of each training subset (`split`: fit on 4/5 of
    # every class, score on the held-out 1/5, at least one image; the chosen point
    # is then trained on all n); with a validation set too, the report compares
    # the two choices
    selection: str = key(_choice("validation", "split"))
    # protocol `fixed`: the tuning seeds 0 .. seeds - 1 whose validation NLL, pooled,
    # fixes each arm's setting per size (at least 3)
    seeds: int = key(_int(1, MAX_SEEDS, 3))


@dataclass(frozen=True)
class InferenceExperiment:
    """The profile's `experiments.inference` section."""

    enabled: bool = key(Field(bool, True))
    prior: str = key(_choice(*PRIOR_NAMES))
    bayes_method: str = key(_choice("sghmc", "sgld"))
    # `ensemble+learned`: the sampler's schedule and samples at temperature 0 (a cyclical
    # snapshot ensemble), the control that separates "Bayesian" from "ensembling"
    arms: list[str] = key(Field(list, list(ARMS[:3]) + list(ARMS[4:]), items=str))
    scale: float = key(_like(PriorParameters, "scale", 1e3))
    rank: int = key(_like(PriorLearningSettings, "max_rank", 10))
    sizes: list[int] = key(Field(list, [5, 10, 50, 250], items=int, lo=0, hi=MAX_IMAGES))
    # `fixed` (the headline protocol): every arm's setting per size is fixed once, by
    # the validation NLL pooled over the tuning seeds, then evaluated on evaluation seeds
    # that never entered selection; `per_seed`: every seed tunes its own setting
    # (Harvey et al.), that seed's final run is evaluated
    protocol: str = key(_choice(*PROTOCOLS))
    # training steps per size (a list aligned with `sizes`; null: train.steps): steps
    # grow with n so that every arm is trained to convergence at every size
    steps: list[int] | None = key(Field(list, None, items=int, nullable=True, lo=1, hi=MAX_STEPS))
    # protocol `fixed`: the evaluation seeds, first_seed, first_seed + 1, ..., never
    # tuning seeds (0 .. tuning.seeds - 1); per size (lists aligned with `sizes`)
    evaluation: Evaluation = section(Evaluation)
    # null: the rescaled learned prior's average variance (trace-matched); used when
    # tuning is off
    nonlearned_variance: float | None = key(_like(PriorParameters, "variance", None, nullable=True))
    # every arm tuned on the validation split over a grid of its strength parameter, the
    # same number of values for every arm; selection by validation NLL per (size, seed)
    tuning: Tuning = section(Tuning)
    seeds: int | None = key(_int(1, MAX_SEEDS, None, nullable=True))
    # chains of each sampler arm's final run (and of the T = 0 ensemble): their model
    # averages are pooled, and whether they converged (R-hat and bulk ESS over the
    # chains) is stated beside C4 / C4b
    chains: int = key(_int(1, MAX_SEEDS, 4))
    # `deep_ensemble+learned`: the chosen `sgd+learned` run trained `chains` times (own
    # batches, head init), the members' predictions averaged like a sampler's chains:
    # the sampler's total gradient budget spent on an ensemble instead
    deep_ensemble: bool = key(Field(bool, True))
    # `sgd_long+learned`: the chosen `sgd+learned` run trained `chains` times as many
    # steps (one run, its cosine schedule stretched): the sampler's total budget in
    # one SGD run, a control of C4
    long_sgd: bool = key(Field(bool, True))


@dataclass(frozen=True)
class ControlExperiment:
    """The profile's `experiments.control` section."""

    enabled: bool = key(Field(bool, False))
    arms: list[str] = key(Field(list, [SGD_LEARNED, SGD_ZERO, SGD_ISOTROPIC], items=str))
    # null: the smallest inference size
    n_train: int | None = key(_int(0, MAX_IMAGES, None, nullable=True))


@dataclass(frozen=True)
class CovarianceExperiment:
    """The profile's `experiments.covariance` section."""

    enabled: bool = key(Field(bool, False))
    arms: list[str] = key(Field(list, [SGD_TASK, SGD_ISOTROPIC], items=str))
    # the share of the total variance along the task directions (the rest isotropic)
    share: float = key(_num(0.01, 0.99, 0.5))


@dataclass(frozen=True)
class PerSeedExperiment:
    """The profile's `experiments.per_seed` section."""

    enabled: bool = key(Field(bool, False))
    arms: list[str] = key(Field(list, [SGD_LEARNED, SGD_ZERO], items=str))
    sizes: list[int] = key(Field(list, [10], items=int, lo=1, hi=MAX_IMAGES))
    seeds: int = key(_int(1, MAX_SEEDS, 20))
    first_seed: int = key(_int(0, MAX_SEED_ID, 2000))
    selection: str = key(_choice("split", "validation"))


@dataclass(frozen=True)
class ReferenceExperiment:
    """The profile's `experiments.reference` section."""

    enabled: bool = key(Field(bool, False))
    sizes: list[int] = key(Field(list, [10], items=int, lo=1, hi=MAX_IMAGES))
    # evaluation seeds from experiments.inference.evaluation.first_seed
    seeds: int = key(_int(3, MAX_EVAL_SEEDS, 10))
    temperatures: list[float] = key(Field(list, [0.1, 0.3, 1.0, 3.0], items=float, lo=1e-3, hi=1e3))
    curve_seeds: int = key(_int(1, MAX_EVAL_SEEDS, 3))  # the first seeds run every temperature
    chains: int = key(_int(2, MAX_SEEDS, 4))
    draws: int = key(_int(10, 100_000, 1000))
    warmup: int = key(_int(10, 100_000, 500))
    leapfrog: int = key(_int(1, 1000, 10))
    # the prior variance of the head's weights and biases (a proper prior)
    head_variance: float = key(_num(1e-6, 1e6, 1.0))


@dataclass(frozen=True)
class TemperatureExperiment:
    """The profile's `experiments.temperature` section."""

    enabled: bool = key(Field(bool, False))
    prior: str = key(_choice(*PRIOR_NAMES))
    method: str = key(_choice("sghmc", "sgld"))
    temperatures: list[float] = key(
        _list_like(TrainSettings, "temperature", [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]))
    chains: int = key(_int(1, MAX_SEEDS, 3))  # chains per (temperature, seed), for split R-hat
    scale: float = key(_like(PriorParameters, "scale", 1e5))
    rank: int = key(_like(PriorLearningSettings, "max_rank", 10))
    n_train: int = key(_int(0, MAX_IMAGES, 50))
    seeds: int | None = key(_int(1, MAX_SEEDS, 1, nullable=True))


@dataclass(frozen=True)
class Experiments:
    """The profile's `experiments` section."""

    rank: RankExperiment = section(RankExperiment)
    scale: ScaleExperiment = section(ScaleExperiment)
    inference: InferenceExperiment = section(InferenceExperiment)
    # the positive control (claim PC): an oracle prior (supervised SWAG on labelled
    # downstream-class images outside the labelled pool) against the tuned zero-mean and
    # isotropic priors, with the inference experiment's tuning, seeds and draws
    control: ControlExperiment = section(ControlExperiment)
    # the covariance control (claim PC2): a prior whose low-rank covariance spans the
    # directions from the SimCLR weights to those weights fine-tuned on the downstream rest
    # WITH labels (task information no training, validation or test image gives), at the
    # SimCLR mean and with the isotropic prior's trace, against that isotropic prior; both
    # tuned over the same variances, at the control's size, with the inference protocol
    covariance: CovarianceExperiment = section(CovarianceExperiment)
    # the per-seed protocol beside the headline one (Harvey et al.): each seed tunes its
    # own setting (by `selection`) and its final run is evaluated; seeds from first_seed
    per_seed: PerSeedExperiment = section(PerSeedExperiment)
    # a reference posterior (claim C4p): the head on the pretrained backbone's fixed
    # features, sampled exactly by Metropolis-adjusted HMC at T = 1, against SGD and the
    # paper's SGHMC recipe on the same subspace; a temperature curve on it
    reference: ReferenceExperiment = section(ReferenceExperiment)
    temperature: TemperatureExperiment = section(TemperatureExperiment)

    def experiment(self, name: str) -> Any:
        """The section of experiment `name` (one of `vocabulary.EXPERIMENTS`)."""
        if name not in EXPERIMENTS:
            raise KeyError(f"no experiment {name!r}; the experiments are {', '.join(EXPERIMENTS)}")
        return getattr(self, name)

    def enabled(self) -> list[str]:
        """The names of the enabled experiments, in the study's order."""
        return [name for name in EXPERIMENTS if getattr(self, name).enabled]


@dataclass(frozen=True)
class Profile:
    """A validated profile: every key typed and complete (`load_profile` builds it)."""

    name: str = key(Field(str, None))
    description: str = key(Field(str, ""))
    device: str = key(_choice("auto", "cpu", "cuda", "mps"))
    seeds: int = key(_int(1, MAX_SEEDS, 5))
    workers: int = key(_int(1, MAX_WORKERS, 1))
    # where packs run: processes of this machine, or Ray tasks (study/ray_backend.py)
    backend: str = key(_choice("local", "ray"))
    pack: int | str = key(Field(int, 1, lo=1, hi=MAX_PACK, auto=True))
    precision: str = key(_choice(*PRECISIONS))
    # small_resnet, resnet50, or torchvision:<name> (any torchvision classification model)
    model: str = key(Field(str, "small_resnet"))
    # a local state dict for a torchvision model (its classifier's keys ignored): where prior
    # learning starts (nothing is downloaded)
    model_weights: str | None = key(Field(str, None, nullable=True))
    data: DataSection = section(DataSection)
    priors: PriorsSection = section(PriorsSection)
    train: TrainSection = section(TrainSection)
    claims: ClaimsSection = section(ClaimsSection)
    experiments: Experiments = section(Experiments)

    def to_dict(self) -> dict[str, Any]:
        """The profile as the validated mapping (plain dicts and lists): what run ids digest."""
        return dataclasses.asdict(self)

    def replace(self, path: str, value: Any) -> Profile:
        """A copy with the key at dotted `path` (e.g. "priors.draws") set to `value`, unchecked;
        a mapping given for a section (or for the whole profile, path "") sets the keys it
        names and keeps the others. For tests and programmatic variants: load a YAML file to
        have a profile checked."""
        return _replaced(self, path.split(".") if path else [], value)


def as_dict(section: Any) -> dict[str, Any]:
    """A section's keys and values as a plain mapping (for run configs and settings)."""
    return dataclasses.asdict(section)


def _replaced(node: Any, keys: list[str], value: Any) -> Any:
    if not keys:
        return _merged(node, value)
    names = {f.name: f for f in dataclasses.fields(node)}
    if keys[0] not in names:
        raise KeyError(f"no key {keys[0]!r} in {type(node).__name__}; its keys are "
                       f"{', '.join(sorted(names))}")
    value = _replaced(getattr(node, keys[0]), keys[1:], value) if len(keys) > 1 or (
        "section" in names[keys[0]].metadata) else value
    return dataclasses.replace(node, **{keys[0]: value})


def _merged(node: Any, values: Any) -> Any:
    """Section `node` with the keys of mapping `values` set (nested mappings merged too)."""
    if isinstance(values, type(node)):
        return values
    if not isinstance(values, dict):
        raise TypeError(f"{type(node).__name__} is a section: give a mapping of its keys, "
                        f"not {values!r}")
    return functools.reduce(lambda n, kv: _replaced(n, [kv[0]], kv[1]), values.items(), node)


def _spec(f: dataclasses.Field) -> Field:
    """The spec of one field: given with `key`, or taken from a settings class's field."""
    return f.metadata["spec"] if "spec" in f.metadata else settings_field(f)


def schema_of(cls: type) -> dict[str, Any]:
    """The nested mapping of specs that the loader validates a section of type `cls` against."""
    return {f.name: schema_of(f.metadata["section"]) if "section" in f.metadata else _spec(f)
            for f in dataclasses.fields(cls)}


def from_mapping(cls: type, values: dict) -> Any:
    """A section of type `cls` from a validated mapping (every key present)."""
    return cls(**{f.name: from_mapping(f.metadata["section"], values[f.name])
                  if "section" in f.metadata else values[f.name]
                  for f in dataclasses.fields(cls)})


SCHEMA: dict[str, Any] = schema_of(Profile)
