"""What the protocol derives from a profile: tuning and evaluation seeds, steps and sizes per
training size, and the checks of the fixed protocol's power."""

from __future__ import annotations

import math

from ..vocabulary import TUNED_EXPERIMENTS
from .fields import ProfileError, shown
from .profile import Profile
from .schema import MAX_EVAL_SEEDS, MIN_TUNING_SEEDS


def fixed_protocol(p: Profile) -> bool:
    """Whether the inference, control and covariance experiments use the headline protocol
    (each arm's setting fixed once on tuning seeds, then evaluated on fresh seeds); untuned
    arms have nothing to fix and run on the profile's seeds."""
    inference = p.experiments.inference
    return inference.protocol == "fixed" and inference.tuning.enabled


def tuning_seeds(p: Profile) -> list[int]:
    """The tuning seeds of the fixed protocol: 0 .. tuning.seeds - 1."""
    return list(range(p.experiments.inference.tuning.seeds))


def _per_size(p: Profile, key: str) -> list | None:
    """A per-size list of `experiments.inference.evaluation` (or `steps`), checked to have
    one value per inference size; None when null."""
    inference = p.experiments.inference
    values = inference.steps if key == "steps" else getattr(inference.evaluation, key)
    where = ("experiments.inference.steps" if key == "steps"
             else f"experiments.inference.evaluation.{key}")
    if values is not None and len(values) != len(inference.sizes):
        raise ProfileError(
            f"{where}: {shown(values)} has {len(values)} values; it holds one per training "
            f"size of experiments.inference.sizes {shown(inference.sizes)}, in that order")
    return values


def size_index(p: Profile, n: int) -> int:
    """Where training size n sits in `experiments.inference.sizes` (a size outside them, such
    as a control's own, takes the smallest size's place)."""
    sizes = p.experiments.inference.sizes
    if n in sizes:
        return sizes.index(n)
    return min(range(len(sizes)), key=lambda i: sizes[i] or math.inf)


def steps_at(p: Profile, n: int) -> int:
    """The training steps of the inference protocol's runs at size n (`inference.steps`)."""
    steps = _per_size(p, "steps")
    return p.train.steps if steps is None else steps[size_index(p, n)]


def evaluation_seeds(p: Profile, n: int, sampler: bool = False) -> list[int]:
    """The evaluation seeds of the fixed protocol at size n: first_seed, first_seed + 1, ...,
    as many as `evaluation.sampler_seeds` (sampler arms and their controls) or
    `evaluation.seeds` give there; `seeds` null: the power target's count, else the
    profile's seeds (or the inference experiment's)."""
    ev, i = p.experiments.inference.evaluation, size_index(p, n)
    counts = _per_size(p, "seeds") or _power_counts(p)
    count = counts[i] if counts else (p.experiments.inference.seeds or p.seeds)
    sampler_counts = _per_size(p, "sampler_seeds")
    if sampler_counts:  # the SGD arms run on every seed a sampler runs on (C4 pairs them)
        count = sampler_counts[i] if sampler else max(count, sampler_counts[i])
    return list(range(ev.first_seed, ev.first_seed + count))


def _power_counts(p: Profile) -> list[int] | None:
    """Seeds per size from the power target (`evaluation.target_mde`, `pilot_sd`), or None."""
    from ..analysis.power import DESIGN_LEVEL, seeds_for

    sd, target = _per_size(p, "pilot_sd"), _per_size(p, "target_mde")
    if sd is None and target is None:
        return None
    if sd is None or target is None:
        raise ProfileError("experiments.inference.evaluation: a power target needs both "
                           "target_mde and pilot_sd (one value per size each)")
    counts = []
    for n, s, t in zip(p.experiments.inference.sizes, sd, target, strict=True):
        need = seeds_for(s, t, DESIGN_LEVEL, most=MAX_EVAL_SEEDS)
        if need is None:
            raise ProfileError(
                f"experiments.inference.evaluation: at n = {n} a paired SD of {s:g} needs more "
                f"than {MAX_EVAL_SEEDS} evaluation seeds for an mde of {t:g} at level "
                f"{DESIGN_LEVEL:.4f} (Holm's first step over the eight claims); raise "
                "target_mde there, or measure a smaller SD (e.g. a larger size)")
        counts.append(need)
    return counts


def _check_fixed_protocol(p: Profile) -> None:
    """The headline protocol's keys: at least MIN_TUNING_SEEDS tuning seeds, evaluation seeds
    that never overlap them (nor the per-seed protocol's), per-size lists of one value per size,
    and explicit seed counts that meet the power target where one is given."""
    exps = p.experiments
    inference, tuning = exps.inference, exps.inference.tuning
    for key in ("steps", "seeds", "sampler_seeds", "pilot_sd", "target_mde"):
        _per_size(p, key)
    tuned = any(exps.experiment(e).enabled for e in TUNED_EXPERIMENTS)
    if inference.protocol != "fixed" or not tuned:
        return
    if not tuning.enabled:
        raise ProfileError("experiments.inference.protocol: 'fixed' fixes every arm's setting "
                           "from its tuning runs; set experiments.inference.tuning.enabled: "
                           "true, or use protocol 'per_seed'")
    if tuning.seeds < MIN_TUNING_SEEDS:
        raise ProfileError(
            f"experiments.inference.tuning.seeds: {tuning.seeds} tuning seed(s) would fix "
            f"each arm's setting from the draw of so few subsets; use at least "
            f"{MIN_TUNING_SEEDS}")
    first = inference.evaluation.first_seed
    if first < tuning.seeds:
        raise ProfileError(
            f"experiments.inference.evaluation.first_seed: {first} makes the evaluation seeds "
            f"overlap the tuning seeds 0..{tuning.seeds - 1}; evaluation seeds must never "
            f"enter selection: use first_seed >= {tuning.seeds} (e.g. 1000)")
    counts, power = _per_size(p, "seeds"), _power_counts(p)
    if counts and power:
        for n, have, need in zip(inference.sizes, counts, power, strict=True):
            if have < need:
                raise ProfileError(
                    f"experiments.inference.evaluation.seeds: {have} seeds at n = {n} miss the "
                    f"power target (target_mde and pilot_sd there need {need}); use at least "
                    f"{need}, or drop seeds to take the power target's counts")
    per_seed = exps.per_seed
    if per_seed.enabled:
        lo, hi = per_seed.first_seed, per_seed.first_seed + per_seed.seeds
        most = max(len(evaluation_seeds(p, n, s)) for n in inference.sizes
                   for s in (False, True))
        if lo < tuning.seeds or (lo < first + most and first < hi):
            raise ProfileError(
                f"experiments.per_seed.first_seed: its seeds {lo}..{hi - 1} overlap the tuning "
                f"seeds 0..{tuning.seeds - 1} or the evaluation seeds {first}.."
                f"{first + most - 1}; the two protocols use their own seeds: use first_seed >= "
                f"{first + most}")
