"""Settings dataclasses whose fields carry their allowed range: one definition per setting.

A leaf module (no torch, nothing of the trainer): `TrainSettings`, `PriorLearningSettings` and
`PriorParameters` live here, so that checking a profile (`config`) imports none of the engine.

`setting(default, lo=..., hi=...)` declares a field with its bounds; `check_ranges` validates an
instance once, when it is built (never on every training step); the profile schema (`config`)
derives its `train` and `priors.learning` sections from the same fields, and every per-experiment
value that becomes one of these settings or a prior parameter (`PriorParameters`) takes its range
from the field it becomes (`field_meta`).

Every number has an upper bound as well as a lower one: an unbounded number is a typo that costs
hours (or memory) before anything says so. The shared bounds below say why each is where it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

# Training computes in float32: a float that overflows it (or that it rounds to 0) is not the
# value the profile says.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32

# The paper trains 30,000 steps; a million steps of the smallest model take days on a CPU, and
# per-step bookkeeping stays small below it.
MAX_STEPS = 1_000_000
# The paper uses 4 cycles; the cyclical schedule holds one entry per cycle, and each cycle needs
# several steps to explore and sample, so 10,000 cycles is already far beyond any use.
MAX_CYCLES = 10_000
# Batches never exceed the training set; 65,536 covers every data set the study reads.
MAX_BATCH = 65_536
# Batches of BatchNorm refresh or samples per cycle: each costs a forward pass per sample.
MAX_PASSES = 1_000
# Prior scales: the paper sweeps 1e0..1e9 and the authors' default is 1e10. Up to 1e15, s * a
# stored variance overflows float32 only for variances above 3e23, and s**2 (the authors' rule
# grows the low-rank covariance with s**2) stays below 1e30.
MAX_SCALE = 1e15
MIN_SCALE = 1e-12
# Variances of isotropic priors and eps (added to every variance): 1e12 is a weight's standard
# deviation of 1e6, a prior that says nothing; s * eps stays finite in float32 for any scale.
MAX_VARIANCE = 1e12
MIN_VARIANCE = 1e-12


def setting(default: Any, lo: float | None = None, hi: float | None = None,
            choices: tuple | None = None, nullable: bool = False) -> Any:
    """A dataclass field with its allowed range (inclusive bounds) or choices."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices,
                                            "nullable": nullable})


def field_meta(cls: type, name: str) -> dict:
    """The declared range of field `name` of settings class `cls` (lo, hi, choices, nullable)."""
    for f in fields(cls):
        if f.name == name:
            return dict(f.metadata)
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def range_text(lo: float | None, hi: float | None) -> str:
    """'>= lo and <= hi' (either part left out when that bound is None)."""
    parts = [f">= {lo:g}" if lo is not None else "", f"<= {hi:g}" if hi is not None else ""]
    return " and ".join(p for p in parts if p)


def float32_problem(value: float) -> str | None:
    """Why `value` cannot be used in float32 arithmetic (not finite, overflows, or rounds to 0
    or a subnormal), or None when it can."""
    if not math.isfinite(value):
        return "is not finite"
    if abs(value) > FLOAT32_MAX:
        return f"is not finite in float32 (largest {FLOAT32_MAX:.4g})"
    if 0 < abs(value) < FLOAT32_TINY:
        return (f"is 0 (or subnormal) in float32, which training computes in; use 0 or a value "
                f">= {FLOAT32_TINY:.3g}")
    return None


def _bounds_text(meta: dict) -> str:
    if meta["choices"]:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    text = range_text(meta["lo"], meta["hi"]) or "any value"
    return text + (" or null" if meta["nullable"] else "")


def _in_range(value: Any, meta: dict) -> bool:
    if value is None:
        return meta["nullable"]
    if meta["choices"]:
        return value in meta["choices"]
    if isinstance(value, float) and float32_problem(value):
        return False
    return ((meta["lo"] is None or value >= meta["lo"])
            and (meta["hi"] is None or value <= meta["hi"]))


def check_ranges(obj: Any, what: str) -> None:
    """Raise ValueError naming every field of `obj` outside its declared range (floats also
    outside float32's normal range)."""
    bad = []
    for f in fields(obj):
        meta, value = f.metadata, getattr(obj, f.name)
        if meta and not _in_range(value, meta):
            bad.append(f"{f.name}={value!r} (expected {_bounds_text(meta)})")
    if bad:
        raise ValueError(f"invalid {what}: " + "; ".join(bad))


