"""Profiles: YAML files in `params/`, validated completely before anything trains.

A profile is checked against `SCHEMA`: every key must be known (an unknown key is answered with
the key it most likely means, when one fits), every value must have the right type and lie in its
allowed range, and defaults fill what the file leaves out. Ranges come from one place: a value
that becomes a training setting or a prior parameter has the range of the field it becomes
(`settings`); every number has an upper bound, and every float must be usable in float32. The
result is a plain nested dict, so it can be hashed, stored in result files and passed to
papermill notebooks unchanged. Messages show values shortened (`shown`), never unbounded.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import reprlib
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .settings import (
    MAX_STEPS,
    PRECISIONS,
    PriorLearningSettings,
    PriorParameters,
    TrainSettings,
    field_meta,
    float32_problem,
    range_text,
)
from .vocabulary import (
    ARMS,
    CHAINED_ARM_METHODS,
    CONTROL_EXPERIMENTS,
    COVARIANCE_ARMS,
    ONE_PRIOR_EXPERIMENTS,
    PER_SEED,
    PRIOR_NAMES,
    RANK,
    REFERENCE,
    SCALE,
    SGD_ISOTROPIC,
    SGD_LEARNED,
    SGD_TASK,
    SGD_ZERO,
    SGLD_LEARNED,
    SSL,
    SUPERVISED,
    TASK_PRIOR,
    TEMPERATURE,
    TUNED_EXPERIMENTS,
    arm_parts,
)

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"


class ProfileError(ValueError):
    """A profile is invalid; the message says what is wrong and what would be right."""


SHOWN_LENGTH = 80  # the most characters of a value a message shows
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN_LENGTH
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 10
_REPR.maxlevel = 3


def clip(text: str, limit: int = SHOWN_LENGTH) -> str:
    """`text` cut to `limit` characters, '...' marking the cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any) -> str:
    """repr(value) for a message, at most SHOWN_LENGTH characters: computed without expanding
    the value (reprlib), since a value may be huge (a YAML alias bomb expands to millions)."""
    try:
        return clip(_REPR.repr(value))
    except ValueError:  # an int of more than 4300 digits has no repr
        return f"<{type(value).__name__} too large to show>"


@dataclass(frozen=True)
class Field:
    """One profile value: its type, default and allowed range or choices."""

    kind: type | tuple[type, ...]
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    items: type | None = None  # element type for lists
    auto: bool = False  # the string 'auto' is allowed too

    def describe(self) -> str:
        """What the value may be, completely: type, both bounds or the choices, null."""
        rng = range_text(self.lo, self.hi)
        if self.auto:
            return f"'auto' or an integer {rng}"
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        name = getattr(self.kind, "__name__", str(self.kind))
        if self.items is not None:
            name = f"a list of {self.items.__name__}" + (" each" if rng else "")
        text = name + (f" {rng}" if rng else "")
        return text + (" or null" if self.nullable else "")


def _num(lo=None, hi=None, default=None, nullable=False) -> Field:
    return Field(float, default, lo, hi, nullable=nullable)


def _int(lo=None, hi=None, default=None, nullable=False) -> Field:
    return Field(int, default, lo, hi, nullable=nullable)


def _choice(*choices, default=None) -> Field:
    return Field(str, default if default is not None else choices[0], choices=choices)


def _like(cls: type, name: str, default: Any, nullable: bool = False) -> Field:
    """A profile value that becomes field `name` of settings class `cls`: its type and range."""
    meta = field_meta(cls, name)
    kind = next(f for f in dataclasses.fields(cls) if f.name == name).type
    return Field(_TYPES[kind], default, meta["lo"], meta["hi"], nullable=nullable)


def _list_like(cls: type, name: str, default: Any, nullable: bool = False) -> Field:
    """A list of values that each become field `name` of `cls` (a grid or a sweep)."""
    one = _like(cls, name, None)
    return Field(list, default, one.lo, one.hi, nullable=nullable, items=one.kind)


_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "float | None": float}


def _section_from(settings_cls) -> dict[str, Field]:
    """A profile section derived from a settings dataclass: one key per field, with the
    field's default and its declared range (`settings.setting`)."""
    section = {}
    for f in dataclasses.fields(settings_cls):
        meta = f.metadata
        section[f.name] = Field(_TYPES[f.type], f.default, meta["lo"], meta["hi"],
                                meta["choices"], meta["nullable"])
    return section


# Bounds of the profile's own numbers (the settings' bounds live with them, in `settings`).
MAX_SEEDS = 100  # seeds, prior draws, chains: each multiplies the number of runs
# evaluation seeds per size: a power target can ask for ~100 at n = 10 (README, "Power")
MAX_EVAL_SEEDS = 1000
MAX_SEED_ID = 1_000_000  # the first evaluation seed: any offset that keeps seeds distinct
MIN_TUNING_SEEDS = 3  # a setting fixed from fewer seeds is the draw of those seeds
MAX_WORKERS = 64  # worker processes (about 1 GB of memory each); also <= this machine's cores
MAX_PACK = 4096  # runs trained together as one network
MAX_IMAGES = 10_000_000  # training, validation and test sizes: more than any data set read here

PROTOCOLS = ("fixed", "per_seed")
# where each learned prior's images come from (study/sources.py); `oracle` only for the control
SSL_SOURCES = ("source_classes", "outside_pool")
MIN_GRID = 5  # values per tuned arm: enough to reach both the strong and the weak side
MIN_CHAINS = 4  # chains behind every convergence-gated claim (rank-normalised R-hat, ESS)
DATASETS = ("fashion_mnist", "flowers102", "imagefolder")
CLASS_COUNTS = {"fashion_mnist": 5, "flowers102": 102}  # imagefolder: its class folders


def downstream_classes(p: dict) -> int:
    """How many classes the downstream task has (an image folder: its train/ class folders)."""
    data = p["data"]
    if data["dataset"] != "imagefolder":
        return CLASS_COUNTS[data["dataset"]]
    from .imagefolder import scan_root

    return len(scan_root(data["root"])["train"].classes)

