"""The update rules of SGD (Nesterov), SGLD and SGHMC, written once for packed and plain tensors.

Every function updates lists of tensors in place. Coefficients (`lr`, `noise_std`) are Python
floats or tensors that broadcast against each tensor, e.g. shape (R, 1) against a packed
parameter viewed as (R, n): one value per run. No argument checks here: values are checked once,
where settings are built (`TrainSettings`, the sampler constructors), not on every step.

With L the per-example mean loss, N the data size and T the temperature (see `langevin`):

- SGD with momentum m (PyTorch's convention, dampening 0): b <- m b + g (b = g on the first
  step); theta <- theta - lr (g + m b) with Nesterov, theta - lr b without.
- SGLD: theta <- theta - lr g + sqrt(2 lr T / N) xi.
- SGHMC: v <- m v - lr g + sqrt(2 (1 - m) lr T / N) xi;  theta <- theta + v.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Coef = float | torch.Tensor


def langevin_noise_std(lr: Coef, temperature: Coef, num_data: Coef, friction: float = 1.0):
    """sqrt(2 friction lr T / N): the injected noise's standard deviation (friction 1 for SGLD,
    1 - momentum for SGHMC)."""
    value = 2.0 * friction * lr * temperature / num_data
    return value.sqrt() if isinstance(value, torch.Tensor) else value**0.5


@torch.no_grad()
def sgd_(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
    buffers: Sequence[torch.Tensor], lr: Coef, momentum: float, nesterov: bool, first: bool,
) -> None:
    """SGD with momentum; `buffers` hold the momentum (initialised from g when `first`)."""
    for p, g, b in zip(params, grads, buffers, strict=True):
        if momentum:
            if first:
                b.copy_(g)
            else:
                b.mul_(momentum).add_(g)
            step = g.add(b, alpha=momentum) if nesterov else b
        else:
            step = g
        p.sub_(step * lr)


@torch.no_grad()
def sgld_(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], lr: Coef,
    noise_std: Coef, noises: Sequence[torch.Tensor] | None,
) -> None:
    """SGLD; `noises` are standard normal draws shaped like the parameters (None: no noise)."""
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        p.sub_(g * lr)
        if noises is not None:
            p.add_(noises[i] * noise_std)


@torch.no_grad()
def sghmc_(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
    velocities: Sequence[torch.Tensor], lr: Coef, momentum: Coef, noise_std: Coef,
    noises: Sequence[torch.Tensor] | None,
) -> None:
    """SGHMC in velocity form; `noises` as in `sgld_`. `momentum` multiplies the velocity: the
    friction's 1 - alpha, times sqrt(lr_k / lr_{k-1}) where the step size just changed (the
    engine's cyclical schedule), so that the momentum v / sqrt(lr) carries over."""
    for i, (p, g, v) in enumerate(zip(params, grads, velocities, strict=True)):
        v.mul_(momentum).sub_(g * lr)
        if noises is not None:
            v.add_(noises[i] * noise_std)
        p.add_(v)