@dataclass(frozen=True)
class PriorParameters:
    """How a stored prior becomes a run's prior: rescaled by `scale` with `eps` added to every
    variance (`prior.rescale`), or an isotropic baseline of `variance`. The profile keys that set
    them (experiments' scale(s), eps, variance(s), priors.eps) take these ranges."""

    scale: float = setting(1.0, lo=MIN_SCALE, hi=MAX_SCALE)
    eps: float = setting(0.0, lo=0, hi=MAX_VARIANCE)
    variance: float | None = setting(None, lo=MIN_VARIANCE, hi=MAX_VARIANCE, nullable=True)

    def __post_init__(self) -> None:
        check_ranges(self, "prior parameters")


PRECISIONS = ("fp32", "bf16", "fp64")  # the engine's arithmetic (`training.loop.train_pack`)


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one downstream run (the profile's `train` section)."""

    steps: int = setting(300, lo=1, hi=MAX_STEPS)
    batch_size: int = setting(16, lo=1, hi=MAX_BATCH)
    lr: float = setting(0.01, lo=1e-8, hi=10)
    weight_decay: float = setting(1e-4, lo=0, hi=1)
    momentum: float = setting(0.9, lo=0, hi=0.999)
    nesterov: bool = setting(True)
    temperature: float = setting(1.0, lo=0, hi=1e6)
    cycles: int = setting(4, lo=1, hi=MAX_CYCLES)
    explore_fraction: float = setting(0.5, lo=0, hi=0.99)
    samples_per_cycle: int = setting(1, lo=1, hi=MAX_PASSES)
    # cycles whose samples are left out of the model average (burn-in): the first cycle starts
    # from the pretrained weights, far from the posterior
    burn_in_cycles: int = setting(1, lo=0, hi=MAX_CYCLES)
    grad_clip: float | None = setting(None, lo=1e-8, hi=1e6, nullable=True)
    prior_step_cap: float | None = setting(0.05, lo=1e-6, hi=1.0, nullable=True)
    bn_refresh_batches: int = setting(8, lo=1, hi=MAX_PASSES)
    eval_batch_size: int = setting(500, lo=1, hi=MAX_BATCH)

    def __post_init__(self) -> None:
        check_ranges(self, "training settings")
        if self.cycles > self.steps:
            raise ValueError(f"invalid training settings: cycles={self.cycles} is more than "
                             f"the {self.steps} steps; need 1 <= cycles <= steps")
        if self.burn_in_cycles >= self.cycles:
            raise ValueError(f"invalid training settings: burn_in_cycles={self.burn_in_cycles} "
                             f"leaves none of the {self.cycles} cycles' samples to average; "
                             f"use burn_in_cycles <= {self.cycles - 1} (or more cycles)")


@dataclass(frozen=True)
class PriorLearningSettings:
    """Hyper-parameters of prior learning (the profile's `priors.learning` section)."""

    pretrain_steps: int = setting(600, lo=0, hi=MAX_STEPS)
    pretrain_lr: float = setting(0.05, lo=1e-8, hi=10)
    swag_steps: int = setting(300, lo=2, hi=MAX_STEPS)
    swag_lr: float = setting(0.02, lo=1e-8, hi=10)
    swag_schedule: str = setting("constant", choices=("constant", "cyclical"))
    swag_cycles: int = setting(1, lo=1, hi=MAX_CYCLES)
    collect_every: int = setting(30, lo=1, hi=MAX_STEPS)
    max_rank: int = setting(10, lo=0, hi=100)
    batch_size: int = setting(128, lo=2, hi=MAX_BATCH)
    momentum: float = setting(0.9, lo=0, hi=0.999)
    weight_decay: float = setting(5e-4, lo=0, hi=1)
    simclr_temperature: float = setting(0.5, lo=1e-3, hi=10)
    bn_refresh_batches: int = setting(20, lo=1, hi=MAX_PASSES)

    def __post_init__(self) -> None:
        check_ranges(self, "prior-learning settings")
        n_snapshots = self.swag_steps // self.collect_every
        if n_snapshots < 2:
            raise ValueError(
                f"SWAG needs at least 2 snapshots: swag_steps={self.swag_steps} with "
                f"collect_every={self.collect_every} gives {n_snapshots}"
            )