SCHEMA: dict[str, Any] = {
    "name": Field(str, None),
    "description": Field(str, ""),
    "device": _choice("auto", "cpu", "cuda", "mps"),
    "seeds": _int(1, MAX_SEEDS, 5),
    "workers": _int(1, MAX_WORKERS, 1),
    # where packs run: processes of this machine, or Ray tasks (study/ray_backend.py)
    "backend": _choice("local", "ray"),
    "pack": Field(int, 1, lo=1, hi=MAX_PACK, auto=True),
    "precision": _choice(*PRECISIONS),
    # small_resnet, resnet50, or torchvision:<name> (any torchvision classification model)
    "model": Field(str, "small_resnet"),
    # a local state dict for a torchvision model (its classifier's keys ignored): where prior
    # learning starts (nothing is downloaded)
    "model_weights": Field(str, None, nullable=True),
    "data": {
        "dataset": _choice(*DATASETS),
        # fashion_mnist / flowers102: where the files are; imagefolder: the folder holding
        # train/<class>/*, test/<class>/* and optionally val/<class>/*
        "root": Field(str, None, nullable=True),
        # imagefolder: side of the square the images are resized and centre-cropped to
        "image_size": _int(8, 1024, 32),
        # imagefolder: training augmentations on the device (any of crop, flip, rotation);
        # null: none
        "augment": Field(list, None, items=str, nullable=True),
        # imagefolder: per-channel normalisation; null: the training images' own mean and std
        "mean": Field(list, None, items=float, nullable=True, lo=-10.0, hi=10.0),
        "std": Field(list, None, items=float, nullable=True, lo=1e-6, hi=10.0),
        "download": Field(bool, False),
        "subset_protocol": _choice("balanced", "reproduction"),
        "test_size": _int(0, MAX_IMAGES, 0),
        # class-balanced validation set drawn once from the labelled pool and kept out of every
        # training subset (flowers102: a class-balanced subset of the official validation split);
        # 0 turns validation (and so tuning) off
        "val_size": _int(0, MAX_IMAGES, 0),
        # the downstream classes' training images that carry labels: a class-balanced pool
        # drawn once, from which the validation set and every training subset come; the other
        # downstream training images are used by prior learning only (SimCLR without labels,
        # the control's oracle prior with them). 0: every downstream training image is in it
        "labelled_pool": _int(0, MAX_IMAGES, 0),
    },
    "priors": {
        "source": _choice("learn", "files"),
        # independently learned priors per source (prior-learning seeds 0..draws-1); downstream
        # seed s uses draw s mod draws, so paired differences over seeds carry both variations
        "draws": _int(1, MAX_SEEDS, 1),
        # draws of one source trained together as one packed network (each draw's prior up to
        # rounding); on 2 CPU cores at batch 128 packs measured no faster than one by one
        "pack": _int(1, MAX_SEEDS, 1),
        "files": {"ssl": Field(str, None, nullable=True),
                  "supervised": Field(str, None, nullable=True)},
        # the SimCLR prior's images: the source classes only, or every training image of the
        # dataset outside the labelled pool (source classes and the unlabelled downstream rest,
        # as ImageNet covers CIFAR-10's classes for the paper's SimCLR prior)
        "ssl_source": _choice(*SSL_SOURCES),
        # authors' files: clamp non-positive variances up to this floor (null: refuse them)
        "variance_floor": _num(1e-30, 1.0, None, nullable=True),
        "rescaling_rule": _choice("same", "authors"),
        "eps": _like(PriorParameters, "eps", 0.0),
        "learning": {
            "source_train_size": _int(0, MAX_IMAGES, 0),
            # imagefolder: the priors' source images, <source_root>/<class>/* (the supervised
            # prior uses the labels, SimCLR ignores them)
            "source_root": Field(str, None, nullable=True),
            **_section_from(PriorLearningSettings),
        },
    },
    "train": _section_from(TrainSettings),
    "claims": {
        # the smallest effect that matters, per metric: an interval that contains 0 gives
        # "not supported" below it and "inconclusive" when it reaches it
        "margins": {"accuracy": _num(1e-9, 1.0, 0.01), "nll": _num(1e-9, 100.0, 0.02),
                    "ece": _num(1e-9, 1.0, 0.01), "brier": _num(1e-9, 2.0, 0.01)},
    },
    "experiments": {
        "rank": {
            "enabled": Field(bool, True),
            "prior": _choice(*PRIOR_NAMES),
            "method": _choice("sghmc", "sgld", "sgd_prior"),
            "scale": _like(PriorParameters, "scale", 1e3),
            # every rank at each of these scales (null: [scale]); C1 is judged at the scale
            # where the best rank's validation NLL is lowest, where the prior binds
            "scales": _list_like(PriorParameters, "scale", None, nullable=True),
            "ranks": _list_like(PriorLearningSettings, "max_rank", [0, 1, 2, 5, 10]),
            "seeds": _int(1, MAX_SEEDS, None, nullable=True),  # null: the profile's seeds
            # also run every rank at the full-rank prior's total variance (trace)
            "fixed_trace": Field(bool, True),
            "n_train": _int(0, MAX_IMAGES, 50),
        },
        "scale": {
            "enabled": Field(bool, True),
            "priors": Field(list, [SUPERVISED, SSL], items=str),
            "method": _choice("sghmc", "sgld", "sgd_prior"),
            "scales": _list_like(PriorParameters, "scale", [10.0**e for e in range(10)]),
            # conventions swept: every rule x eps pair (the profile's priors.rescaling_rule and
            # priors.eps give the headline verdict and must be among them)
            "rules": Field(list, None, items=str, nullable=True),  # null: [priors.rescaling_rule]
            "eps": _list_like(PriorParameters, "eps", None, nullable=True),  # null: [priors.eps]
            # a run trained from scratch (no pretraining, SGD, no prior) per seed: "no prior"
            "scratch": Field(bool, True),
            "rank": _like(PriorLearningSettings, "max_rank", 10),
            "n_train": _int(0, MAX_IMAGES, 50),
            "seeds": _int(1, MAX_SEEDS, None, nullable=True),
        },
        "inference": {
            "enabled": Field(bool, True),
            "prior": _choice(*PRIOR_NAMES),
            "bayes_method": _choice("sghmc", "sgld"),
            # `ensemble+learned`: the sampler's schedule and samples at temperature 0 (a cyclical
            # snapshot ensemble), the control that separates "Bayesian" from "ensembling"
            "arms": Field(list, list(ARMS[:3]) + list(ARMS[4:]), items=str),
            "scale": _like(PriorParameters, "scale", 1e3),
            "rank": _like(PriorLearningSettings, "max_rank", 10),
            "sizes": Field(list, [5, 10, 50, 250], items=int, lo=0, hi=MAX_IMAGES),
            # `fixed` (the headline protocol): every arm's setting per size is fixed once, by
            # the validation NLL pooled over the tuning seeds, then evaluated on evaluation seeds
            # that never entered selection; `per_seed`: every seed tunes its own setting
            # (Harvey et al.), that seed's final run is evaluated
            "protocol": _choice(*PROTOCOLS),
            # training steps per size (a list aligned with `sizes`; null: train.steps): steps
            # grow with n so that every arm is trained to convergence at every size
            "steps": Field(list, None, items=int, nullable=True, lo=1, hi=MAX_STEPS),
            # protocol `fixed`: the evaluation seeds, first_seed, first_seed + 1, ..., never
            # tuning seeds (0 .. tuning.seeds - 1); per size (lists aligned with `sizes`)
            "evaluation": {
                "first_seed": _int(0, MAX_SEED_ID, 1000),
                # seeds of the SGD-type arms (and of the controls at their size); null: the
                # power target's count (`target_mde`, `pilot_sd`), else the profile's seeds
                "seeds": Field(list, None, items=int, nullable=True, lo=1, hi=MAX_EVAL_SEEDS),
                # seeds of the sampler arms (each seed is `chains` runs) and of their controls
                # (T = 0 ensemble, deep ensemble, long SGD), the first of the SGD-type arms'
                # (which run on at least these); null: `seeds`
                "sampler_seeds": Field(list, None, items=int, nullable=True, lo=1,
                                       hi=MAX_EVAL_SEEDS),
                # power by design: the paired SD over seeds expected at each size (accuracy,
                # the noisiest claim's; a pilot study's) and the minimum detectable effect
                # wanted there at the claims' corrected level; seeds follow from both
                "pilot_sd": Field(list, None, items=float, nullable=True, lo=1e-6, hi=1.0),
                "target_mde": Field(list, None, items=float, nullable=True, lo=1e-4, hi=1.0),
            },
            # null: the rescaled learned prior's average variance (trace-matched); used when
            # tuning is off
            "nonlearned_variance": _like(PriorParameters, "variance", None, nullable=True),
            # every arm tuned on the validation split over a grid of its strength parameter, the
            # same number of values for every arm; selection by validation NLL per (size, seed)
            "tuning": {
                "enabled": Field(bool, False),
                # the learned prior's scale; the zero and isotropic priors' variance; sgd's
                # weight decay
                "scales": _list_like(PriorParameters, "scale", [1e1, 1e3, 1e5, 1e7, 1e9]),
                "variances": _list_like(PriorParameters, "variance",
                                        [1e-3, 0.03, 1.0, 30.0, 1e3]),
                "weight_decays": _list_like(TrainSettings, "weight_decay",
                                            [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]),
                # learning rates every arm is tuned over too (crossed with its strength grid);
                # null: train.lr only
                "lrs": _list_like(TrainSettings, "lr", None, nullable=True),
                # what scores a tuning run: the fixed validation set (`validation`), or, as
                # Harvey et al. do, a split of each training subset (`split`: fit on 4/5 of
                # every class, score on the held-out 1/5, at least one image; the chosen point
                # is then trained on all n); with a validation set too, the report compares
                # the two choices
                "selection": _choice("validation", "split"),
                # protocol `fixed`: the tuning seeds 0 .. seeds - 1 whose validation NLL, pooled,
                # fixes each arm's setting per size (at least 3)
                "seeds": _int(1, MAX_SEEDS, 3),
            },
            "seeds": _int(1, MAX_SEEDS, None, nullable=True),
            # chains of each sampler arm's final run (and of the T = 0 ensemble): their model
            # averages are pooled, and C4 / C4b are judged only where they converged (R-hat
            # and bulk ESS over the chains)
            "chains": _int(1, MAX_SEEDS, 4),
            # `deep_ensemble+learned`: the chosen `sgd+learned` run trained `chains` times (own
            # batches, head init), the members' predictions averaged like a sampler's chains:
            # the sampler's total gradient budget spent on an ensemble instead
            "deep_ensemble": Field(bool, True),
            # `sgd_long+learned`: the chosen `sgd+learned` run trained `chains` times as many
            # steps (one run, its cosine schedule stretched): the sampler's total budget in
            # one SGD run, a control of C4
            "long_sgd": Field(bool, True),
        },
        # the positive control (claim PC): an oracle prior (supervised SWAG on labelled
        # downstream-class images outside the labelled pool) against the tuned zero-mean and
        # isotropic priors, with the inference experiment's tuning, seeds and draws
        "control": {
            "enabled": Field(bool, False),
            "arms": Field(list, [SGD_LEARNED, SGD_ZERO, SGD_ISOTROPIC], items=str),
            # null: the smallest inference size
            "n_train": _int(0, MAX_IMAGES, None, nullable=True),
        },
        # the covariance control (claim PC2): a prior whose low-rank covariance spans the
        # directions from the SimCLR weights to those weights fine-tuned on the downstream rest
        # WITH labels (task information no training, validation or test image gives), at the
        # SimCLR mean and with the isotropic prior's trace, against that isotropic prior; both
        # tuned over the same variances, at the control's size, with the inference protocol
        "covariance": {
            "enabled": Field(bool, False),
            "arms": Field(list, [SGD_TASK, SGD_ISOTROPIC], items=str),
            # the share of the total variance along the task directions (the rest isotropic)
            "share": _num(0.01, 0.99, 0.5),
        },
        # the per-seed protocol beside the headline one (Harvey et al.): each seed tunes its
        # own setting (by `selection`) and its final run is evaluated; seeds from first_seed
        "per_seed": {
            "enabled": Field(bool, False),
            "arms": Field(list, [SGD_LEARNED, SGD_ZERO], items=str),
            "sizes": Field(list, [10], items=int, lo=1, hi=MAX_IMAGES),
            "seeds": _int(1, MAX_SEEDS, 20),
            "first_seed": _int(0, MAX_SEED_ID, 2000),
            "selection": _choice("split", "validation"),
        },
        # a reference posterior (claim C4p): the head on the pretrained backbone's fixed
        # features, sampled exactly by Metropolis-adjusted HMC at T = 1, against SGD and the
        # paper's SGHMC recipe on the same subspace; a temperature curve on it
        "reference": {
            "enabled": Field(bool, False),
            "sizes": Field(list, [10], items=int, lo=1, hi=MAX_IMAGES),
            # evaluation seeds from experiments.inference.evaluation.first_seed
            "seeds": _int(3, MAX_EVAL_SEEDS, 10),
            "temperatures": Field(list, [0.1, 0.3, 1.0, 3.0], items=float, lo=1e-3, hi=1e3),
            "curve_seeds": _int(1, MAX_EVAL_SEEDS, 3),  # the first seeds run every temperature
            "chains": _int(2, MAX_SEEDS, 4),
            "draws": _int(10, 100_000, 1000),
            "warmup": _int(10, 100_000, 500),
            "leapfrog": _int(1, 1000, 10),
            # the prior variance of the head's weights and biases (a proper prior)
            "head_variance": _num(1e-6, 1e6, 1.0),
        },
        "temperature": {
            "enabled": Field(bool, False),
            "prior": _choice(*PRIOR_NAMES),
            "method": _choice("sghmc", "sgld"),
            "temperatures": _list_like(TrainSettings, "temperature",
                                       [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]),
            "chains": _int(1, MAX_SEEDS, 3),  # chains per (temperature, seed), for split R-hat
            "scale": _like(PriorParameters, "scale", 1e5),
            "rank": _like(PriorLearningSettings, "max_rank", 10),
            "n_train": _int(0, MAX_IMAGES, 50),
            "seeds": _int(1, MAX_SEEDS, 1, nullable=True),
        },
    },
}
_LIST_CHOICES = {
    ("experiments", "scale", "priors"): PRIOR_NAMES,
    ("experiments", "inference", "arms"): tuple(a for a in ARMS if a != SGLD_LEARNED),
    ("experiments", "control", "arms"): tuple(a for a in ARMS if a != SGLD_LEARNED),
    ("experiments", "covariance", "arms"): COVARIANCE_ARMS,
    ("experiments", "per_seed", "arms"): tuple(a for a in ARMS if a != SGLD_LEARNED),
    ("experiments", "scale", "rules"): ("same", "authors"),
    ("data", "augment"): ("crop", "flip", "rotation"),
}


