"""Stochastic-gradient Langevin dynamics (Welling and Teh 2011), with an explicit temperature.

The conventions (mean loss, temperature, the authors' SGLD) are in `langevin`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .langevin import _check_lr, _check_temperature, _LangevinBase
from .updates import sgld_


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
