"""What the SG-MCMC samplers share: their conventions, argument checks and optimizer base class.

The samplers are `sgld.SGLD` and `sghmc.SGHMC`; their step-size schedules are in `schedules`.

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
:class:`~bprior_core.sgmcmc.sghmc.SGHMC` with ``momentum = 1 - m_a``, ``lr = lr_a`` and
``T = N * T_a``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from .updates import langevin_noise_std

__all__ = ["authors_to_ours"]


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

    With ``prior`` (the :class:`~bprior_core.priors.gaussian.GaussianPrior` whose ``-log p / N`` is
    in the loss), the first ``prior.dim`` entries of the parameters, in order, are the ones it
    covers (e.g. ``model.parameters()`` of a :class:`~bprior_core.training.models.Classifier`:
    backbone first; they must share one ``lr``). They get the engine's preconditioner by the prior's
    whole covariance (:class:`~bprior_core.priors.packed.PriorPreconditioner`, built once from that
    ``lr`` and ``prior_step_cap``): drift ``lr M grad`` and noise ``N(0, M)`` times the usual scale,
    which leaves the target ``exp(-U / T)`` and the MAP unchanged and keeps every step on
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
        from ..priors.packed import PackedPrior

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
