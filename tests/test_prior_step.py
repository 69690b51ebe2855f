"""The prior step at every scale: on a target that is the prior alone, with lr x (largest prior
curvature) from 1 to 1e6, SGLD and SGHMC reach the stationary mean and variance T Sigma within
10 %, and SGD reaches the MAP; plain explicit steps diverge there."""

from __future__ import annotations

import math

import pytest
import torch

from bprior_core.packed_prior import PackedPrior
from bprior_core.prior import GaussianPrior
from bprior_core.updates import langevin_noise_std, sgd_, sghmc_, sgld_

DIM, CHAINS, T = 12, 400, 0.5


def stiff_prior(v0: float) -> GaussianPrior:
    """Variances in [0.1, 1] x v0 and a rank-2 part that adds up to about v0 more."""
    gen = torch.Generator().manual_seed(0)
    d = v0 * (0.1 + 0.9 * torch.rand(DIM, generator=gen, dtype=torch.float64))
    factor = math.sqrt(v0) * 0.7 * torch.randn(2, DIM, generator=gen, dtype=torch.float64)
    mean = torch.randn(DIM, generator=gen, dtype=torch.float64)
    return GaussianPrior(mean, d, factor)


def chains(method: str, ratio: float, cap: float | None, steps: int = 2500, burn: int = 500):
    """Run CHAINS chains on U = -log p (N = 1) with lr = ratio * min variance; return the
    time-and-chain mean and covariance of theta, or None if a chain left the finite numbers."""
    v0 = 1e-6
    prior = stiff_prior(v0)
    packed = PackedPrior([prior] * CHAINS, "cpu")  # one "run" per chain
    lr = ratio * float(prior.variance.min())
    ones = torch.ones(CHAINS, dtype=torch.float64)
    m = (packed.preconditioner(lr * ones, ones, cap) if cap is not None
         else torch.ones(CHAINS, DIM, dtype=torch.float64))
    gen = torch.Generator().manual_seed(1)
    theta = prior.mean + 3 * prior.variance.sqrt() * torch.randn(CHAINS, DIM, generator=gen,
                                                                 dtype=torch.float64)
    state = torch.zeros_like(theta)
    friction = 0.1 if method == "sghmc" else 1.0
    std = langevin_noise_std(lr, T, 1.0, friction)
    samples = []
    for k in range(steps):
        grad = torch.zeros_like(theta)
        packed.add_neg_log_prob_grad_(theta, grad, torch.ones(CHAINS, dtype=torch.float64))
        grad.mul_(m)
        noise = [torch.randn(theta.shape, generator=gen, dtype=torch.float64) * m.sqrt()]
        if method == "sgld":
            sgld_([theta], [grad], lr, std, noise)
        elif method == "sghmc":
            sghmc_([theta], [grad], [state], lr, 0.9, std, noise)
        else:
            sgd_([theta], [grad], [state], lr, 0.9, True, first=k == 0)
        if not torch.isfinite(theta).all():
            return None, prior
        if k >= burn and k % 5 == 0:
            samples.append(theta.clone())
    x = torch.cat(samples)
    return (x.mean(0), torch.cov(x.T)), prior


@pytest.mark.parametrize("method", ["sgld", "sghmc"])
@pytest.mark.parametrize("ratio", [1.0, 1e3, 1e6])
def test_samplers_reach_the_prior_at_every_stiffness(method, ratio) -> None:
    moments, prior = chains(method, ratio, cap=0.1)
    assert moments is not None
    mean, cov = moments
    dense = prior.variance.diag() + prior.cov_factor.T @ prior.cov_factor
    target = T * dense
    sd = target.diagonal().sqrt()
    assert ((mean - prior.mean).abs() / sd).max() < 0.1
    ratio_var = cov.diagonal() / target.diagonal()
    assert (ratio_var - 1).abs().max() < 0.1, ratio_var
    # the low-rank directions too: variance along each factor row
    for row in prior.cov_factor:
        u = row / row.norm()
        assert abs(float(u @ cov @ u / (u @ target @ u)) - 1) < 0.1


@pytest.mark.parametrize("method", ["sgld", "sghmc", "sgd"])
def test_plain_explicit_steps_diverge_on_a_stiff_prior(method) -> None:
    """The test above can fail: without the preconditioner the same chains blow up."""
    moments, _ = chains(method, 1e3, cap=None, steps=200, burn=0)
    assert moments is None


@pytest.mark.parametrize("ratio", [1.0, 1e3, 1e6])
def test_sgd_with_the_preconditioned_prior_converges_to_the_map(ratio) -> None:
    moments, prior = chains("sgd", ratio, cap=0.1, steps=600, burn=550)
    assert moments is not None
    mean, cov = moments
    assert ((mean - prior.mean).abs() / prior.variance.sqrt()).max() < 1e-3
    assert cov.diagonal().max() < 1e-12


def test_the_preconditioner_caps_every_step_at_the_cap() -> None:
    prior = stiff_prior(1e-6)
    packed = PackedPrior([prior, prior], "cpu")
    lr, n = torch.tensor([1e-3, 1e-9], dtype=torch.float64), torch.tensor([10.0, 10.0])
    m = packed.preconditioner(lr, n, 0.1)
    step_curvature = lr.view(-1, 1) / (n.view(-1, 1) * prior.variance) * m
    assert step_curvature.max() <= 0.1 + 1e-12
    assert torch.all(m[1] == 1.0)  # a tiny lr needs no preconditioning
    assert m[0].max() < 1.0
