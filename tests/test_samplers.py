"""Tests for bprior_core.sgmcmc (SGLD / SGHMC correctness) and bprior_core.schedules."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from bprior_core.sgmcmc.langevin import authors_to_ours
from bprior_core.sgmcmc.schedules import (
    ConstantSchedule,
    CosineSchedule,
    CyclicalSchedule,
    ScheduleStep,
)
from bprior_core.sgmcmc.sghmc import SGHMC
from bprior_core.sgmcmc.sgld import SGLD

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _single_thread():
    """Run on one intra-op thread: these tensors are tiny and thread hand-offs dominate (10-50x
    slower on a busy machine with the default thread count). Restores the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _correlated_gaussian(d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A mean and a correlated covariance (eigenvalues in [0.5, 2]) in ``d`` dimensions."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    eig = torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    return mu, q @ torch.diag(eig) @ q.T


def _run_chains(make_opt, grad_fn, theta0: torch.Tensor, burn: int, n_keep: int, thin: int):
    """Run a batch of chains; return the kept states stacked as (n_keep * n_chains, d).

    ``theta0`` is (n_chains, d); ``grad_fn(theta)`` returns per-chain gradients of the MEAN loss
    L (the loss is the sum over chains of per-chain L, so chains do not interact).
    """
    theta = theta0.clone().requires_grad_(True)
    opt = make_opt([theta])
    kept = []
    for k in range(burn + n_keep * thin):
        theta.grad = grad_fn(theta.detach())
        opt.step()
        if k >= burn and (k - burn) % thin == thin - 1:
            kept.append(theta.detach().clone())
    return torch.cat(kept)


def _mean_cov(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean and covariance of rows."""
    return samples.mean(0), torch.cov(samples.T)


def _assert_moments(samples, mu, sigma, mean_tol: float, cov_rel_tol: float) -> None:
    """Mean within ``mean_tol`` * sqrt(largest variance); covariance within relative Frobenius."""
    mean, cov = _mean_cov(samples)
    scale = sigma.diagonal().max().sqrt()
    assert (mean - mu).abs().max() < mean_tol * scale, (mean, mu)
    rel = torch.linalg.matrix_norm(cov - sigma) / torch.linalg.matrix_norm(sigma)
    assert rel < cov_rel_tol, (rel, cov, sigma)


# ---------------------------------------------------------------------------------------------
# Recovering a known Gaussian
# ---------------------------------------------------------------------------------------------

# U(theta) = 0.5 (theta - mu)^T P (theta - mu), L = U / N, target exp(-U / T) = N(mu, T Sigma).
# Step on U is h = lr / N; lr is chosen so h * lambda_max(P) = 0.01, which biases the SGLD
# covariance by about h * lambda / 2 <= 0.5 %. 4000 chains x 10 snapshots spaced beyond the
# autocorrelation time give ~40k nearly independent draws: the relative Frobenius error of the
# sample covariance has a standard error of ~1 % and the mean error ~0.5 % of sqrt(max var).
# Tolerances: covariance 4 % (> 3 SE + bias; observed 0.4-1.3 %), mean 0.03 sqrt(max var)
# (> 5 SE; observed < 1 %). A noise scale off by sqrt(2) would shift the covariance by 50-100 %.


@pytest.mark.parametrize(
    ("d", "num_data", "temperature"),
    [(3, 1, 1.0), (4, 10, 1.0), (3, 10, 0.5), (2, 1, 2.0)],
)
def test_sgld_recovers_gaussian(d: int, num_data: int, temperature: float) -> None:
    mu, sigma = _correlated_gaussian(d, seed=d)
    precision = torch.linalg.inv(sigma)
    lam_max = torch.linalg.eigvalsh(precision).max().item()
    lr = 0.01 * num_data / lam_max
    gen = torch.Generator().manual_seed(num_data + d)

    def grad_fn(theta):
        return (theta - mu) @ precision / num_data

    samples = _run_chains(
        lambda p: SGLD(p, lr=lr, num_data=num_data, temperature=temperature, generator=gen),
        grad_fn,
        theta0=torch.zeros(4000, d, dtype=torch.float64),
        burn=2500,  # h * lambda_min = 0.0025 -> e^-6 of the initial offset is left
        n_keep=10,
        thin=400,
    )
    # Temperature T scales the covariance by T.
    _assert_moments(samples, mu, temperature * sigma, mean_tol=0.03, cov_rel_tol=0.04)


# SGHMC with friction 1 - momentum: the same target. h * lambda_max = 0.01 again; the chains
# mix in O(1 / sqrt(h lambda)) steps, so shorter runs suffice. Same tolerances as SGLD
# (observed 0.6-0.9 % covariance, < 1 % mean error).


@pytest.mark.parametrize(
    ("d", "num_data", "momentum", "temperature"),
    [(3, 10, 0.9, 1.0), (5, 1, 0.8, 1.0), (3, 1, 0.9, 0.5), (2, 10, 0.9, 2.0)],
)
def test_sghmc_recovers_gaussian(d: int, num_data: int, momentum: float, temperature: float):
    mu, sigma = _correlated_gaussian(d, seed=10 + d)
    precision = torch.linalg.inv(sigma)
    lam_max = torch.linalg.eigvalsh(precision).max().item()
    lr = 0.01 * num_data / lam_max
    gen = torch.Generator().manual_seed(1)

    def grad_fn(theta):
        return (theta - mu) @ precision / num_data

    samples = _run_chains(
        lambda p: SGHMC(
            p, lr=lr, num_data=num_data, momentum=momentum, temperature=temperature, generator=gen
        ),
        grad_fn,
        theta0=torch.zeros(4000, d, dtype=torch.float64),
        burn=1500,
        n_keep=10,
        thin=150,
    )
    _assert_moments(samples, mu, temperature * sigma, mean_tol=0.03, cov_rel_tol=0.04)


def test_sgld_with_gaussian_prior_recovers_prior() -> None:
    """With L = -log p(theta) / N only, SGLD samples the (rescaled) prior itself (T = 1)."""
    prior_mod = pytest.importorskip("bprior_core.priors.gaussian")

    g = torch.Generator().manual_seed(3)
    d, k, num_data, scale, eps = 4, 2, 5, 3.0, 0.01
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    variance = 0.1 + torch.rand(d, generator=g, dtype=torch.float64)
    cov_factor = 0.5 * torch.randn(k, d, generator=g, dtype=torch.float64)
    prior = prior_mod.GaussianPrior(mean, variance, cov_factor).rescaled(scale, eps=eps)
    # Dense covariance of the rescaled prior: scale * (diag(variance) + F^T F) + eps * I.
    sigma = scale * (torch.diag(variance) + cov_factor.T @ cov_factor) + eps * torch.eye(d)
    precision = torch.linalg.inv(sigma)
    # Cross-check the dense reference against log_prob: -Hessian of log p is the precision.
    hess = torch.autograd.functional.hessian(prior.log_prob, torch.zeros(d, dtype=torch.float64))
    torch.testing.assert_close(-hess, precision, rtol=1e-8, atol=1e-10)

    def per_chain_grad(theta):  # log_prob takes a (n_chains, D) batch; chains do not interact
        theta = theta.clone().requires_grad_(True)
        (-prior.log_prob(theta).sum() / num_data).backward()
        return theta.grad

    eig = torch.linalg.eigvalsh(precision)
    lr = 0.01 * num_data / eig.max().item()  # h * lambda_max = 0.01 as above
    relax = math.ceil(1 / (0.01 * eig.min().item() / eig.max().item()))  # steps per e-fold
    gen = torch.Generator().manual_seed(4)
    samples = _run_chains(
        lambda p: SGLD(p, lr=lr, num_data=num_data, generator=gen),
        per_chain_grad,
        theta0=torch.zeros(2000, d, dtype=torch.float64),
        burn=6 * relax,  # e^-6 of the initial offset left
        n_keep=10,
        thin=relax,
    )
    # 2000 chains x 10 snapshots (~20k draws): standard error ~1.4 % on the covariance and
    # ~0.7 % on the mean; tolerances 6 % and 0.04 sqrt(max var) (observed 1.2 % and 0.9 %).
    _assert_moments(samples, mean, sigma, mean_tol=0.04, cov_rel_tol=0.06)


# ---------------------------------------------------------------------------------------------
# Exact single steps
# ---------------------------------------------------------------------------------------------


def _params_with_grads() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two parameters with fixed gradients (float64)."""
    g = torch.Generator().manual_seed(7)
    params = [torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    grads = [torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    return params, grads


def _as_leaves(params, grads):
    """Fresh leaf tensors holding ``params`` with ``.grad`` set to ``grads``."""
    leaves = [p.clone().requires_grad_(True) for p in params]
    for leaf, gr in zip(leaves, grads, strict=True):
        leaf.grad = gr.clone()
    return leaves


def test_sgld_step_matches_hand_computed_update() -> None:
    params, grads = _params_with_grads()
    lr, n, t = 0.03, 7, 0.8
    leaves = _as_leaves(params, grads)
    SGLD(leaves, lr=lr, num_data=n, temperature=t,
         generator=torch.Generator().manual_seed(5)).step()
    ref_gen = torch.Generator().manual_seed(5)  # noise drawn per parameter, in order
    for leaf, p, gr in zip(leaves, params, grads, strict=True):
        xi = torch.randn(p.shape, generator=ref_gen, dtype=p.dtype)
        expected = p - lr * gr + math.sqrt(2 * lr * t / n) * xi
        torch.testing.assert_close(leaf.detach(), expected, rtol=0, atol=1e-14)


def test_sghmc_two_steps_match_hand_computed_update() -> None:
    params, grads = _params_with_grads()
    lr, n, m, t = 0.05, 3, 0.7, 1.5
    leaves = _as_leaves(params, grads)
    opt = SGHMC(leaves, lr=lr, num_data=n, momentum=m, temperature=t,
                generator=torch.Generator().manual_seed(9))
    opt.step()
    for leaf, gr in zip(leaves, grads, strict=True):
        leaf.grad = 2 * gr  # a different gradient for the second step
    opt.step()

    ref_gen = torch.Generator().manual_seed(9)
    std = math.sqrt(2 * (1 - m) * lr * t / n)
    xi1 = [torch.randn(p.shape, generator=ref_gen, dtype=p.dtype) for p in params]
    xi2 = [torch.randn(p.shape, generator=ref_gen, dtype=p.dtype) for p in params]
    for i, (p, gr) in enumerate(zip(params, grads, strict=True)):
        v1 = -lr * gr + std * xi1[i]  # velocity starts at 0
        v2 = m * v1 - lr * 2 * gr + std * xi2[i]
        torch.testing.assert_close(leaves[i].detach(), p + v1 + v2, rtol=0, atol=1e-14)


def test_authors_to_ours_matches_authors_update() -> None:
    """One step of the authors' SGLD equals one of ours under the mapped (lr, T), same noise."""
    theta = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    grad_l = torch.tensor([1.0, 0.5, -2.0], dtype=torch.float64)
    lr_a, t_a, n = 0.01, 0.3, 50
    xi = torch.randn(3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    # Authors: theta - lr_a * (1/2 grad L + xi_a * sqrt(2 T_a / lr_a)), T_a = t_a / N. Their noise
    # enters with a minus sign; xi_a = -xi has the same law, so that is the draw they get here.
    xi_a = -xi
    theirs = theta - lr_a * (0.5 * grad_l + xi_a * math.sqrt(2 * (t_a / n) / lr_a))

    lr, t = authors_to_ours(lr_a, t_a, n)
    assert lr == pytest.approx(lr_a / 2) and t == pytest.approx(2 * t_a)
    leaf = theta.clone().requires_grad_(True)
    leaf.grad = grad_l.clone()
    SGLD([leaf], lr=lr, num_data=n, temperature=t,
         generator=torch.Generator().manual_seed(2)).step()  # draws the same xi
    torch.testing.assert_close(leaf.detach(), theirs, rtol=0, atol=1e-14)


def test_noise_false_is_plain_gradient_descent() -> None:
    params, grads = _params_with_grads()
    results = []
    for seed in (0, 1):  # different generators: no randomness may leak in
        leaves = _as_leaves(params, grads)
        SGLD(leaves, lr=0.1, num_data=4, generator=torch.Generator().manual_seed(seed)).step(
            noise=False
        )
        results.append([leaf.detach() for leaf in leaves])
    for a, b, p, gr in zip(*results, params, grads, strict=True):
        torch.testing.assert_close(a, p - 0.1 * gr, rtol=0, atol=1e-15)
        assert torch.equal(a, b)


def test_noise_false_sghmc_is_heavy_ball() -> None:
    params, grads = _params_with_grads()
    leaves = _as_leaves(params, grads)
    opt = SGHMC(leaves, lr=0.1, num_data=4, momentum=0.5)
    opt.step(noise=False)
    opt.step(noise=False)  # same gradient: v2 = 0.5 v1 - 0.1 g = -0.15 g
    for leaf, p, gr in zip(leaves, params, grads, strict=True):
        torch.testing.assert_close(leaf.detach(), p - 0.25 * gr, rtol=0, atol=1e-15)


def test_zero_temperature_has_no_noise() -> None:
    params, grads = _params_with_grads()
    leaves = _as_leaves(params, grads)
    SGLD(leaves, lr=0.2, num_data=3, temperature=0.0).step()
    for leaf, p, gr in zip(leaves, params, grads, strict=True):
        torch.testing.assert_close(leaf.detach(), p - 0.2 * gr, rtol=0, atol=1e-15)


def test_lr_override_and_param_group_lr() -> None:
    params, grads = _params_with_grads()
    a = _as_leaves(params, grads)
    opt = SGLD(a, lr=1.0, num_data=1)
    opt.step(noise=False, lr=0.01)  # override for this step only
    assert opt.param_groups[0]["lr"] == 1.0
    b = _as_leaves(params, grads)
    opt_b = SGLD(b, lr=1.0, num_data=1)
    opt_b.param_groups[0]["lr"] = 0.01  # what a training loop with a schedule does
    opt_b.step(noise=False)
    for x, y, p, gr in zip(a, b, params, grads, strict=True):
        torch.testing.assert_close(x.detach(), p - 0.01 * gr, rtol=0, atol=1e-15)
        assert torch.equal(x.detach(), y.detach())


def test_closure_is_called_and_returned() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    opt = SGLD([w], lr=0.1, num_data=1, temperature=0.0)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    torch.testing.assert_close(w.detach(), torch.tensor([0.8, 1.6]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.0}, {"lr": -1.0}, {"lr": float("nan")}, {"num_data": 0}, {"num_data": 2.5},
        {"temperature": -0.1}, {"momentum": 1.0}, {"momentum": -0.1},
    ],
)
def test_invalid_sampler_arguments_raise(kwargs) -> None:
    args = {"lr": 0.1, "num_data": 10} | kwargs
    w = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError):
        SGHMC(w, **args)
    if "momentum" not in kwargs:
        with pytest.raises(ValueError):
            SGLD(w, **args)


def test_invalid_mapping_arguments_raise() -> None:
    with pytest.raises(ValueError):
        authors_to_ours(0.0, 1.0, 10)
    with pytest.raises(ValueError):
        authors_to_ours(0.1, -1.0, 10)
    with pytest.raises(ValueError):
        authors_to_ours(0.1, 1.0, 0)


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------

SCHEDULE_CONFIGS = [
    # (total_steps, n_cycles, explore_fraction, samples_per_cycle)
    (400, 4, 0.9, 3),  # cSG-MCMC CIFAR setting, divisible
    (1003, 4, 0.25, 3),  # the authors' beta, non-divisible total
    (97, 5, 0.5, 2),  # non-divisible, short cycles
    (60, 3, 0.9, 2),  # cycles of 20: j/L = 18/20 = 0.9 is not < 0.9, so 2 sampling steps
    (50, 1, 0.0, 5),  # one cycle, no exploration
    (1001, 7, 0.8, 4),
]


def _brute_force_cycle(step: int, total: int, n: int) -> int:
    """The cycle of ``step`` from the definition [c * total // n, (c + 1) * total // n)."""
    return next(c for c in range(n) if c * total // n <= step < (c + 1) * total // n)


@pytest.mark.parametrize(("total", "n", "frac", "spc"), SCHEDULE_CONFIGS)
def test_cyclical_schedule_structure(total: int, n: int, frac: float, spc: int) -> None:
    lr0 = 0.5
    sched = CyclicalSchedule(total, n, lr0, frac, spc)
    steps = list(sched)
    assert len(steps) == len(sched) == total
    assert all(isinstance(s, ScheduleStep) for s in steps)
    assert sum(s.collect for s in steps) == sched.n_samples == n * spc
    lengths = []
    for c in range(n):
        start, end = sched.cycle_bounds(c)
        cyc = steps[start:end]
        lengths.append(end - start)
        assert all(s.cycle == c == _brute_force_cycle(start, total, n) for s in cyc)
        assert cyc[0].lr == pytest.approx(lr0)  # lr0 at each cycle start
        assert cyc[-1].lr < 1e-2 * lr0  # near 0 at each end (cycles here have >= 16 steps)
        assert all(a.lr > b.lr for a, b in pairwise(cyc))  # decreasing within a cycle
        for j, s in enumerate(cyc):
            assert s.noise == (j / len(cyc) >= frac)  # no noise exploring, noise sampling
        assert sum(s.collect for s in cyc) == spc
        assert cyc[-1].collect  # the last step of each cycle is collected
        collected = [j for j, s in enumerate(cyc) if s.collect]
        assert all(cyc[j].noise for j in collected)  # collected steps are in the sampling phase
        assert len(set(b - a for a, b in pairwise(collected))) <= 1  # evenly spaced
    assert max(lengths) - min(lengths) <= 1 and sum(lengths) == total  # nothing truncated
    # Exploration phase is exactly the first steps with r < frac, so the phases never interleave.
    for c in range(n):
        start, end = sched.cycle_bounds(c)
        flags = [s.noise for s in steps[start:end]]
        assert flags == sorted(flags)


@pytest.mark.parametrize(("total", "n"), [(400, 4), (90, 3), (1000, 8)])
def test_cyclical_schedule_is_periodic(total: int, n: int) -> None:
    sched = CyclicalSchedule(total, n, 0.1, 0.3, 2)
    period = total // n  # equal-length cycles
    for k in range(total - period):
        a, b = sched.at(k), sched.at(k + period)
        assert (a.lr, a.noise, a.collect) == (b.lr, b.noise, b.collect)
        assert b.cycle == a.cycle + 1


@pytest.mark.parametrize(
    ("total", "n", "frac", "spc"),
    [
        (10, 0, 0.5, 1),  # no cycles
        (3, 4, 0.0, 1),  # more cycles than steps
        (0, 1, 0.0, 1),  # no steps
        (100, 4, 1.0, 1),  # no sampling phase
        (100, 4, -0.1, 1),
        (100, 4, 0.5, 0),  # no samples
        (100, 4, 0.9, 3),  # cycles of 25 have only 2 sampling steps
        (103, 4, 0.5, 13),  # shortest cycle (25) has 12 sampling steps
    ],
)
def test_cyclical_schedule_invalid_configs_raise(total, n, frac, spc) -> None:
    with pytest.raises(ValueError):
        CyclicalSchedule(total, n, 0.1, frac, spc)


def test_cyclical_schedule_error_says_what_to_change() -> None:
    with pytest.raises(ValueError, match="increase total_steps"):
        CyclicalSchedule(100, 4, 0.1, 0.9, 3)


def test_schedule_rejects_out_of_range_steps() -> None:
    sched = CyclicalSchedule(100, 4, 0.1, 0.5, 2)
    for bad in (-1, 100):
        with pytest.raises(ValueError):
            sched.at(bad)
    with pytest.raises(ValueError):
        CyclicalSchedule(100, 4, 0.0, 0.5, 2)  # lr0 must be > 0


def test_cosine_schedule() -> None:
    sched = CosineSchedule(200, 0.3)
    steps = list(sched)
    assert len(steps) == 200 and sched.n_samples == 1
    assert steps[0].lr == pytest.approx(0.3)
    assert steps[-1].lr < 1e-3 * 0.3
    assert steps[100].lr == pytest.approx(0.15)  # half way: lr0 / 2
    assert not any(s.noise for s in steps)
    assert [k for k, s in enumerate(steps) if s.collect] == [199]
    assert all(s.cycle == 0 for s in steps)
    assert all(s.noise for s in CosineSchedule(5, 0.1, noise=True))


def test_constant_schedule() -> None:
    steps = list(ConstantSchedule(10, 0.05))
    assert all(s.lr == 0.05 and not s.noise for s in steps)
    assert [k for k, s in enumerate(steps) if s.collect] == [9]


# ---------------------------------------------------------------------------------------------
# The public samplers with a stiff prior (issue 13): preconditioned, or an error, never NaN
# ---------------------------------------------------------------------------------------------


def _tiled_stiff_prior(chains: int, dim: int = 6, v0: float = 1e-6):
    """`chains` independent copies (block-diagonal) of one stiff prior: variances in
    [0.1, 1] x v0 and a rank-2 part adding about v0 more; returns (tiled prior, one copy)."""
    from bprior_core.priors.gaussian import GaussianPrior

    gen = torch.Generator().manual_seed(0)
    d = v0 * (0.1 + 0.9 * torch.rand(dim, generator=gen, dtype=torch.float64))
    factor = math.sqrt(v0) * 0.7 * torch.randn(2, dim, generator=gen, dtype=torch.float64)
    mean = torch.randn(dim, generator=gen, dtype=torch.float64)
    one = GaussianPrior(mean, d, factor)
    tiled = GaussianPrior(mean.repeat(chains), d.repeat(chains),
                          torch.block_diag(*[factor] * chains))
    return tiled, one


@pytest.mark.parametrize("cls", [SGLD, SGHMC])
@pytest.mark.parametrize("ratio", [1e3, 1e6])
def test_public_samplers_given_the_prior_sample_a_stiff_prior(cls, ratio) -> None:
    """On U = -log p (N = 1) with lr x largest prior curvature = ratio, the optimizer that is
    given the prior reaches mean and covariance T Sigma within 10 %; the same update as the
    engine (stiffness preconditioner)."""
    chains, temperature = 150, 0.5
    tiled, one = _tiled_stiff_prior(chains)
    lr = ratio * float(one.variance.min())
    gen = torch.Generator().manual_seed(1)
    theta = (tiled.mean + 3 * tiled.variance.sqrt()
             * torch.randn(tiled.dim, generator=gen, dtype=torch.float64)).requires_grad_(True)
    extra = {"momentum": 0.9} if cls is SGHMC else {}
    opt = cls([theta], lr=lr, num_data=1, temperature=temperature, generator=gen, prior=tiled,
              **extra)
    kept = []
    for k in range(2500):
        opt.zero_grad()
        (-tiled.log_prob(theta)).backward()
        opt.step()
        if k >= 500 and k % 5 == 0:
            kept.append(theta.detach().view(chains, -1).clone())
    x = torch.cat(kept)
    target = temperature * (one.variance.diag() + one.cov_factor.T @ one.cov_factor)
    sd = target.diagonal().sqrt()
    assert ((x.mean(0) - one.mean).abs() / sd).max() < 0.1
    ratio_var = torch.cov(x.T).diagonal() / target.diagonal()
    assert (ratio_var - 1).abs().max() < 0.1, ratio_var


def _stiff_classifier_setup(downstream_train, make_model, variance: float):
    """The README's pattern: a small ResNet, 50 training images, an isotropic prior at the
    initial backbone weights with a tiny variance (lr x curvature = 0.01 / (50 variance))."""
    from bprior_core.priors.gaussian import GaussianPrior
    from bprior_core.training.models import flat_parameters

    model = make_model(0)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(downstream_train), generator=gen)[:50]
    x, y = downstream_train.images[idx], downstream_train.labels[idx]
    prior = GaussianPrior.isotropic(flat_parameters(model.backbone).detach().clone(), variance)
    return model, x, y, prior


def _loss(model, x, y, prior):
    from bprior_core.training.models import flat_parameters

    ce = torch.nn.functional.cross_entropy(model(x), y)
    return ce - prior.log_prob(flat_parameters(model.backbone)) / len(y)


def test_public_sghmc_without_the_prior_refuses_a_step_that_diverges(
        downstream_train, make_model) -> None:
    """lr x prior curvature 2e4: the plain step blows up; the optimizer raises, saying why, and
    the weights stay those of the last finite step (it used to return NaN weights)."""
    model, x, y, prior = _stiff_classifier_setup(downstream_train, make_model, 1e-8)
    opt = SGHMC(model.parameters(), lr=0.01, num_data=50, temperature=1.0,
                generator=torch.Generator().manual_seed(0))
    with pytest.raises(FloatingPointError) as info:
        for _ in range(200):
            before = [p.detach().clone() for p in model.parameters()]
            opt.zero_grad()
            _loss(model, x, y, prior).backward()
            opt.step()
    assert "too stiff" in str(info.value) and "prior=" in str(info.value)
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_public_sghmc_given_the_prior_stays_finite_near_it(downstream_train, make_model) -> None:
    from bprior_core.training.models import flat_parameters

    model, x, y, prior = _stiff_classifier_setup(downstream_train, make_model, 1e-8)
    opt = SGHMC(model.parameters(), lr=0.01, num_data=50, temperature=1.0,
                generator=torch.Generator().manual_seed(0), prior=prior)
    for _ in range(100):
        opt.zero_grad()
        _loss(model, x, y, prior).backward()
        opt.step()
    theta = flat_parameters(model.backbone).detach()
    assert torch.isfinite(theta).all()
    # pinned by the prior: about one prior standard deviation from its mean per coordinate
    rms = float(((theta - prior.mean) / prior.variance.sqrt()).square().mean().sqrt())
    assert 0.3 < rms < 3.0, rms


def test_the_prior_must_cover_a_leading_block_of_the_parameters(make_model) -> None:
    from bprior_core.priors.gaussian import GaussianPrior
    from bprior_core.training.models import flat_parameters

    model = make_model(0)
    mean = flat_parameters(model.backbone).detach()
    prior = GaussianPrior.isotropic(mean[:-3].clone(), 1e-4)
    with pytest.raises(ValueError, match="do not start with a block"):
        SGLD(model.parameters(), lr=0.01, num_data=10, prior=prior)


def test_burn_in_cycles_collect_nothing_and_are_counted():
    sched = CyclicalSchedule(100, 4, 0.1, 0.5, 2, burn_in_cycles=1)
    collected = [k for k, step in enumerate(sched) if step.collect]
    assert all(sched.at(k).cycle >= 1 for k in collected) and len(collected) == 6
    assert sched.n_samples == 6 and sched.burn_in_samples == 2
    plain = CyclicalSchedule(100, 4, 0.1, 0.5, 2)
    assert [k for k, step in enumerate(plain) if step.collect][2:] == collected
    for bad in (4, 5, -1):
        with pytest.raises(ValueError, match="burn_in_cycles"):
            CyclicalSchedule(100, 4, 0.1, 0.5, 2, burn_in_cycles=bad)


def test_sghmc_rescales_the_velocity_when_the_step_size_changes():
    """v = sqrt(lr / N) r: after a step with lr1 and a gradient-free, noise-free step with lr2,
    v has been multiplied by momentum x sqrt(lr2 / lr1) (not by momentum alone)."""
    p = torch.zeros(3, requires_grad=True)
    opt = SGHMC([p], lr=0.04, num_data=1, momentum=0.5, temperature=0.0)
    p.grad = torch.ones(3)
    opt.step()
    v1 = opt.state[p]["velocity"].clone()
    assert torch.allclose(v1, torch.full((3,), -0.04))
    p.grad = torch.zeros(3)
    opt.step(lr=0.01)
    assert torch.allclose(opt.state[p]["velocity"], v1 * 0.5 * math.sqrt(0.01 / 0.04))