# difflib's similarity below which a spelling is not offered (its default): no suggestion is
# better than a wrong one ('learning_rate' is not 'eval_batch_size')
SUGGEST_CUTOFF = 0.6
# what people call our keys elsewhere (PyTorch, Keras, Hydra configs)
KEY_ALIASES = {
    "learning_rate": "lr", "lr_rate": "lr", "wd": "weight_decay", "l2": "weight_decay",
    "num_steps": "steps", "n_steps": "steps", "max_steps": "steps", "iterations": "steps",
    "batch": "batch_size", "bs": "batch_size", "num_cycles": "cycles", "n_cycles": "cycles",
    "temp": "temperature", "seed": "seeds", "num_seeds": "seeds", "n_seeds": "seeds",
    "num_workers": "workers", "n_workers": "workers", "jobs": "workers", "epsilon": "eps",
    "clip": "grad_clip", "max_grad_norm": "grad_clip", "gradient_clip": "grad_clip",
}


def _suggest(key: str, valid) -> str:
    """'; did you mean X?' for the valid spelling closest to `key`, or '' when none is close."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=SUGGEST_CUTOFF)
    return f"; did you mean {close[0]!r}?" if close else ""


def _leaf_paths(schema: dict, path: str = ""):
    """The dotted path of every value of the schema."""
    for key, spec in schema.items():
        sub = f"{path}.{key}" if path else key
        yield from _leaf_paths(spec, sub) if isinstance(spec, dict) else [sub]


def _key_hint(key: str, schema: dict, path: str) -> str:
    """What an unknown key most likely means: a known alias in the same section; at the top
    level, the section(s) that hold a key of that name; else the closest spelling; or ''."""
    target = KEY_ALIASES.get(key.lower().replace("-", "_"), key.lower().replace("-", "_"))
    if target in schema:
        return f"; did you mean {target!r}?"
    if not path:
        holders = [p for p in _leaf_paths(schema) if p.rsplit(".", 1)[-1] == target]
        if holders:
            return "; did you mean " + " or ".join(repr(h) for h in holders) + "?"
    return _suggest(key, schema)


def _coerce(path: str, value: Any, spec: Field) -> Any:
    """Check one value against its field, converting YAML's '1e9' strings to floats."""
    if value is None:
        if spec.nullable or spec.default is None and spec.kind is str:
            return None
        raise ProfileError(f"{path}: value is missing (null); expected {spec.describe()}")
    if spec.auto and value == "auto":
        return value
    if spec.kind is list:
        if not isinstance(value, list) or not value:
            raise ProfileError(f"{path}: expected a non-empty {spec.describe()}, "
                               f"got {shown(value)}")
        item_spec = Field(spec.items, lo=spec.lo, hi=spec.hi)
        return [_coerce(f"{path}[{i}]", v, item_spec) for i, v in enumerate(value)]
    if spec.kind is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) != (spec.kind is bool) or not isinstance(value, spec.kind):
        raise ProfileError(f"{path}: expected {spec.describe()}, got {shown(value)}")
    if spec.choices and value not in spec.choices:
        raise ProfileError(f"{path}: {shown(value)} is not allowed; expected {spec.describe()}")
    if spec.kind in (int, float):
        _check_number(path, value, spec)
    return value


