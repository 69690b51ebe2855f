"""Metropolis-adjusted Hamiltonian Monte Carlo: exact samples of a differentiable log-density.

Neal (2011), "MCMC using Hamiltonian dynamics": with q the position and p ~ N(0, M) a momentum,
L leapfrog steps of size e integrate H(q, p) = -log pi(q) + p^T M^-1 p / 2 (M diagonal),

    p <- p + e/2 grad log pi(q);  (q <- q + e M^-1 p;  p <- p + e grad log pi(q)) x L;
    p <- p - e/2 grad log pi(q)   (the last full momentum step made a half one),

and the proposal is accepted with probability min(1, exp(H(q, p) - H(q', p'))). The chain's
stationary distribution is pi exactly, whatever e, L and the diagonal mass M (they change only
how fast it mixes); e is jittered by +-20 % each iteration so that no fixed trajectory length
resonates with the target. Chains run batched: positions (C, d), one log-density call per
leapfrog step for all chains.

Warm-up (its draws are not kept) adapts each chain: its step size by dual averaging towards an
accept rate of 0.8 (Hoffman and Gelman 2014, section 3.2), and, from the middle half of the
warm-up draws, an inverse mass M^-1 equal to their variance (Stan's "metric": a variance
estimate, shrunk towards 1e-3 a little), after which the step size is adapted again. The kept
draws use the final step size and mass, so they are draws of a fixed Markov chain that targets
pi.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

LogDensity = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
TARGET_ACCEPT = 0.8
JITTER = 0.2  # the step size is drawn from e x U(1 - JITTER, 1 + JITTER) each iteration
MIN_WINDOW = 20  # warm-up draws a variance estimate needs; fewer keep the unit mass


@dataclass
class HMCResult:
    """Kept draws (C, S, d), each chain's accept rate over them, its final step size and
    inverse mass (the warm-up's variance estimate, (C, d)), and how many of its proposals had
    a non-finite energy (divergent)."""

    draws: torch.Tensor
    accept_rate: torch.Tensor
    step_size: torch.Tensor
    inverse_mass: torch.Tensor
    divergent: torch.Tensor


class _DualAveraging:
    """Hoffman and Gelman's dual averaging of log e per chain towards TARGET_ACCEPT."""

    def __init__(self, step: torch.Tensor) -> None:
        self.mu = torch.log(10 * step)
        self.log_step = torch.log(step)
        self.log_bar = torch.zeros_like(step)
        self.h_bar = torch.zeros_like(step)
        self.t = 0

    def update(self, accept: torch.Tensor) -> torch.Tensor:
        """One iteration's accept probabilities in; the next step size out."""
        self.t += 1
        t, gamma, t0, kappa = self.t, 0.05, 10.0, 0.75
        self.h_bar = (1 - 1 / (t + t0)) * self.h_bar + (TARGET_ACCEPT - accept) / (t + t0)
        self.log_step = self.mu - math.sqrt(t) / gamma * self.h_bar
        eta = t ** -kappa
        self.log_bar = eta * self.log_step + (1 - eta) * self.log_bar
        return self.log_step.exp()

    @property
    def final(self) -> torch.Tensor:
        return self.log_bar.exp()


def _transition(log_density: LogDensity, q: torch.Tensor, logp: torch.Tensor,
                grad: torch.Tensor, step: torch.Tensor, inverse_mass: torch.Tensor,
                n_leapfrog: int, generator: torch.Generator) -> tuple:
    """One HMC iteration for every chain: (q, logp, grad, accept probability, divergent)."""
    chains = q.shape[0]
    jitter = 1 + JITTER * (2 * torch.rand(chains, 1, generator=generator, dtype=q.dtype) - 1)
    e = step.view(-1, 1) * jitter
    p0 = torch.randn(q.shape, generator=generator, dtype=q.dtype) / inverse_mass.sqrt()
    p = p0 + 0.5 * e * grad
    q1, logp1, grad1 = q, logp, grad
    for i in range(n_leapfrog):
        q1 = q1 + e * inverse_mass * p
        logp1, grad1 = log_density(q1)
        if i < n_leapfrog - 1:
            p = p + e * grad1
    p = p + 0.5 * e * grad1
    h0 = -logp + 0.5 * (p0.square() * inverse_mass).sum(1)
    h1 = -logp1 + 0.5 * (p.square() * inverse_mass).sum(1)
    log_ratio = h0 - h1
    divergent = ~torch.isfinite(log_ratio)
    accept = torch.where(divergent, torch.zeros_like(log_ratio), log_ratio.clamp(max=0).exp())
    take = torch.rand(chains, generator=generator, dtype=q.dtype) < accept
    keep = take.view(-1, 1)
    return (torch.where(keep, q1, q), torch.where(take, logp1, logp),
            torch.where(keep, grad1, grad), accept, divergent)


def sample(log_density: LogDensity, init: torch.Tensor, n_draws: int, n_warmup: int,
           n_leapfrog: int = 10, step_size: float = 0.1,
           generator: torch.Generator | None = None) -> HMCResult:
    """`n_draws` HMC draws per chain of pi (`log_density(q)` -> (log pi(q) (C,), its gradient
    (C, d)), for positions q (C, d)), after `n_warmup` iterations of adaptation, from `init`
    (C, d: one row per chain; start them apart to see whether they meet)."""
    if init.ndim != 2 or init.shape[0] < 1:
        raise ValueError(f"init must be (chains, d), got shape {tuple(init.shape)}")
    if n_draws < 1 or n_warmup < 4 or n_leapfrog < 1 or not step_size > 0:
        raise ValueError("need n_draws >= 1, n_warmup >= 4, n_leapfrog >= 1, step_size > 0")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    q = init.clone()
    logp, grad = log_density(q)
    chains, dim = q.shape
    inverse_mass = torch.ones(chains, dim, dtype=q.dtype)
    step = torch.full((chains,), float(step_size), dtype=q.dtype)
    first, last = n_warmup // 4, n_warmup - n_warmup // 4
    adapt, window = _DualAveraging(step), []
    for i in range(n_warmup):
        q, logp, grad, accept, _ = _transition(log_density, q, logp, grad, step,
                                               inverse_mass, n_leapfrog, gen)
        step = adapt.update(accept)
        if first <= i < last:
            window.append(q)
        if i == last - 1 and len(window) >= MIN_WINDOW:  # the middle half's variance: M^-1
            draws = torch.stack(window, 1)
            n = draws.shape[1]
            inverse_mass = (n / (n + 5)) * draws.var(1) + 1e-3 * (5 / (n + 5))
            adapt = _DualAveraging(adapt.final)
            step = adapt.final
    step = adapt.final
    kept, accepted = [], torch.zeros(chains, dtype=q.dtype)
    divergent = torch.zeros(chains, dtype=torch.long)
    for _ in range(n_draws):
        q, logp, grad, accept, bad = _transition(log_density, q, logp, grad, step,
                                                 inverse_mass, n_leapfrog, gen)
        kept.append(q)
        accepted += accept
        divergent += bad.long()
    return HMCResult(torch.stack(kept, 1), accepted / n_draws, step, inverse_mass, divergent)
