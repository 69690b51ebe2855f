"""Stochastic-gradient MCMC samplers (SGLD, SGHMC) and step-size schedules.

Both samplers act on a loss ``L`` that is the per-example MEAN over the data (for example mean
cross-entropy minus ``log p(theta) / N``), so the potential energy is ``U = N * L`` with
``N = num_data``. They target the density proportional to ``exp(-U / T)``; ``T = 1`` is the Bayes
posterior, ``T < 1`` a "cold" and ``T > 1`` a "warm" posterior. Because the gradient is that of
the mean loss, ``lr`` is the step on ``L``; the step on ``U`` is ``lr / N``.

Temperature conventions
-----------------------
The authors' SGLD (hsouri/BayesianTransferLearning, ``priorBox/sghmc/sgld.py``) is, on the same
mean loss ``L``::

    theta <- theta - lr_a * (1/2 grad L + xi * sqrt(2 T_a / lr_a)),   T_a = t_a / N,

with ``t_a`` their ``temperature`` argument. Expanded, the drift is ``(lr_a / 2) grad L`` and the
noise standard deviation is ``lr_a * sqrt(2 t_a / (N lr_a)) = sqrt(2 lr_a t_a / N)``. Ours is::

    theta <- theta - lr * grad L + sqrt(2 lr T / N) * xi.

Matching the drift gives ``lr = lr_a / 2``; matching the noise variance gives
``2 lr T / N = 2 lr_a t_a / N``, i.e. ``T = lr_a t_a / lr = 2 t_a``. ``N`` cancels: their
``temperature`` is half of ours, so their default ``t_a = 2e-8`` is ``T = 4e-8`` here (nearly
noise-free gradient descent). See :func:`authors_to_ours`. Their gradient-norm clipping (to 2) is
not part of the sampler here; clip in the training loop if wanted.

Their SGHMC (``priorBox/sghmc/sghmc.py``, not used by their training path) calls the friction
``momentum``: ``v <- (1 - m_a) v - lr_a grad L + sqrt(2 m_a lr_a T_a) xi``. That is our
:class:`SGHMC` with ``momentum = 1 - m_a``, ``lr = lr_a`` and ``T = N * T_a``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.optim import Optimizer

from .updates import langevin_noise_std, sghmc_, sgld_

__all__ = [
    "SGLD",
    "SGHMC",
    "ScheduleStep",
    "Schedule",
    "CyclicalSchedule",
    "CosineSchedule",
    "ConstantSchedule",
    "authors_to_ours",
]


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _check_lr(lr: float) -> float:
    """Return ``lr`` as float, or raise: a sampler step size must be positive and finite."""
    lr = float(lr)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    return lr


def _check_num_data(num_data: int) -> int:
    """Return ``num_data`` as int, or raise: the potential U = N * L needs N >= 1."""
    if int(num_data) != num_data or num_data < 1:
        raise ValueError(f"num_data must be an integer >= 1, got {num_data}")
    return int(num_data)


def _check_temperature(temperature: float) -> float:
    """Return ``temperature`` as float, or raise: T must be finite and >= 0."""
    temperature = float(temperature)
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    return temperature


def _check_cap(cap: float | None) -> float | None:
    """Return the prior step cap (None: plain steps), or raise unless it lies in (0, 1]."""
    if cap is None:
        return None
    cap = float(cap)
    if not 0 < cap <= 1:
        raise ValueError(f"prior_step_cap must lie in (0, 1] (or be None), got {cap}")
    return cap


def _check_momentum(momentum: float) -> float:
    """Return ``momentum`` as float, or raise: SGHMC needs friction 1 - momentum in (0, 1]."""
    momentum = float(momentum)
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must satisfy 0 <= momentum < 1, got {momentum}")
    return momentum


# ---------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------


class _LangevinBase(Optimizer):
    """Shared plumbing: argument checks, the closure, lr override, generator-driven noise, the
    prior's preconditioner and the divergence check.

    With ``prior`` (the :class:`~bprior_core.prior.GaussianPrior` whose ``-log p / N`` is in the
    loss), the first ``prior.dim`` entries of the parameters, in order, are the ones it covers
    (e.g. ``model.parameters()`` of a :class:`~bprior_core.models.Classifier`: backbone first;
    they must share one ``lr``). They get the engine's preconditioner by the prior's whole
    covariance (:class:`~bprior_core.packed_prior.PriorPreconditioner`, built once from that
    ``lr`` and ``prior_step_cap``): drift ``lr M grad`` and noise ``N(0, M)`` times the usual
    scale, which leaves the target ``exp(-U / T)`` and the MAP unchanged and keeps every step on
    the prior at lr x curvature <= ``prior_step_cap``, the low-rank directions relaxing as fast
    as the others. Without it a tight prior (lr x curvature ``lr / (N variance)`` of 1e2-1e6)
    makes explicit steps diverge; a step that would leave the finite numbers raises
    ``FloatingPointError`` saying so, and the parameters keep the values of the last finite
    step. The same preconditioner and update functions (`updates`) run in the engine.
    """

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        num_data: int,
        generator: torch.Generator | None,
        prior: Any | None = None,
        prior_step_cap: float | None = 0.05,
    ) -> None:
        super().__init__(params, defaults)
        self.num_data = _check_num_data(num_data)
        self.generator = generator
        self.prior_step_cap = _check_cap(prior_step_cap)
        self._curvature: tuple[float, float] | None = None
        self._covered: list[torch.Tensor] = []
        self._precond = self._preconditioner(prior)
        self._step_grads: dict[torch.Tensor, torch.Tensor] = {}
        self._step_noise: dict[torch.Tensor, torch.Tensor] = {}

    def _preconditioner(self, prior: Any | None):
        """The prior's preconditioner over the leading parameters it covers, or None."""
        if prior is None:
            return None
        from .packed_prior import PackedPrior

        params = [(p, g["lr"]) for g in self.param_groups for p in g["params"]]
        sizes = [p.numel() for p, _ in params]
        bounds = [sum(sizes[: i + 1]) for i in range(len(sizes))]
        if prior.dim not in bounds:
            raise ValueError(
                f"the prior covers {prior.dim} parameters, but the optimizer's parameters do not "
                f"start with a block of that size (cumulative sizes {bounds[:6]}"
                f"{' ...' if len(bounds) > 6 else ''}); pass the covered parameters first, in "
                "the prior's order (e.g. model.parameters() of a Classifier: backbone, then head)")
        covered = params[: bounds.index(prior.dim) + 1]
        lrs = {lr for _, lr in covered}
        if len(lrs) != 1:
            raise ValueError(f"the parameters the prior covers have different learning rates "
                             f"{sorted(lrs)}; give them one parameter group (one lr)")
        self._covered = [p for p, _ in covered]
        lr = lrs.pop()
        first = self._covered[0]
        packed = PackedPrior([prior], first.device, first.dtype)
        plain = float(lr / (self.num_data * prior.variance.double().min()))
        if self.prior_step_cap is None:
            self._curvature = (plain, plain)
            return None
        one = torch.ones(1, dtype=torch.float64)
        precond = packed.preconditioner(lr * one, self.num_data * one, self.prior_step_cap)
        self._curvature = (plain, float(precond.max_step_curvature()))
        return precond

    def _precondition_step(self, noisy: bool) -> None:
        """This step's preconditioned gradients and noise of the covered parameters (flattened
        into one row for the preconditioner, then split back)."""
        self._step_grads, self._step_noise = {}, {}
        if self._precond is None or any(p.grad is None for p in self._covered):
            return
        flat = torch.cat([p.grad.reshape(-1) for p in self._covered]).unsqueeze(0)
        self._precond.apply_(flat)
        sizes = [p.numel() for p in self._covered]
        for p, g in zip(self._covered, flat[0].split(sizes), strict=True):
            self._step_grads[p] = g.view_as(p)
        if noisy:
            dim, k = flat.shape[1], self._precond.rank
            z = torch.randn(2 * dim + k, generator=self.generator, device=flat.device,
                            dtype=flat.dtype).unsqueeze(0)
            noise = self._precond.noise(z[:, :dim], z[:, dim:dim + k], z[:, dim + k:])
            for p, n in zip(self._covered, noise[0].split(sizes), strict=True):
                self._step_noise[p] = n.view_as(p)

    def _noise_like(self, p: torch.Tensor) -> torch.Tensor:
        """The noise direction of ``p``: N(0, M) for the covered parameters, else standard
        normal, from ``self.generator`` when one is set."""
        if p in self._step_noise:
            return self._step_noise[p]
        return torch.randn(p.shape, generator=self.generator, device=p.device, dtype=p.dtype)

    def _grad(self, p: torch.Tensor) -> torch.Tensor:
        """``p``'s gradient, preconditioned where the prior covers it."""
        return self._step_grads.get(p, p.grad)

    def _noise_std(self, lr: float, temperature: float, friction: float) -> float:
        """Noise std ``sqrt(2 * friction * lr * T / N)``; friction is 1 for SGLD."""
        return langevin_noise_std(lr, temperature, self.num_data, friction)

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], torch.Tensor] | None = None,
        noise: bool = True,
        lr: float | None = None,
    ) -> torch.Tensor | None:
        """One update of every parameter with a gradient.

        ``noise=False`` drops the injected noise (the exploration phase of a cyclical schedule:
        then the step is plain gradient descent / heavy-ball). ``lr`` overrides every group's
        ``lr`` for this step only; otherwise ``param_group['lr']`` is used, so a schedule may also
        set that directly. Raises ``FloatingPointError`` (parameters and state unchanged) if the
        step would make any of them non-finite.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        touched = [(p, group) for group in self.param_groups for p in group["params"]
                   if p.grad is not None]
        saved = [(p.clone(), {k: v.clone() if isinstance(v, torch.Tensor) else v
                              for k, v in self.state[p].items()})
                 for p, _ in touched]
        self._precondition_step(noise and any(g["temperature"] > 0 for g in self.param_groups))
        for p, group in touched:
            self._update(p, group, _check_lr(group["lr"] if lr is None else lr), noise)
        finite = torch.stack([torch.isfinite(p).all() for p, _ in touched]).all() if touched \
            else torch.tensor(True)
        if not bool(finite):
            for (p, _), (value, state) in zip(touched, saved, strict=True):
                p.copy_(value)
                self.state[p] = state  # as before the step (a velocity made by it is dropped)
            raise FloatingPointError(self._divergence_message(lr, touched))
        return loss

    def _divergence_message(self, lr: float | None, touched) -> str:
        """Why a step left the finite numbers, and what would fix it."""
        lrs = sorted({group["lr"] if lr is None else lr for _, group in touched})
        text = (f"{type(self).__name__}: this step (lr {', '.join(f'{x:g}' for x in lrs)}) would "
                "make the parameters non-finite, so it was not applied: the step is too stiff "
                "for lr (an explicit step diverges where lr x curvature of the mean loss exceeds "
                "about 2)")
        if self._curvature is None:
            return text + ("; a tight prior term -log p / N has curvature 1 / (N variance): pass "
                           "prior=<that GaussianPrior> so its stiff coordinates are "
                           "preconditioned, or lower lr")
        plain, seen = self._curvature
        return text + (f"; lr x the prior's largest curvature is {plain:.3g} plain and {seen:.3g} "
                       "as preconditioned, so the likelihood (or a gradient spike) is what is too "
                       "stiff: lower lr, or clip the gradient")

    def _update(self, p: torch.Tensor, group: dict[str, Any], lr: float, noise: bool) -> None:
        raise NotImplementedError


class SGLD(_LangevinBase):
    r"""Stochastic gradient Langevin dynamics (Welling & Teh, ICML 2011).

    Update, with ``L`` the per-example mean loss and ``N = num_data``::

        theta <- theta - lr * grad L + sqrt(2 * lr * T / N) * xi,    xi ~ N(0, I).

    This is the Euler-Maruyama discretisation of the Langevin diffusion on ``U = N L`` with step
    ``lr / N``, so for small ``lr`` it samples ``p(theta) ~ exp(-U(theta) / T)`` (``T = 1``: the
    posterior). ``generator`` (a ``torch.Generator`` on the parameters' device) makes the noise
    repeatable; ``None`` uses the global RNG.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        num_data: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        prior: Any | None = None,
        prior_step_cap: float | None = 0.05,
    ) -> None:
        defaults = {"lr": _check_lr(lr), "temperature": _check_temperature(temperature)}
        super().__init__(params, defaults, num_data, generator, prior, prior_step_cap)

    def _update(self, p: torch.Tensor, group: dict[str, Any], lr: float, noise: bool) -> None:
        """Apply the SGLD update to one parameter in place."""
        temperature = group["temperature"]
        noisy = noise and temperature > 0
        sgld_([p], [self._grad(p)], lr, self._noise_std(lr, temperature, 1.0),
              [self._noise_like(p)] if noisy else None)


