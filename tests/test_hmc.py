"""The Metropolis-adjusted sampler (`hmc`) against distributions whose moments are known: an
anisotropic Gaussian and a small Bayesian logistic regression whose posterior is integrated on
a grid. Tolerances come from each estimate's Monte Carlo standard error (its bulk ESS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bprior_core.analysis.convergence import bulk_ess, rank_rhat
from bprior_core.posterior import hmc


def gaussian(mean: torch.Tensor, var: torch.Tensor):
    def log_density(q: torch.Tensor):
        z = (q - mean) / var
        return -0.5 * ((q - mean) * z).sum(1), -z

    return log_density


def check_moments(draws: torch.Tensor, mean: np.ndarray, var: np.ndarray | None = None) -> None:
    """Per coordinate: the draws' mean within 5 Monte Carlo standard errors of the truth (SE =
    sd / sqrt(bulk ESS)); the variance within 5 of its standard errors (var sqrt(2 / ESS),
    for a Gaussian-like marginal)."""
    x = draws.numpy()
    for j in range(x.shape[2]):
        ess = bulk_ess(x[:, :, j])
        sd = x[:, :, j].std()
        assert abs(x[:, :, j].mean() - mean[j]) < 5 * sd / np.sqrt(ess), j
        if var is not None:
            assert abs(x[:, :, j].var() - var[j]) < 5 * var[j] * np.sqrt(2 / ess), j


def test_an_anisotropic_gaussian_is_sampled_with_its_moments():
    """Variances over four decades, chains started 10 sd away on both sides: the adapted
    sampler reaches mean and variance within their Monte Carlo error, R-hat near 1, an accept
    rate near its target, no divergences."""
    mean = torch.tensor([1.0, -2.0, 0.0, 3.0, 0.5], dtype=torch.float64)
    var = torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0], dtype=torch.float64)
    init = mean + 10 * var.sqrt() * torch.tensor([[1.0], [-1.0], [1.0], [-1.0]],
                                                  dtype=torch.float64)
    result = hmc.sample(gaussian(mean, var), init, n_draws=1500, n_warmup=600, n_leapfrog=8,
                        generator=torch.Generator().manual_seed(1))
    assert result.draws.shape == (4, 1500, 5)
    check_moments(result.draws, mean.numpy(), var.numpy())
    assert float(rank_rhat(result.draws.numpy()).max()) < 1.01
    assert bool(((result.accept_rate > 0.6) & (result.accept_rate < 0.97)).all())
    assert int(result.divergent.sum()) == 0
    # the adapted inverse mass is the posterior's variance, up to its estimate's error (a few
    # hundred correlated warm-up draws)
    ratio = result.inverse_mass.mean(0).numpy() / var.numpy()
    assert np.all((ratio > 0.4) & (ratio < 2.5))


def test_a_badly_tuned_sampler_keeps_its_target():
    """Exactness: with a large step, a short warm-up that cannot estimate a mass (the unit mass
    is kept) and short trajectories, the Metropolis step keeps the target: chains started at
    exact draws stay at its moments."""
    mean = torch.zeros(2, dtype=torch.float64)
    var = torch.tensor([1.0, 1.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    init = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    result = hmc.sample(gaussian(mean, var), init, n_draws=3000, n_warmup=4, n_leapfrog=3,
                        step_size=2.2, generator=gen)
    assert torch.equal(result.inverse_mass, torch.ones(8, 2, dtype=torch.float64))  # kept
    check_moments(result.draws, mean.numpy(), var.numpy())


def logistic_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    w = torch.tensor([1.5, -1.0], dtype=torch.float64)
    y = (torch.rand(20, generator=gen, dtype=torch.float64) < torch.sigmoid(x @ w)).double()
    return x, y


def logistic_log_density(q: torch.Tensor):
    """Bayesian logistic regression, prior N(0, I), batched over rows of q (C, 2)."""
    x, y = logistic_data()
    logits = q @ x.T  # (C, n)
    loglik = (y * logits - torch.nn.functional.softplus(logits)).sum(1)
    grad = (y - torch.sigmoid(logits)) @ x - q
    return loglik - 0.5 * q.square().sum(1), grad


def test_a_logistic_regression_posterior_matches_its_grid_integral():
    """Posterior mean and variance of a 2-D Bayesian logistic regression, integrated on a
    401 x 401 grid (an independent reference), against four chains started apart."""
    grid = torch.linspace(-6, 6, 401, dtype=torch.float64)
    w1, w2 = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([w1.flatten(), w2.flatten()], 1)
    logp = logistic_log_density(points)[0]
    weights = (logp - logp.max()).exp()
    weights = weights / weights.sum()
    mean = (weights[:, None] * points).sum(0)
    var = (weights[:, None] * (points - mean).square()).sum(0)
    init = torch.tensor([[3.0, 3.0], [-3.0, -3.0], [3.0, -3.0], [-3.0, 3.0]],
                        dtype=torch.float64)
    result = hmc.sample(logistic_log_density, init, n_draws=2000, n_warmup=500, n_leapfrog=6,
                        generator=torch.Generator().manual_seed(2))
    check_moments(result.draws, mean.numpy(), var.numpy())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="chains, d"):
        hmc.sample(gaussian(torch.zeros(2), torch.ones(2)), torch.zeros(2), 10, 10)
    with pytest.raises(ValueError, match="n_warmup >= 4"):
        hmc.sample(gaussian(torch.zeros(2), torch.ones(2)), torch.zeros(1, 2), 10, 2)