def _check_number(path: str, value: float, spec: Field) -> None:
    """A number must be finite, within its field's bounds, and (a float) usable in float32."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ProfileError(f"{path}: {shown(value)} is not finite; expected {spec.describe()}")
    if (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi):
        raise ProfileError(f"{path}: {shown(value)} is out of range; expected {spec.describe()}")
    problem = float32_problem(value) if isinstance(value, float) else None
    if problem:
        raise ProfileError(f"{path}: {shown(value)} {problem}")


def _validate(section: dict, schema: dict, path: str) -> dict:
    if not isinstance(section, dict):
        raise ProfileError(f"{path or 'profile'}: expected a mapping of keys, "
                           f"got {shown(section)}")
    for key in section:
        if key not in schema:
            where = f"{path}." if path else ""
            text = clip(str(key))
            raise ProfileError(f"unknown key {where}{text}{_key_hint(text, schema, path)}")
    out = {}
    for key, spec in schema.items():
        sub = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            out[key] = _validate(section.get(key) or {}, spec, sub)
        else:
            value = section.get(key, spec.default)
            out[key] = _coerce(sub, value, spec)
    return out


def _check_list_choices(profile: dict) -> None:
    for keys, allowed in _LIST_CHOICES.items():
        values = profile
        for k in keys:
            values = values[k]
        for v in values or []:
            if v not in allowed:
                raise ProfileError(
                    f"{'.'.join(keys)}: {shown(v)} is not allowed{_suggest(clip(v), allowed)} "
                    f"(allowed: {', '.join(allowed)})"
                )


def _check_consistency(p: dict) -> None:
    learning, exps = p["priors"]["learning"], p["experiments"]
    _check_train_settings(p["train"])
    if p["priors"]["source"] == "learn":
        snapshots = learning["swag_steps"] // learning["collect_every"]
        if snapshots < 2:
            raise ProfileError(
                f"priors.learning: swag_steps={learning['swag_steps']} with collect_every="
                f"{learning['collect_every']} gives {snapshots} snapshot(s); SWAG needs >= 2"
            )
        # the learned factor keeps the last min(max_rank, snapshots) deviations
        max_rank = min(learning["max_rank"], snapshots)
        for where, rank in [("experiments.rank.ranks", max(exps["rank"]["ranks"])),
                            ("experiments.scale.rank", exps["scale"]["rank"]),
                            ("experiments.inference.rank", exps["inference"]["rank"]),
                            ("experiments.temperature.rank", exps["temperature"]["rank"])]:
            if not exps[where.split(".")[1]]["enabled"]:
                continue
            if rank > max_rank:
                raise ProfileError(
                    f"{where}: rank {rank} is larger than the {max_rank} low-rank rows the learned "
                    "prior will store (min of priors.learning.max_rank and the number of SWAG "
                    f"snapshots); use a rank <= {max_rank}"
                )
    _check_model(p)
    if p["data"]["dataset"] == "fashion_mnist" and p["model"] != "small_resnet":
        raise ProfileError("model: fashion_mnist (28x28 grayscale) needs model 'small_resnet'")
    if p["data"]["dataset"] == "flowers102" and p["priors"]["source"] == "learn":
        raise ProfileError(
            "priors.source: 'learn' is implemented for fashion_mnist and imagefolder; flowers102 "
            "needs priors.source 'files' with priors.files.ssl / priors.files.supervised"
        )
    _check_imagefolder(p)


def validation_from_pool(p: dict) -> bool:
    """Whether the validation set is drawn from the labelled pool (not an image folder's own
    val/ folder, nor Flowers-102's official split)."""
    data = p["data"]
    if data["dataset"] == "imagefolder":
        from .imagefolder import scan_root

        return "val" not in scan_root(data["root"])
    return data["dataset"] == "fashion_mnist"


# priors.learning keys that say where the source images come from, not how to learn
SOURCE_KEYS = ("source_train_size", "source_root")


def learning_settings(p: dict) -> PriorLearningSettings:
    """The profile's prior-learning settings (`priors.learning` less its source keys)."""
    learning = p["priors"]["learning"]
    return PriorLearningSettings(**{k: v for k, v in learning.items() if k not in SOURCE_KEYS})


def _check_model(p: dict) -> None:
    from .models import ModelError, check_model_name

    try:
        check_model_name(p["model"])
    except ModelError as exc:
        raise ProfileError(f"model: {exc}") from None
    weights = p["model_weights"]
    if weights is not None and not p["model"].startswith("torchvision:"):
        raise ProfileError(f"model_weights: only torchvision:<name> models take weights; "
                           f"{p['model']!r} does not")
    if weights is not None and not Path(weights).is_file():
        raise ProfileError(f"model_weights: {weights} is not a file (a local state dict saved "
                           "with torch.save)")
    if weights is not None:  # weights that do not fit are named before anything runs
        from .models import build_model

        try:
            build_model(p["model"], 2, weights)
        except ModelError as exc:
            raise ProfileError(str(exc)) from None


def _check_imagefolder(p: dict) -> None:
    """An image folder's keys: a root that holds usable splits, a source folder for learned
    priors, normalisation of one value per channel."""
    data, learning = p["data"], p["priors"]["learning"]
    if data["dataset"] != "imagefolder":
        for key in ("augment", "mean", "std"):
            if data[key]:
                raise ProfileError(f"data.{key}: only used with data.dataset 'imagefolder'")
        if learning["source_root"]:
            raise ProfileError("priors.learning.source_root: only used with data.dataset "
                               "'imagefolder'")
        return
    from .imagefolder import FolderError, list_classes
    from .models import input_channels

    if not data["root"]:
        raise ProfileError("data.root: an image folder needs it (the folder holding train/ and "
                           "test/ class folders)")
    channels = input_channels(p["model"])
    for key in ("mean", "std"):
        if data[key] is not None and len(data[key]) != channels:
            raise ProfileError(f"data.{key}: {shown(data[key])} has {len(data[key])} values; "
                               f"model {p['model']} takes {channels}-channel images")
    if p["priors"]["source"] == "learn" and _priors_used(p) - {"oracle"}:
        if not learning["source_root"]:
            raise ProfileError("priors.learning.source_root: learned priors on an image folder "
                               "need a source folder of class subfolders (<source_root>/<class>/*)")
        try:
            list_classes(learning["source_root"], "priors.learning.source_root")
        except FolderError as exc:
            raise ProfileError(str(exc)) from None


def _check_protocol(p: dict) -> None:
    """The credible-protocol keys: margins > 0 (schema), grids of >= 2 distinct values and the
    same length for every arm, a validation set for tuning, >= 3 chains for R-hat, a headline
    convention among those swept, and one draw where the priors come from files."""
    exps = p["experiments"]
    tuning = exps["inference"]["tuning"]
    if exps["inference"]["enabled"] and tuning["enabled"]:
        lengths = {k: len(tuning[k]) for k in ("scales", "variances", "weight_decays")}
        for key, values in ((k, tuning[k]) for k in lengths):
            if len(values) < MIN_GRID:
                raise ProfileError(
                    f"experiments.inference.tuning.{key}: a tuning grid needs at least "
                    f"{MIN_GRID} values, spanning the strong and the weak side, got "
                    f"{shown(values)}")
        if len(set(lengths.values())) > 1:
            raise ProfileError(
                "experiments.inference.tuning: every arm gets the same number of grid values "
                f"(the same tuning budget); got {lengths}")
        if p["data"]["val_size"] == 0 and tuning["selection"] == "validation":
            raise ProfileError("experiments.inference.tuning.enabled needs a validation set: set "
                               "data.val_size (e.g. 500), or tuning.selection: split")
        if tuning["selection"] == "split":
            _check_split_sizes(p)
    val_size, classes = p["data"]["val_size"], downstream_classes(p)
    if val_size and (val_size < classes or val_size % classes):
        raise ProfileError(
            f"data.val_size: {val_size} cannot be split evenly over the {classes} downstream "
            f"classes (a class-balanced validation set; {val_size} would leave classes empty "
            f"or unequal); use a multiple of {classes}, e.g. "
            f"{classes * max(1, val_size // classes)}")
    reference = exps["reference"]
    if reference["enabled"]:
        if reference["chains"] < MIN_CHAINS:
            raise ProfileError(f"experiments.reference.chains: the reference posterior is judged "
                               f"on R-hat over at least {MIN_CHAINS} chains, got "
                               f"{reference['chains']}")
        if 1.0 not in reference["temperatures"]:
            raise ProfileError("experiments.reference.temperatures: the reference posterior is "
                               "the Bayes posterior, T = 1: list 1.0 among them, e.g. [0.1, 0.3, "
                               "1.0, 3.0]")
        if reference["curve_seeds"] > reference["seeds"]:
            raise ProfileError(f"experiments.reference.curve_seeds: {reference['curve_seeds']} is "
                               f"more than its {reference['seeds']} seeds; use at most that")
    temp = exps["temperature"]
    if temp["enabled"] and temp["chains"] < MIN_CHAINS:
        raise ProfileError(f"experiments.temperature.chains: the temperature claims are judged "
                           f"on R-hat and ESS over at least {MIN_CHAINS} chains per "
                           f"temperature, got {temp['chains']}")
    inference = exps["inference"]
    samplers = [a for a in inference["arms"] if arm_parts(a)[0] in CHAINED_ARM_METHODS]
    if inference["enabled"] and samplers and inference["chains"] < MIN_CHAINS:
        raise ProfileError(
            f"experiments.inference.chains: C4 and C4b are judged only where the samplers "
            f"converged (R-hat and bulk ESS over at least {MIN_CHAINS} chains), got "
            f"{inference['chains']} for the arms {shown(samplers)}; use chains: {MIN_CHAINS}")
    scale = exps["scale"]
    rules = scale["rules"] or [p["priors"]["rescaling_rule"]]
    eps = scale["eps"] or [p["priors"]["eps"]]
    if p["priors"]["rescaling_rule"] not in rules or p["priors"]["eps"] not in eps:
        raise ProfileError(
            f"experiments.scale: the profile's convention (priors.rescaling_rule "
            f"{p['priors']['rescaling_rule']!r}, priors.eps {p['priors']['eps']:g}) gives the "
            f"headline verdict and must be among the swept rules {shown(rules)} and eps "
            f"{shown(eps)}")
    _check_sources(p)
    _check_fixed_protocol(p)
    if p["priors"]["source"] == "files" and p["priors"]["draws"] != 1:
        raise ProfileError("priors.draws: published prior files are one draw per source; set "
                           "priors.draws: 1 (several draws need priors.source: learn)")


def _priors_used(p: dict) -> set[str]:
    """The prior names the enabled experiments use (the control: the oracle prior)."""
    exps = p["experiments"]
    used = {exps[e]["prior"] for e in ONE_PRIOR_EXPERIMENTS if exps[e]["enabled"]}
    if exps["scale"]["enabled"]:
        used |= set(exps["scale"]["priors"])
    if exps["control"]["enabled"]:
        used.add("oracle")
    if exps["covariance"]["enabled"]:
        used |= {"ssl", TASK_PRIOR}  # the task prior starts from the SimCLR draw's weights
    if exps["reference"]["enabled"]:
        used.add(exps["inference"]["prior"])  # its backbone gives the features
    return used


def training_sizes(p: dict) -> dict[str, list[int]]:
    """Dotted key -> the training sizes an enabled experiment draws from the labelled pool."""
    exps = p["experiments"]
    out = {f"experiments.{e}.n_train": [exps[e]["n_train"]]
           for e in (RANK, SCALE, TEMPERATURE) if exps[e]["enabled"]}
    if exps["inference"]["enabled"]:
        out["experiments.inference.sizes"] = list(exps["inference"]["sizes"])
    if exps["control"]["enabled"] and exps["control"]["n_train"] is not None:
        out["experiments.control.n_train"] = [exps["control"]["n_train"]]
    for name in (PER_SEED, REFERENCE):
        if exps[name]["enabled"]:
            out[f"experiments.{name}.sizes"] = list(exps[name]["sizes"])
    return out


def _check_sources(p: dict) -> None:
    """The labelled pool and the learned priors' sources: a pool that holds the validation set
    and every training size, class-balanced; the SimCLR prior outside the pool and the control's
    oracle prior need a pool that leaves images outside it; the control needs a size."""
    data, priors, exps = p["data"], p["priors"], p["experiments"]
    pool, classes = data["labelled_pool"], downstream_classes(p)
    if pool and data["dataset"] == "flowers102":
        raise ProfileError("data.labelled_pool: fashion_mnist and imagefolder training images "
                           "are split into a labelled pool and an unlabelled rest; set it to 0 "
                           "for flowers102 (its official splits are used)")
    if pool:
        if pool % classes:
            raise ProfileError(f"data.labelled_pool: {pool} images cannot be split evenly over "
                               f"the {classes} downstream classes; use a multiple of {classes}")
        room = pool - (data["val_size"] if validation_from_pool(p) else 0)
        for key, sizes in training_sizes(p).items():
            largest = max(sizes) if 0 not in sizes else room + 1
            if largest > room:
                raise ProfileError(
                    f"{key}: {shown(sizes)} needs up to {largest} training images, but the "
                    f"labelled pool of {pool} (data.labelled_pool) leaves {room} after the "
                    f"{data['val_size']} validation images; raise data.labelled_pool to at least "
                    f"{data['val_size'] + largest} or use smaller sizes (0, the whole pool, is "
                    "not allowed with a labelled pool)")
    needs_rest = []
    if priors["ssl_source"] == "outside_pool" and "ssl" in _priors_used(p):
        needs_rest.append("priors.ssl_source 'outside_pool' (the SimCLR prior's images)")
    if "oracle" in _priors_used(p):
        needs_rest.append("the oracle prior (experiments.control, or an experiment's prior "
                          "'oracle')")
    if TASK_PRIOR in _priors_used(p):
        needs_rest.append("the covariance control's task prior (experiments.covariance)")
    for what in needs_rest:
        if not pool or priors["source"] != "learn":
            raise ProfileError(
                f"{what} is learned from the downstream training images outside the labelled "
                "pool: it needs priors.source 'learn' and data.labelled_pool > 0 (e.g. 2500)")
    control = exps["control"]
    if control["enabled"] and control["n_train"] is None and not exps["inference"]["enabled"]:
        raise ProfileError("experiments.control.n_train: with the inference experiment off, "
                           "give the control's training size")
    for name in CONTROL_EXPERIMENTS:
        if exps[name]["enabled"] and not exps["inference"]["tuning"]["enabled"]:
            raise ProfileError(f"experiments.{name}: a positive control is tuned like the "
                               "inference arms; set experiments.inference.tuning.enabled: true")
    if exps["covariance"]["enabled"] and control["n_train"] is None \
            and not exps["inference"]["enabled"]:
        raise ProfileError("experiments.control.n_train: the covariance control runs at the "
                           "control's size; with the inference experiment off, give it")


def _check_split_sizes(p: dict) -> None:
    """`tuning.selection: split` holds out images of every class of each training subset: each
    tuned size needs at least 2 images per class (balanced subsets)."""
    classes = downstream_classes(p)
    if p["data"]["subset_protocol"] != "balanced":
        raise ProfileError("experiments.inference.tuning.selection: 'split' splits every class of "
                           "a training subset; it needs data.subset_protocol 'balanced'")
    exps = p["experiments"]
    sizes = list(exps["inference"]["sizes"]) if exps["inference"]["enabled"] else []
    if exps["control"]["enabled"] and exps["control"]["n_train"]:
        sizes.append(exps["control"]["n_train"])
    small = [n for n in sizes if n and n < 2 * classes]
    if small:
        raise ProfileError(
            f"experiments.inference.tuning.selection: 'split' holds out at least one image of "
            f"each of the {classes} classes, so every tuned size needs >= {2 * classes} images; "
            f"{shown(small)} are smaller: use larger sizes or selection 'validation'")


def _check_train_settings(train: dict) -> None:
    """Build the training settings and the samplers' cyclical schedule now, so that their
    cross-field errors (e.g. more cycles than steps) surface before anything trains. The schema
    has already bounded steps and cycles (settings.MAX_STEPS, MAX_CYCLES), so the schedule built
    here is small (MAX_CYCLES + 1 cycle starts at most; 3e7 cycles once took 88 s and 2.4 GB)."""
    from .samplers import CyclicalSchedule

    try:
        s = TrainSettings(**train)
        CyclicalSchedule(s.steps, s.cycles, s.lr, s.explore_fraction,
                                s.samples_per_cycle, s.burn_in_cycles)
    except ValueError as exc:
        raise ProfileError(f"train: {exc}") from None


NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
# a name is a folder under outputs/ (and part of longer paths below it): file systems refuse
# names over 255 bytes, which ended in "fix its permissions"; 64 is plenty for a profile's name
MAX_NAME_LENGTH = 64


def _check_name(name: str) -> None:
    """A profile name is one folder name under outputs/: letters, digits, '-', '_', '.' only (no
    path separators, no '..' that would write outside the outputs folder), at most 64 of them."""
    if len(name) > MAX_NAME_LENGTH:
        raise ProfileError(
            f"name: {shown(name)} is {len(name)} characters long; a profile name is used as the "
            f"folder outputs/<name>/ and may have at most {MAX_NAME_LENGTH} characters, "
            "e.g. 'cpu-long'")
    if not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise ProfileError(
            f"name: {shown(name)} is not allowed; a profile name is used as the folder "
            "outputs/<name>/, so it may hold only letters, digits, '-', '_' and '.' (no path "
            "separators, not '.' or '..'), e.g. 'cpu-long'"
        )


def _list_fields(schema: dict, path: str = ""):
    """(dotted key, Field) of every list-valued key of the schema."""
    for key, spec in schema.items():
        sub = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            yield from _list_fields(spec, sub)
        elif spec.kind is list:
            yield sub, spec


# lists of one value per training size (aligned with `experiments.inference.sizes`), which
# may repeat a value
PER_SIZE_KEYS = ("experiments.inference.steps", "experiments.inference.evaluation.seeds",
                 "experiments.inference.evaluation.sampler_seeds",
                 "experiments.inference.evaluation.pilot_sd",
                 "experiments.inference.evaluation.target_mde")


def _check_no_duplicates(profile: dict) -> None:
    """Every list in a profile (arms, sizes, ranks, scales, priors) names each value once: a
    repeated value would plan the same runs twice under one result file (the per-size lists
    of `PER_SIZE_KEYS` excepted)."""
    for dotted, _ in _list_fields(SCHEMA):
        if dotted in PER_SIZE_KEYS:
            continue
        values = profile
        for key in dotted.split("."):
            values = values[key]
        seen: list = []
        for value in values or []:
            if value in seen:
                unique = list(dict.fromkeys(values))
                raise ProfileError(
                    f"{dotted}: {shown(value)} is listed more than once in {shown(values)}; list "
                    f"each value once, e.g. {shown(unique)}"
                )
            seen.append(value)


FORCE_WORKERS = "BPRIOR_FORCE_WORKERS"
WORKERS_ENV = "BPRIOR_WORKERS"  # overrides a profile's `workers` (`--workers` sets it)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under `taskset`), else all."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def _check_workers(workers: int) -> None:
    """No more worker processes than this machine has cores (each takes about 1 GB of memory
    and they would only wait for each other), unless $BPRIOR_FORCE_WORKERS is 1."""
    cores = usable_cores()
    if workers <= cores or os.environ.get(FORCE_WORKERS) == "1":
        return
    raise ProfileError(
        f"workers: {workers} worker processes are more than this machine's {cores} CPU cores "
        "(each process takes about 1 GB of memory, and they would only wait for each other); "
        f"use workers: {cores} or fewer, or set {FORCE_WORKERS}=1 in the environment to start "
        f"{workers} anyway")


def validate_profile(raw: dict) -> dict:
    """Validate a raw profile mapping; return it complete with defaults, or raise ProfileError."""
    profile = _validate(raw, SCHEMA, "")
    if not profile["name"]:
        raise ProfileError("name: every profile needs a name (used for outputs/<name>/)")
    _check_name(profile["name"])
    _check_workers(profile["workers"])
    _check_no_duplicates(profile)
    _check_list_choices(profile)
    _check_consistency(profile)
    _check_protocol(profile)
    return profile


def _is_path(text: str) -> bool:
    """A profile given with a '/' or ending in .yaml/.yml is a file; anything else is a name."""
    return "/" in text or os.sep in text or text.endswith((".yaml", ".yml"))


def profile_path(name_or_path: str | Path) -> Path:
    """`cpu` -> params/cpu.yaml, whatever the current folder holds (a folder `./cpu/` does not
    shadow it); `./cpu.yaml`, `my/cpu` or `cpu.yml` -> that file, which must exist."""
    text = str(name_or_path)
    if _is_path(text):
        candidate = Path(text)
        if candidate.is_dir():
            raise ProfileError(f"profile file {clip(text)} is a folder; give a YAML file (e.g. "
                               "params/cpu.yaml) or a profile name from params/ (e.g. cpu)")
        if not candidate.exists():
            raise ProfileError(f"profile file {clip(text)} does not exist; give an existing YAML "
                               "file or a profile name from params/ (e.g. cpu)")
        return candidate
    path = PARAMS_DIR / f"{text}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ProfileError(
            f"no profile named {shown(text)}{_suggest(text, known)} "
            f"(profiles in {PARAMS_DIR}: {', '.join(known)}; or give a path to a YAML file)"
        )
    return path