class SGHMC(_LangevinBase):
    r"""Stochastic gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin, ICML 2014).

    Update, with ``L`` the per-example mean loss, ``N = num_data``, ``v`` a velocity started at 0::

        v     <- momentum * v - lr * grad L + sqrt(2 * (1 - momentum) * lr * T / N) * xi
        theta <- theta + v,                                        xi ~ N(0, I).

    When ``lr`` changes between steps (a schedule), ``v`` is first multiplied by
    ``sqrt(lr_new / lr_old)``: ``v = sqrt(lr / N) r`` with ``r`` the momentum, which carries
    over unchanged.

    Derivation: Chen et al.'s SGHMC in velocity form (``v = eps * r``, identity mass,
    ``eta = eps^2``, friction ``alpha = eps * C``, gradient-noise estimate 0) reads
    ``v <- (1 - alpha) v - eta grad U + N(0, 2 alpha eta T)``. With ``U = N L``,
    ``eta = lr / N`` and ``alpha = 1 - momentum`` this is exactly the update above, so for
    small ``lr`` it samples ``p(theta) ~ exp(-U(theta) / T)`` (``T = 1``: the posterior).
    ``generator`` as in :class:`SGLD`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        num_data: int,
        momentum: float = 0.9,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        prior: Any | None = None,
        prior_step_cap: float | None = 0.05,
    ) -> None:
        defaults = {
            "lr": _check_lr(lr),
            "momentum": _check_momentum(momentum),
            "temperature": _check_temperature(temperature),
        }
        super().__init__(params, defaults, num_data, generator, prior, prior_step_cap)

    def _update(self, p: torch.Tensor, group: dict[str, Any], lr: float, noise: bool) -> None:
        """Apply the SGHMC velocity and position updates to one parameter in place."""
        momentum, temperature = group["momentum"], group["temperature"]
        state = self.state[p]
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(p)
            state["lr"] = lr
        # v = sqrt(lr / N) p: a new step size rescales v so that the momentum p carries over
        scale = math.sqrt(lr / state["lr"])
        state["lr"] = lr
        noisy = noise and temperature > 0
        sghmc_([p], [self._grad(p)], [state["velocity"]], lr, momentum * scale,
               self._noise_std(lr, temperature, 1.0 - momentum),
               [self._noise_like(p)] if noisy else None)

    def reset_velocity(self) -> None:
        """Set every velocity to zero (e.g. at the start of a new cycle)."""
        for state in self.state.values():
            if "velocity" in state:
                state["velocity"].zero_()


def authors_to_ours(
    lr_authors: float, temperature_authors: float, num_data: int
) -> tuple[float, float]:
    """Map the authors' SGLD ``(lr, temperature)`` to this module's ``(lr, temperature)``.

    Their step ``theta -= lr_a * (grad L / 2 + xi * sqrt(2 t_a / (N lr_a)))`` equals ours with
    ``lr = lr_a / 2`` and ``T = 2 t_a`` (``N`` cancels; see the module docstring).
    """
    lr_a = _check_lr(lr_authors)
    t_a = _check_temperature(temperature_authors)
    _check_num_data(num_data)
    return lr_a / 2.0, 2.0 * t_a


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------


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
