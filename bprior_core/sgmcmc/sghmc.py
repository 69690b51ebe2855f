"""Stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox and Guestrin 2014), with an explicit
temperature. The conventions are in `langevin`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .langevin import _check_lr, _check_momentum, _check_temperature, _LangevinBase
from .updates import sghmc_


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