# A profile holds a few hundred values; aliases (*name) repeat what their anchor (&name) holds,
# so nested aliases multiply: 2 KB of them expand to 387 million values ("billion laughs")
MAX_YAML_NODES = 10_000
MAX_PROFILE_BYTES = 1_000_000  # a profile is a few kilobytes


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` holds once every alias is expanded (shared nodes are counted once
    per use but visited once); ProfileError past MAX_YAML_NODES, or for an alias inside the
    collection it names (an endless structure)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ProfileError(
            f"line {node.start_mark.line + 1}: an alias refers to the collection that holds it "
            "(an endless structure); write the values out instead")
    open_nodes.add(key)
    total = 1
    for child in _children(node):
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_YAML_NODES:
            raise ProfileError(
                f"the document expands to more than {MAX_YAML_NODES} values (each alias *name "
                "repeats what its anchor &name holds, and nested aliases multiply); a profile "
                "holds a few hundred values: write them out, or use fewer aliases")
    open_nodes.discard(key)
    sizes[key] = total
    return total


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (plain YAML keeps the last
    value silently, so a profile could say `steps: 10` and later `steps: 1000`), and a document
    whose aliases expand to more than MAX_YAML_NODES values (before building any of them)."""

    def compose_document(self):
        node = super().compose_document()
        _expanded_size(node, {}, set())
        return node

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise ProfileError(
                    f"duplicate key {shown(key)} on line {key_node.start_mark.line + 1} (first on "
                    f"line {first}); each key may appear once per section: keep one of them"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """A YAML syntax error in one line, located where the broken construct starts (PyYAML's own
    message names "<unicode string>" and points where parsing failed, often a line later)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, where = getattr(exc, "context", None), getattr(exc, "problem_mark", None)
    start = getattr(exc, "context_mark", None)

    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    if start is not None and context and ("flow" in context or "quoted" in context):
        # an unclosed bracket or quote: the fix is where it opens, not where parsing gave up
        text = f"{at(start)}: {context} that is not closed: {problem}"
        return text + (f" (at {at(where)})" if where is not None else "")
    text = f"{at(where)}: {problem}" if where is not None else problem
    return text + (f" ({context} from {at(start)})" if start is not None and context else "")


def _read_yaml(path: Path, text: str) -> Any:
    """The YAML document in `text` (read from `path`), or ProfileError naming the file."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path} is not valid YAML: {yaml_error_text(exc)}") from None
    except RecursionError:
        raise ProfileError(f"{path} is nested too deeply to read (brackets or indentation "
                           "hundreds of levels deep); a profile is a few levels of "
                           "sections") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ProfileError(f"{path} holds a value that cannot be read: {clip(str(exc))}") from None


def load_profile(name_or_path: str | Path) -> dict:
    """Read and validate a profile by name (in params/) or by path."""
    path = profile_path(name_or_path)
    if not stat.S_ISREG(path.stat().st_mode):  # a device or a pipe may never end
        raise ProfileError(f"{path} is not a regular file (a device, pipe or socket); a profile "
                           "is a YAML file, e.g. params/cpu.yaml")
    with path.open("rb") as f:
        data = f.read(MAX_PROFILE_BYTES + 1)  # bounded whatever the file claims to hold
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"{path} holds more than {MAX_PROFILE_BYTES} bytes; a profile is a "
                           "few kilobytes of YAML: is this the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path} is not a UTF-8 text file (byte {exc.start}: "
                           f"{exc.object[exc.start:exc.start + 1]!r}); a profile is YAML saved as "
                           "UTF-8") from None
    raw = _read_yaml(path, text)
    try:
        raw = _resolved(raw or {}, path.parent)
        if os.environ.get(WORKERS_ENV) and isinstance(raw, dict):
            raw["workers"] = _workers_override(os.environ[WORKERS_ENV])
        return validate_profile(raw)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None


def _workers_override(text: str) -> int:
    """$BPRIOR_WORKERS (what `--workers` sets) as the profile's `workers`."""
    try:
        return int(text)
    except ValueError:
        raise ProfileError(f"${WORKERS_ENV}={clip(text)!r} is not an integer; set it to the "
                           "number of worker processes, e.g. 2") from None


# the profile keys that name files or folders: a relative one is relative to the profile's file
PATH_KEYS = ("data.root", "model_weights", "priors.files.ssl", "priors.files.supervised",
             "priors.learning.source_root")


def _resolved(raw: Any, base: Path) -> Any:
    """A raw profile with its relative paths (`PATH_KEYS`, those that are strings) made absolute
    against `base`, the profile file's folder, so a profile means the same files from any
    working folder (the validation reports everything else about them)."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for dotted in PATH_KEYS:
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                break
            node[key] = dict(child)
            node = node[key]
        else:
            value = node.get(last)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                node[last] = str((base / Path(value).expanduser()).resolve())
            elif isinstance(value, str) and value:
                node[last] = str(Path(value).expanduser())
    return out


def fixed_protocol(p: dict) -> bool:
    """Whether the inference, control and covariance experiments use the headline protocol
    (each arm's setting fixed once on tuning seeds, then evaluated on fresh seeds); untuned
    arms have nothing to fix and run on the profile's seeds."""
    inference = p["experiments"]["inference"]
    return inference["protocol"] == "fixed" and inference["tuning"]["enabled"]


def tuning_seeds(p: dict) -> list[int]:
    """The tuning seeds of the fixed protocol: 0 .. tuning.seeds - 1."""
    return list(range(p["experiments"]["inference"]["tuning"]["seeds"]))


def _per_size(p: dict, key: str) -> list | None:
    """A per-size list of `experiments.inference.evaluation` (or `steps`), checked to have
    one value per inference size; None when null."""
    inference = p["experiments"]["inference"]
    values = inference["steps"] if key == "steps" else inference["evaluation"][key]
    where = ("experiments.inference.steps" if key == "steps"
             else f"experiments.inference.evaluation.{key}")
    if values is not None and len(values) != len(inference["sizes"]):
        raise ProfileError(
            f"{where}: {shown(values)} has {len(values)} values; it holds one per training "
            f"size of experiments.inference.sizes {shown(inference['sizes'])}, in that order")
    return values


def size_index(p: dict, n: int) -> int:
    """Where training size n sits in `experiments.inference.sizes` (a size outside them, such
    as a control's own, takes the smallest size's place)."""
    sizes = p["experiments"]["inference"]["sizes"]
    if n in sizes:
        return sizes.index(n)
    return min(range(len(sizes)), key=lambda i: sizes[i] or math.inf)


def steps_at(p: dict, n: int) -> int:
    """The training steps of the inference protocol's runs at size n (`inference.steps`)."""
    steps = _per_size(p, "steps")
    return p["train"]["steps"] if steps is None else steps[size_index(p, n)]


def evaluation_seeds(p: dict, n: int, sampler: bool = False) -> list[int]:
    """The evaluation seeds of the fixed protocol at size n: first_seed, first_seed + 1, ...,
    as many as `evaluation.sampler_seeds` (sampler arms and their controls) or
    `evaluation.seeds` give there; `seeds` null: the power target's count, else the
    profile's seeds (or the inference experiment's)."""
    ev, i = p["experiments"]["inference"]["evaluation"], size_index(p, n)
    counts = _per_size(p, "seeds") or _power_counts(p)
    count = counts[i] if counts else (p["experiments"]["inference"]["seeds"] or p["seeds"])
    sampler_counts = _per_size(p, "sampler_seeds")
    if sampler_counts:  # the SGD arms run on every seed a sampler runs on (C4 pairs them)
        count = sampler_counts[i] if sampler else max(count, sampler_counts[i])
    return list(range(ev["first_seed"], ev["first_seed"] + count))


def _power_counts(p: dict) -> list[int] | None:
    """Seeds per size from the power target (`evaluation.target_mde`, `pilot_sd`), or None."""
    from .power import DESIGN_LEVEL, seeds_for

    sd, target = _per_size(p, "pilot_sd"), _per_size(p, "target_mde")
    if sd is None and target is None:
        return None
    if sd is None or target is None:
        raise ProfileError("experiments.inference.evaluation: a power target needs both "
                           "target_mde and pilot_sd (one value per size each)")
    counts = []
    for n, s, t in zip(p["experiments"]["inference"]["sizes"], sd, target, strict=True):
        need = seeds_for(s, t, DESIGN_LEVEL, most=MAX_EVAL_SEEDS)
        if need is None:
            raise ProfileError(
                f"experiments.inference.evaluation: at n = {n} a paired SD of {s:g} needs more "
                f"than {MAX_EVAL_SEEDS} evaluation seeds for an mde of {t:g} at level "
                f"{DESIGN_LEVEL:.4f} (Holm's first step over the eight claims); raise "
                "target_mde there, or measure a smaller SD (e.g. a larger size)")
        counts.append(need)
    return counts


def _check_fixed_protocol(p: dict) -> None:
    """The headline protocol's keys: at least MIN_TUNING_SEEDS tuning seeds, evaluation seeds
    that never overlap them (nor the per-seed protocol's), per-size lists of one value per size,
    and explicit seed counts that meet the power target where one is given."""
    exps = p["experiments"]
    inference, tuning = exps["inference"], exps["inference"]["tuning"]
    for key in ("steps", "seeds", "sampler_seeds", "pilot_sd", "target_mde"):
        _per_size(p, key)
    if inference["protocol"] != "fixed" or not any(exps[e]["enabled"] for e in TUNED_EXPERIMENTS):
        return
    if not tuning["enabled"]:
        raise ProfileError("experiments.inference.protocol: 'fixed' fixes every arm's setting "
                           "from its tuning runs; set experiments.inference.tuning.enabled: "
                           "true, or use protocol 'per_seed'")
    if tuning["seeds"] < MIN_TUNING_SEEDS:
        raise ProfileError(
            f"experiments.inference.tuning.seeds: {tuning['seeds']} tuning seed(s) would fix "
            f"each arm's setting from the draw of so few subsets; use at least "
            f"{MIN_TUNING_SEEDS}")
    first = inference["evaluation"]["first_seed"]
    if first < tuning["seeds"]:
        raise ProfileError(
            f"experiments.inference.evaluation.first_seed: {first} makes the evaluation seeds "
            f"overlap the tuning seeds 0..{tuning['seeds'] - 1}; evaluation seeds must never "
            f"enter selection: use first_seed >= {tuning['seeds']} (e.g. 1000)")
    counts, power = _per_size(p, "seeds"), _power_counts(p)
    if counts and power:
        for n, have, need in zip(inference["sizes"], counts, power, strict=True):
            if have < need:
                raise ProfileError(
                    f"experiments.inference.evaluation.seeds: {have} seeds at n = {n} miss the "
                    f"power target (target_mde and pilot_sd there need {need}); use at least "
                    f"{need}, or drop seeds to take the power target's counts")
    per_seed = exps["per_seed"]
    if per_seed["enabled"]:
        lo, hi = per_seed["first_seed"], per_seed["first_seed"] + per_seed["seeds"]
        most = max(len(evaluation_seeds(p, n, s)) for n in inference["sizes"]
                   for s in (False, True))
        if lo < tuning["seeds"] or (lo < first + most and first < hi):
            raise ProfileError(
                f"experiments.per_seed.first_seed: its seeds {lo}..{hi - 1} overlap the tuning "
                f"seeds 0..{tuning['seeds'] - 1} or the evaluation seeds {first}.."
                f"{first + most - 1}; the two protocols use their own seeds: use first_seed >= "
                f"{first + most}")
