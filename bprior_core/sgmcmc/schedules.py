"""Step-size schedules of the samplers and SGD: cyclical (cSG-MCMC, Zhang et al. 2020: cosine
cycles, an exploration phase without noise, samples collected at each cycle's end) and cosine.
A schedule says, per step, the step size, whether to add noise and whether to collect a
sample."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .langevin import _check_lr

__all__ = ["ConstantSchedule", "CosineSchedule", "CyclicalSchedule", "Schedule", "ScheduleStep"]


@dataclass(frozen=True)
class ScheduleStep:
    """What a training loop does at one step: step size, whether to add noise and to collect."""

    lr: float
    noise: bool
    collect: bool
    cycle: int


class Schedule(Protocol):
    """Interface shared by the schedules, so a training loop can take any of them."""

    total_steps: int

    def at(self, step: int) -> ScheduleStep: ...

    def __iter__(self) -> Iterator[ScheduleStep]: ...

    def __len__(self) -> int: ...

    @property
    def n_samples(self) -> int: ...


def _check_steps(total_steps: int) -> int:
    """Return ``total_steps`` as int, or raise: a schedule needs at least one step."""
    if int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"total_steps must be an integer >= 1, got {total_steps}")
    return int(total_steps)


def _check_index(step: int, total_steps: int) -> int:
    """Return ``step`` as int, or raise if it is outside ``[0, total_steps)``."""
    if int(step) != step or not 0 <= step < total_steps:
        raise ValueError(f"step must be an integer in [0, {total_steps}), got {step}")
    return int(step)


def _cosine(lr0: float, r: float) -> float:
    """Cosine decay ``lr0 / 2 * (cos(pi r) + 1)``: ``lr0`` at ``r = 0``, 0 at ``r = 1``."""
    return lr0 / 2.0 * (math.cos(math.pi * r) + 1.0)


def _explore_len(length: int, explore_fraction: float) -> int:
    """Number of positions ``j`` in a cycle of ``length`` with ``j / length < explore_fraction``.

    Computed with the same float comparison that :meth:`CyclicalSchedule.at` uses, so the two
    never disagree at a boundary.
    """
    m = min(length, math.ceil(explore_fraction * length))
    while m > 0 and (m - 1) / length >= explore_fraction:
        m -= 1
    while m < length and m / length < explore_fraction:
        m += 1
    return m


class _StepSequence:
    """Iteration and length over `at(0) ... at(total_steps - 1)`, shared by the schedules."""

    total_steps: int

    def at(self, step: int) -> ScheduleStep:
        raise NotImplementedError

    def __iter__(self) -> Iterator[ScheduleStep]:
        return (self.at(k) for k in range(self.total_steps))

    def __len__(self) -> int:
        return self.total_steps


class CyclicalSchedule(_StepSequence):
    """Cyclical cosine step size of cSG-MCMC (Zhang et al., ICLR 2020, "Cyclical SG-MCMC").

    Cycle ``c`` covers steps ``[c * total // n, (c + 1) * total // n)``, so cycle lengths differ
    by at most one and no step is dropped. At position ``j`` of a cycle of length ``L``,
    ``r = j / L`` and ``lr = lr0 / 2 * (cos(pi r) + 1)``. Steps with ``r < explore_fraction``
    explore (no noise: plain optimisation); the rest sample (noise on). In each cycle
    ``samples_per_cycle`` steps of the sampling phase are collected: the cycle's last step and
    earlier ones spaced by ``sampling_len // samples_per_cycle``. The first ``burn_in_cycles``
    cycles collect nothing (burn-in: they start from the initial weights, far from the target).
    """

    def __init__(
        self,
        total_steps: int,
        n_cycles: int,
        lr0: float,
        explore_fraction: float,
        samples_per_cycle: int,
        burn_in_cycles: int = 0,
    ) -> None:
        self.total_steps = _check_steps(total_steps)
        self.n_cycles = self._check_cycles(n_cycles)
        self.lr0 = _check_lr(lr0)
        self.explore_fraction = self._check_fraction(explore_fraction)
        self.samples_per_cycle = self._check_samples(samples_per_cycle)
        if int(burn_in_cycles) != burn_in_cycles or not 0 <= burn_in_cycles < self.n_cycles:
            raise ValueError(f"burn_in_cycles must be an integer in [0, n_cycles - 1 = "
                             f"{self.n_cycles - 1}] (at least one cycle's samples are "
                             f"averaged), got {burn_in_cycles}")
        self.burn_in_cycles = int(burn_in_cycles)
        n, total = self.n_cycles, self.total_steps
        self._starts = [c * total // n for c in range(n + 1)]
        self._collect = {length: self._collect_positions(length) for length in self._lengths()}

    def _check_cycles(self, n_cycles: int) -> int:
        """Return ``n_cycles`` as int, or raise unless ``1 <= n_cycles <= total_steps``."""
        if int(n_cycles) != n_cycles or not 1 <= n_cycles <= self.total_steps:
            raise ValueError(
                f"n_cycles must be an integer in [1, total_steps={self.total_steps}], "
                f"got {n_cycles}"
            )
        return int(n_cycles)

    @staticmethod
    def _check_fraction(explore_fraction: float) -> float:
        """Return the exploration fraction, or raise unless it lies in ``[0, 1)``."""
        explore_fraction = float(explore_fraction)
        if not 0 <= explore_fraction < 1:
            raise ValueError(f"explore_fraction must be in [0, 1), got {explore_fraction}")
        return explore_fraction

    def _check_samples(self, samples_per_cycle: int) -> int:
        """Return ``samples_per_cycle``, or raise if the shortest sampling phase is too short."""
        if int(samples_per_cycle) != samples_per_cycle or samples_per_cycle < 1:
            raise ValueError(f"samples_per_cycle must be an integer >= 1, got {samples_per_cycle}")
        shortest = self.total_steps // self.n_cycles
        sampling_len = shortest - _explore_len(shortest, self.explore_fraction)
        if sampling_len < samples_per_cycle:
            raise ValueError(
                f"the shortest cycle ({shortest} steps) has only {sampling_len} sampling steps "
                f"(explore_fraction={self.explore_fraction}) but samples_per_cycle="
                f"{samples_per_cycle}: increase total_steps, or decrease n_cycles, "
                "explore_fraction or samples_per_cycle"
            )
        return int(samples_per_cycle)

    def _lengths(self) -> set[int]:
        """The distinct cycle lengths (at most two)."""
        return {b - a for a, b in zip(self._starts[:-1], self._starts[1:], strict=True)}

    def _collect_positions(self, length: int) -> frozenset[int]:
        """Positions collected in a cycle of ``length``: evenly spaced, ending at the last step."""
        sampling_len = length - _explore_len(length, self.explore_fraction)
        gap = sampling_len // self.samples_per_cycle
        return frozenset(length - 1 - i * gap for i in range(self.samples_per_cycle))

    def cycle_bounds(self, cycle: int) -> tuple[int, int]:
        """First step and one past the last step of ``cycle``."""
        if not 0 <= cycle < self.n_cycles:
            raise ValueError(f"cycle must be in [0, {self.n_cycles}), got {cycle}")
        return self._starts[cycle], self._starts[cycle + 1]

    def at(self, step: int) -> ScheduleStep:
        """The schedule at ``step`` (0-based)."""
        step = _check_index(step, self.total_steps)
        cycle = bisect.bisect_right(self._starts, step) - 1
        start, end = self._starts[cycle], self._starts[cycle + 1]
        length, j = end - start, step - start
        r = j / length
        return ScheduleStep(
            lr=_cosine(self.lr0, r),
            noise=not r < self.explore_fraction,
            collect=j in self._collect[length] and cycle >= self.burn_in_cycles,
            cycle=cycle,
        )

    @property
    def n_samples(self) -> int:
        """Number of samples averaged over the whole run (after burn-in)."""
        return (self.n_cycles - self.burn_in_cycles) * self.samples_per_cycle

    @property
    def burn_in_samples(self) -> int:
        """Number of sample points of the burn-in cycles, left out of the average."""
        return self.burn_in_cycles * self.samples_per_cycle


class CosineSchedule(_StepSequence):
    """One cosine decay ``lr_k = lr0 / 2 * (cos(pi k / total_steps) + 1)`` over the whole run.

    For plain SGD (MAP): ``noise`` is False by default and only the last step is collected. Pass
    ``noise=True`` for SGLD under a single cosine decay (the authors' default SGLD path).
    """

    def __init__(self, total_steps: int, lr0: float, noise: bool = False) -> None:
        self.total_steps = _check_steps(total_steps)
        self.lr0 = _check_lr(lr0)
        self.noise = bool(noise)

    def at(self, step: int) -> ScheduleStep:
        """The schedule at ``step`` (0-based)."""
        step = _check_index(step, self.total_steps)
        return ScheduleStep(
            lr=_cosine(self.lr0, step / self.total_steps),
            noise=self.noise,
            collect=step == self.total_steps - 1,
            cycle=0,
        )

    @property
    def n_samples(self) -> int:
        """One sample: the final iterate."""
        return 1


class ConstantSchedule(CosineSchedule):
    """Constant step size ``lr0``; same interface as :class:`CosineSchedule`."""

    def at(self, step: int) -> ScheduleStep:
        """The schedule at ``step`` (0-based)."""
        step = _check_index(step, self.total_steps)
        return ScheduleStep(
            lr=self.lr0, noise=self.noise, collect=step == self.total_steps - 1, cycle=0
        )
