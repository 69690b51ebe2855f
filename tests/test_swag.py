"""Tests for bprior_core.priors.swag.SWAG against numpy on known snapshots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bprior_core.priors.gaussian import GaussianPrior
from bprior_core.priors.swag import SWAG


def snapshots(n: int = 6, d: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(loc=0.3, scale=0.1, size=(n, d))


def collect_all(x: np.ndarray, max_rank: int, dtype=torch.float64) -> SWAG:
    swag = SWAG(max_rank=max_rank)
    for row in x:
        swag.collect(torch.tensor(row, dtype=dtype))
    return swag


def test_moments_and_factor_match_numpy() -> None:
    x = snapshots()
    swag = collect_all(x, max_rank=3)
    assert swag.n_collected == 6
    np.testing.assert_allclose(swag.mean.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(swag.variance.numpy(), np.var(x, axis=0, ddof=0), rtol=1e-10)
    np.testing.assert_allclose(swag.sq_mean.numpy(), (x**2).mean(0), rtol=1e-12)
    running_means = np.cumsum(x, axis=0) / np.arange(1, 7)[:, None]
    expected_devs = (x - running_means)[-3:]
    np.testing.assert_allclose(swag.deviations.numpy(), expected_devs, rtol=1e-10, atol=1e-14)
    prior = swag.to_prior(meta={"param_names": ["a"]})
    assert isinstance(prior, GaussianPrior) and prior.rank == 3
    np.testing.assert_allclose(prior.cov_factor.numpy(), expected_devs / math.sqrt(2), rtol=1e-10)
    np.testing.assert_allclose(prior.variance.numpy(), np.var(x, axis=0), rtol=1e-10)
    assert prior.meta["param_names"] == ["a"]
    assert prior.meta["learned_by"]["method"] == "SWAG"
    assert prior.meta["learned_by"]["n_snapshots"] == 6


def test_ring_buffer_keeps_last_k_oldest_first() -> None:
    x = snapshots(n=5, d=4, seed=1)
    swag = SWAG(max_rank=2)
    for i, row in enumerate(x):
        swag.collect(torch.tensor(row))
        assert swag.deviations.shape == (min(i + 1, 2), 4)
    running_means = np.cumsum(x, axis=0) / np.arange(1, 6)[:, None]
    np.testing.assert_allclose(swag.deviations.numpy(), (x - running_means)[3:], atol=1e-14)


def test_float32_input_keeps_small_variances() -> None:
    """Variances ~1e-12 around weights ~1 vanish with float32 E[x^2]-E[x]^2; float64 keeps them."""
    rng = np.random.default_rng(2)
    x = (1.0 + 1e-6 * rng.standard_normal((50, 3))).astype(np.float32)
    swag = collect_all(x, max_rank=4, dtype=torch.float32)
    assert swag.variance.dtype == torch.float32 and swag.deviations.dtype == torch.float32
    expected = np.var(x.astype(np.float64), axis=0)
    np.testing.assert_allclose(swag.variance.numpy(), expected, rtol=1e-4)


def test_to_prior_needs_two_snapshots_and_rank_rules() -> None:
    swag = SWAG(max_rank=3)
    with pytest.raises(ValueError, match="at least 2 snapshots.*collected 0"):
        swag.to_prior()
    swag.collect(torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2 snapshots.*collected 1"):
        swag.to_prior()
    swag.collect(torch.full((4,), 2.0, dtype=torch.float64))
    prior = swag.to_prior()  # 2 deviations -> rank 2 (the first deviation is exactly 0)
    assert prior.rank == 2
    rank0 = collect_all(snapshots(n=4), max_rank=1).to_prior()  # K = 1: no covariance estimate
    assert rank0.rank == 0
    no_devs = collect_all(snapshots(n=4), max_rank=0)
    assert no_devs.deviations.shape == (0, 5) and no_devs.to_prior().rank == 0


def test_variance_floor_for_constant_parameter() -> None:
    x = snapshots(n=4, d=3)
    x[:, 1] = 0.5  # a parameter that never moves
    swag = collect_all(x, max_rank=2, dtype=torch.float32)
    assert float(swag.variance[1]) == pytest.approx(1e-30)
    assert swag.to_prior().variance.min() > 0
    custom = collect_all(x, max_rank=2)
    custom_floor = SWAG(max_rank=2, var_floor=1e-8)
    for row in x:
        custom_floor.collect(torch.tensor(row))
    assert float(custom_floor.variance[1]) == 1e-8 and float(custom.variance[1]) == 1e-30


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="max_rank must be a non-negative int"):
        SWAG(max_rank=-1)
    with pytest.raises(ValueError, match="var_floor must be finite and > 0"):
        SWAG(max_rank=2, var_floor=0.0)
    swag = SWAG(max_rank=2)
    with pytest.raises(ValueError, match="1-D tensor"):
        swag.collect(torch.zeros(2, 2))
    swag.collect(torch.zeros(3))
    with pytest.raises(ValueError, match="differs from first"):
        swag.collect(torch.zeros(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        swag.collect(torch.tensor([0.0, float("nan"), 0.0]))


def test_collect_copies_the_snapshot() -> None:
    swag = SWAG(max_rank=2)
    p = torch.zeros(3, dtype=torch.float64)
    swag.collect(p)
    p += 1.0  # in-place parameter update after collecting must not change the statistics
    swag.collect(p)
    np.testing.assert_allclose(swag.mean.numpy(), [0.5, 0.5, 0.5])


def test_state_dict_round_trip(tmp_path) -> None:
    x = snapshots(n=7, d=5, seed=3)
    full = collect_all(x, max_rank=3, dtype=torch.float32)
    part = collect_all(x[:4], max_rank=3, dtype=torch.float32)
    torch.save(part.state_dict(), tmp_path / "swag.pt")
    resumed = SWAG(max_rank=1)
    resumed.load_state_dict(torch.load(tmp_path / "swag.pt", weights_only=True))
    for row in x[4:]:
        resumed.collect(torch.tensor(row, dtype=torch.float32))
    assert resumed.n_collected == 7 and resumed.max_rank == 3
    assert resumed.mean.equal(full.mean) and resumed.variance.equal(full.variance)
    assert resumed.deviations.equal(full.deviations)
