"""A study planned once: what `bprior run` and `bprior report` pass through preflight, prior
learning and the sweep instead of planning again at every step."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from ..config.profile import Profile
from ..vocabulary import EXPERIMENTS
from .finals import needed_draws
from .planning import plan


@dataclass(frozen=True)
class PlannedStudy:
    """A profile's experiments with their planned runs (tuning and single-phase, in plan order)
    and the prior draws those and the final runs to come use. The final runs themselves depend
    on what tuning chooses, so the sweep derives them from these runs and the stored results
    (`finals.final_runs`)."""

    profile: Profile
    experiments: tuple[str, ...]
    runs: tuple[dict, ...]

    @cached_property
    def draws(self) -> tuple[tuple[str, int], ...]:
        """(prior name, draw) pairs of the runs and of the final runs to come."""
        return tuple(needed_draws(self.profile, self.experiments, self.runs))

    @property
    def priors(self) -> list[str]:
        """Names of the priors the study uses."""
        return sorted({name for name, _ in self.draws})


def plan_study(profile: Profile, experiments: Iterable[str] = EXPERIMENTS) -> PlannedStudy:
    """Plan the profile's enabled `experiments` once."""
    experiments = tuple(experiments)
    return PlannedStudy(profile, experiments, tuple(plan(profile, experiments)))
