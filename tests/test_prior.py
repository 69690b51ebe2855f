"""Tests for bprior_core.priors.gaussian.GaussianPrior: density, sampling, transforms, file
formats."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch.distributions import MultivariateNormal

from bprior_core.priors.files import (
    load_authors_model_state,
    load_authors_prior,
    load_prior,
    save_authors_prior,
    save_prior,
)
from bprior_core.priors.gaussian import RESCALING_RULES, GaussianPrior, check_covers, rescale

D, K = 7, 3


def dense_cov(prior: GaussianPrior) -> torch.Tensor:
    """Dense Sigma for small test priors only."""
    f = prior.cov_factor
    return torch.diag(prior.variance) + f.T @ f


def make_prior(d: int = D, k: int = K, seed: int = 0, dtype=torch.float64) -> GaussianPrior:
    """Random prior with variances spread over several orders of magnitude."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(d, generator=g, dtype=dtype)
    variance = torch.exp(torch.randn(d, generator=g, dtype=dtype))
    factor = 0.7 * torch.randn(k, d, generator=g, dtype=dtype)
    return GaussianPrior(mean, variance, factor, meta={"param_names": ["w"], "note": "test"})


def mvn(prior: GaussianPrior) -> MultivariateNormal:
    return MultivariateNormal(prior.mean, covariance_matrix=dense_cov(prior))


TRANSFORMS = {
    "none": lambda p: p,
    "same_1e3": lambda p: p.rescaled(1e3),
    "same_eps": lambda p: p.rescaled(5.0, eps=0.3),
    "same_split": lambda p: p.rescaled(2.0, cov_scale=0.5, eps=0.1),
    "authors_1e2": lambda p: p.rescaled_authors(1e2),
    "authors_eps0": lambda p: p.rescaled_authors(3.0, eps=0.0),
}


# ----------------------------------------------------------------------------- log_prob


@pytest.mark.parametrize("rank", range(K + 1))
@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_log_prob_matches_dense_mvn(rank: int, transform: str) -> None:
    prior = TRANSFORMS[transform](make_prior().truncated(rank))
    noise = torch.randn(D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    theta = prior.mean + noise
    expected = mvn(prior).log_prob(theta)
    torch.testing.assert_close(prior.log_prob(theta), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [0, 1, K])
def test_log_prob_gradient_matches_autograd_and_analytic(rank: int) -> None:
    prior = make_prior().truncated(rank).rescaled(4.0, eps=0.1)
    base = torch.randn(D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    theta = base.clone().requires_grad_(True)
    prior.log_prob(theta).backward()
    theta_ref = base.clone().requires_grad_(True)
    mvn(prior).log_prob(theta_ref).backward()
    analytic = -torch.linalg.solve(dense_cov(prior), base - prior.mean)
    torch.testing.assert_close(theta.grad, theta_ref.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(theta.grad, analytic, rtol=1e-9, atol=1e-12)


def test_log_prob_batched_and_float32() -> None:
    prior = make_prior()
    thetas = torch.randn(5, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(prior.log_prob(thetas), mvn(prior).log_prob(thetas))
    p32 = prior.to(dtype=torch.float32)
    out32 = p32.log_prob(thetas[0].float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), mvn(prior).log_prob(thetas[0]), rtol=1e-5, atol=1e-5)


def test_log_prob_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"theta must have shape \(D,\) = \(7,\)"):
        make_prior().log_prob(torch.zeros(8, dtype=torch.float64))


def chunked_float64_log_prob(mean, variance, factor, theta, chunk: int = 1 << 21) -> float:
    """Reference log-density in float64, accumulated over column chunks to bound memory."""
    k = factor.shape[0]
    u = torch.zeros(k, dtype=torch.float64)
    cap = torch.eye(k, dtype=torch.float64)
    quad1 = logdet_d = 0.0
    for s in range(0, mean.numel(), chunk):
        r = (theta[s:s + chunk] - mean[s:s + chunk]).double()
        v = variance[s:s + chunk].double()
        f = factor[:, s:s + chunk].double()
        u += f @ (r / v)
        cap += (f / v) @ f.T
        quad1 += float((r * r / v).sum())
        logdet_d += float(v.log().sum())
    quad = quad1 - float(u @ torch.linalg.solve(cap, u))
    logdet = logdet_d + float(torch.linalg.slogdet(cap)[1])
    return -0.5 * (mean.numel() * math.log(2 * math.pi) + logdet + quad)


@pytest.fixture
def one_thread():
    """Run single-threaded: on a busy 2-vCPU runner, OpenMP's 2 threads made these memory-bound
    D-length ops 3-7x slower; restores the thread count afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_large_prior_log_prob_and_backward_without_dense_matrix(one_thread) -> None:
    """D = 23.5M (ResNet-50 scale), K = 10, float32: a D x D matrix would be ~2 PB, so merely
    finishing proves none is formed; we also bound the time and check the value independently.
    """
    d, k = 23_500_000, 10
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(d, generator=g).mul_(0.05)
    variance = torch.rand(d, generator=g).mul_(0.1).add_(1e-3)
    factor = torch.rand(k, d, generator=g).sub_(0.5).mul_(0.06)
    theta = (mean + 0.01 * torch.randn(d, generator=g)).requires_grad_(True)
    start = time.perf_counter()
    prior = GaussianPrior(mean, variance, factor)
    lp = prior.log_prob(theta)
    lp.backward()
    elapsed = time.perf_counter() - start
    assert torch.isfinite(lp) and bool(torch.isfinite(theta.grad).all())
    assert elapsed < 30, f"construction + log_prob + backward took {elapsed:.1f} s"
    # Independent check: the density of the first 2000 coordinates (marginal of a Gaussian).
    sl = slice(0, 2000)
    sub = GaussianPrior(mean[sl].double(), variance[sl].double(), factor[:, sl].double())
    ref = mvn(sub).log_prob(theta.detach()[sl].double())
    torch.testing.assert_close(sub.log_prob(theta.detach()[sl].double()), ref)
    # Full-size value against a float64 Woodbury (solve + slogdet) built here in column chunks.
    expected = chunked_float64_log_prob(mean, variance, factor, theta.detach())
    assert float(lp.detach()) == pytest.approx(float(expected), rel=1e-6)


# ----------------------------------------------------------------------------- sampling


def test_sample_mean_and_covariance_match() -> None:
    prior = make_prior(d=4, k=2, seed=5)
    x = prior.sample(200_000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (200_000, 4)
    sigma = dense_cov(prior)
    scale = sigma.diagonal().sqrt()
    # mean: standard error sqrt(Sigma_ii / n) ~ 0.002 * scale; allow ~5 SE
    torch.testing.assert_close(x.mean(0), prior.mean, atol=0.012 * float(scale.max()), rtol=0)
    # covariance: relative to sqrt(Sigma_ii Sigma_jj), SE ~ sqrt(2/n) ~ 0.003; allow 0.02
    corr_err = (torch.cov(x.T) - sigma) / torch.outer(scale, scale)
    assert float(corr_err.abs().max()) < 0.02


def test_sample_uses_standard_deviation_coverage() -> None:
    """Regression test for the SWAG bug (variance * randn instead of sqrt(variance) * randn)."""
    d = 6
    variance = torch.tensor([1e-2, 1e-2, 1e-2, 1e2, 1e2, 1e2], dtype=torch.float64)
    factor = torch.zeros(1, d, dtype=torch.float64)
    factor[0, 0], factor[0, 3] = 0.05, 5.0
    prior = GaussianPrior(torch.zeros(d, dtype=torch.float64), variance, factor)
    x = prior.sample(100_000, generator=torch.Generator().manual_seed(0))
    half_width = 1.96 * prior.diag_of_covariance().sqrt()
    coverage = ((x - prior.mean).abs() <= half_width).double().mean(0)
    # binomial SE at n = 1e5 is ~0.0007; the bug would give ~0.05 or ~1.0 coverage
    assert torch.all((coverage - 0.95).abs() < 0.005), coverage


def test_sample_rank_zero_and_rejects_bad_n() -> None:
    prior = make_prior().truncated(0)
    assert prior.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, D)
    with pytest.raises(ValueError, match="non-negative int"):
        prior.sample(-1)


# ----------------------------------------------------------------------------- transforms


def test_truncated_keeps_first_rows_and_errors() -> None:
    prior = make_prior()
    t = prior.truncated(2)
    assert t.rank == 2 and prior.rank == K
    torch.testing.assert_close(dense_cov(t), torch.diag(prior.variance)
                               + prior.cov_factor[:2].T @ prior.cov_factor[:2])
    assert t.meta["transforms"] == [{"op": "truncated", "rank": 2}]
    with pytest.raises(ValueError, match="requested rank 7 but this prior stores only 3 low-rank"):
        prior.truncated(7)
    with pytest.raises(ValueError, match="rank must be >= 0"):
        prior.truncated(-1)


def test_rescaled_same_rule_dense() -> None:
    prior = make_prior()
    f, v = prior.cov_factor, prior.variance
    out = prior.rescaled(10.0, cov_scale=3.0, eps=0.5)
    torch.testing.assert_close(dense_cov(out), 10.0 * torch.diag(v) + 3.0 * f.T @ f
                               + 0.5 * torch.eye(D, dtype=torch.float64))
    torch.testing.assert_close(dense_cov(prior.rescaled(7.0)), 7.0 * dense_cov(prior))
    same = rescale(prior, 7.0, "same")
    torch.testing.assert_close(same.cov_factor, prior.rescaled(7.0).cov_factor)


def test_rescaled_authors_rule_dense() -> None:
    prior = make_prior()
    f, v = prior.cov_factor, prior.variance
    s = 1e4
    expected = s**2 * f.T @ f + torch.diag(s * v + 0.1)
    torch.testing.assert_close(dense_cov(prior.rescaled_authors(s)), expected)
    torch.testing.assert_close(dense_cov(rescale(prior, s, "authors", eps=0.1)), expected)
    assert set(RESCALING_RULES) == {"same", "authors"}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: p.rescaled(0.0), "variance_scale must be finite and > 0"),
        (lambda p: p.rescaled(float("inf")), "variance_scale must be finite"),
        (lambda p: p.rescaled(1.0, cov_scale=-1.0), "cov_scale must be finite and >= 0"),
        (lambda p: p.rescaled(1.0, eps=-0.1), "eps must be finite and >= 0"),
        (lambda p: p.rescaled_authors(-2.0), "s must be finite and > 0"),
        (lambda p: rescale(p, 2.0, rule="bogus"), "unknown rescaling rule 'bogus'; valid rules: "
                                                  "'same', 'authors'"),
    ],
)
def test_rescale_bad_arguments(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(make_prior())


def test_rescaled_cov_scale_zero_removes_low_rank() -> None:
    prior = make_prior().rescaled(2.0, cov_scale=0.0)
    torch.testing.assert_close(dense_cov(prior), 2.0 * torch.diag(make_prior().variance))


def test_isotropic_and_trace_matched() -> None:
    mean = torch.arange(D, dtype=torch.float64)
    iso = GaussianPrior.isotropic(mean, 0.25)
    assert iso.rank == 0 and iso.cov_factor.shape == (0, D)
    theta = torch.ones(D, dtype=torch.float64)
    expected = MultivariateNormal(mean, 0.25 * torch.eye(D, dtype=torch.float64)).log_prob(theta)
    torch.testing.assert_close(iso.log_prob(theta), expected)
    zero = GaussianPrior.isotropic(torch.zeros(D, dtype=torch.float64), 1e5)
    assert float(zero.mean.abs().max()) == 0.0 and float(zero.variance[0]) == 1e5
    prior = make_prior()
    tm = prior.trace_matched_isotropic()
    assert float(tm.variance.sum()) == pytest.approx(float(dense_cov(prior).trace()))
    with pytest.raises(ValueError, match="isotropic variance must be finite and > 0"):
        GaussianPrior.isotropic(mean, -1.0)


def test_diag_of_covariance_matches_dense() -> None:
    prior = make_prior()
    torch.testing.assert_close(prior.diag_of_covariance(), dense_cov(prior).diagonal())
    assert prior.variance.equal(make_prior().variance)  # not modified in place


def test_to_returns_new_prior() -> None:
    prior = make_prior()
    p32 = prior.to(dtype=torch.float32)
    assert p32.dtype == torch.float32 and prior.dtype == torch.float64
    assert p32.cov_factor.dtype == torch.float32 and p32.meta == prior.meta


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variance": torch.tensor([1.0, -0.2, -0.1, -0.05, 1.0])},
         r"variance has 3 negative entries \(min -0.2\); variances must be > 0"),
        ({"variance": torch.tensor([1.0, float("nan"), 1.0, 1.0, 1.0])}, "variance has NaN"),
        ({"variance": torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0])}, "variance has 1 zero entries"),
        ({"variance": torch.tensor([1.0, float("inf"), 1.0, 1.0, 1.0])}, "variance has infinite"),
        ({"mean": torch.tensor([0.0, float("nan"), 0.0, 0.0, 0.0])}, "mean has NaN"),
        ({"variance": torch.ones(4)}, "mean has 5 entries but variance has 4"),
        ({"mean": torch.zeros(5, 1)}, r"mean must be 1-D"),
        ({"cov_factor": torch.ones(2, 4)}, r"cov_factor must be 2-D \(K, D\) with D=5 columns"),
        ({"cov_factor": torch.ones(5)}, r"cov_factor must be 2-D"),
        ({"cov_factor": torch.ones(2, 5, dtype=torch.float64)}, "must share dtype"),
        ({"variance": torch.ones(5, dtype=torch.float64)}, "must share dtype"),
        ({"meta": {"x": object()}}, "meta must be JSON-serializable"),
    ],
)
def test_constructor_rejects_bad_inputs(kwargs: dict, match: str) -> None:
    args = {"mean": torch.zeros(5), "variance": torch.ones(5), "cov_factor": None, "meta": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GaussianPrior(**args)


def test_defaults_rank_zero_and_empty_meta() -> None:
    prior = GaussianPrior(torch.zeros(5), torch.ones(5))
    assert prior.rank == 0 and prior.dim == 5 and prior.meta == {}
    assert prior.cov_factor.shape == (0, 5)


# ----------------------------------------------------------------------------- own file format


def test_save_load_round_trip(tmp_path) -> None:
    prior = make_prior().truncated(2)
    path = tmp_path / "sub" / "prior.pt"
    save_prior(prior, path)
    loaded = load_prior(path, expected_dim=D)
    assert loaded.mean.equal(prior.mean) and loaded.variance.equal(prior.variance)
    assert loaded.cov_factor.equal(prior.cov_factor) and loaded.rank == 2
    assert loaded.meta == prior.meta and loaded.meta["param_names"] == ["w"]
    assert [p.name for p in path.parent.iterdir()] == ["prior.pt"]  # no temp file left
    theta = torch.zeros(D, dtype=torch.float64)
    assert float(loaded.log_prob(theta)) == float(prior.log_prob(theta))


def test_save_of_truncated_view_stores_only_kept_rows(tmp_path) -> None:
    big = make_prior(d=50_000, k=8)
    save_prior(big.truncated(1), tmp_path / "a.pt")
    save_prior(big, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").stat().st_size < 0.5 * (tmp_path / "b.pt").stat().st_size


def test_load_errors(tmp_path) -> None:
    prior = make_prior()
    path = tmp_path / "prior.pt"
    save_prior(prior, path)
    with pytest.raises(ValueError, match=f"prior.pt has D={D} parameters but the model's "
                                         "backbone has 23508032"):
        load_prior(path, expected_dim=23_508_032)
    with pytest.raises(FileNotFoundError, match="prior file not found: .*nope.pt"):
        load_prior(tmp_path / "nope.pt")
    torch.save({"format": "something-else", "mean": prior.mean}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a bprior prior file: format tag 'something-else'"):
        load_prior(tmp_path / "bad.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="not a bprior prior file"):
        load_prior(tmp_path / "tensor.pt")


def test_load_rejects_header_mismatch_and_invalid_tensors(tmp_path) -> None:
    prior = make_prior()
    save_prior(prior, tmp_path / "p.pt")
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    payload["rank"] = 5
    torch.save(payload, tmp_path / "rank.pt")
    with pytest.raises(ValueError, match="header says dim=7, rank=5"):
        load_prior(tmp_path / "rank.pt")
    payload["rank"] = K
    payload["variance"] = -payload["variance"]
    torch.save(payload, tmp_path / "neg.pt")
    with pytest.raises(ValueError, match="variance has 7 negative entries"):
        load_prior(tmp_path / "neg.pt")


# ----------------------------------------------------------------------------- authors' format


def test_authors_files_round_trip(tmp_path) -> None:
    prior = make_prior().to(dtype=torch.float32)
    state = {"conv.weight": torch.randn(2, 3), "bn.running_mean": torch.zeros(2)}
    prefix = tmp_path / "simclr"
    save_authors_prior(prior, prefix, backbone_state_dict=state)
    assert torch.load(f"{prefix}_covmat.pt", weights_only=True).shape == (K, D)
    loaded, loaded_state = load_authors_prior(prefix, model_state=True)
    assert loaded.mean.equal(prior.mean) and loaded.variance.equal(prior.variance)
    assert loaded.cov_factor.equal(prior.cov_factor)
    assert loaded.meta["stored_rank"] == K
    assert loaded_state.keys() == state.keys()
    assert all(loaded_state[k].equal(v) for k, v in state.items())
    assert load_authors_model_state(prefix)["conv.weight"].equal(state["conv.weight"])
    two = load_authors_prior(prefix, rank=2)
    assert two.rank == 2 and two.cov_factor.equal(prior.cov_factor[:2])


def test_authors_files_without_model_file(tmp_path) -> None:
    prefix = tmp_path / "p"
    save_authors_prior(make_prior(), prefix)
    assert load_authors_prior(prefix).rank == K
    with pytest.raises(FileNotFoundError, match=r"p_model\.pt \(the 'model' file\).*four files"):
        load_authors_prior(prefix, model_state=True)


@pytest.mark.parametrize("missing", ["mean", "variance", "covmat"])
def test_authors_files_missing_file_is_named(tmp_path, missing: str) -> None:
    prefix = tmp_path / "p"
    save_authors_prior(make_prior(), prefix, backbone_state_dict={"w": torch.zeros(1)})
    (tmp_path / f"p_{missing}.pt").unlink()
    with pytest.raises(FileNotFoundError, match=rf"p_{missing}\.pt \(the '{missing}' file\); "
                                                "the authors' format expects four files"):
        load_authors_prior(prefix)


def test_authors_files_rank_and_variance_floor(tmp_path) -> None:
    prefix = tmp_path / "p"
    prior = make_prior()
    save_authors_prior(prior, prefix)
    with pytest.raises(ValueError, match="requested rank 7 but this prior stores only 3"):
        load_authors_prior(prefix, rank=7)
    bad = prior.variance.clone()
    bad[0], bad[1] = 0.0, -1e-9
    torch.save(bad, f"{prefix}_variance.pt")
    with pytest.raises(ValueError, match="has 2 non-positive entries.*variance_floor"):
        load_authors_prior(prefix)
    floored = load_authors_prior(prefix, variance_floor=1e-8)
    assert floored.variance[:2].tolist() == [1e-8, 1e-8]
    assert floored.variance[2:].equal(prior.variance[2:])
    assert floored.meta["n_variance_clamped"] == 2


def test_authors_files_transposed_covmat(tmp_path) -> None:
    prefix = tmp_path / "p"
    prior = make_prior()
    save_authors_prior(prior, prefix)
    torch.save(prior.cov_factor.T.contiguous(), f"{prefix}_covmat.pt")
    with pytest.raises(ValueError, match="looks transposed"):
        load_authors_prior(prefix)


def test_principal_truncation_keeps_the_best_low_rank_approximation() -> None:
    gen = torch.Generator().manual_seed(0)
    factor = torch.randn(6, 30, generator=gen, dtype=torch.float64)
    prior = GaussianPrior(torch.zeros(30, dtype=torch.float64),
                          torch.ones(30, dtype=torch.float64), factor)
    u, s, vt = torch.linalg.svd(factor, full_matrices=False)
    for r in (0, 1, 3, 6):
        kept = prior.principal(r)
        assert kept.rank == r
        best = (vt[:r].T * s[:r] ** 2) @ vt[:r]  # Eckart-Young: best rank-r approximation
        assert torch.allclose(kept.cov_factor.T @ kept.cov_factor, best, atol=1e-10)
        # the trace of the low-rank part grows with r only through the kept singular values
        assert math.isclose(float((kept.cov_factor ** 2).sum()), float((s[:r] ** 2).sum()),
                            rel_tol=1e-10)
    # the order of the rows does not matter
    shuffled = GaussianPrior(prior.mean, prior.variance, factor[torch.randperm(6, generator=gen)])
    a, b = prior.principal(2), shuffled.principal(2)
    assert torch.allclose(a.cov_factor.T @ a.cov_factor, b.cov_factor.T @ b.cov_factor)
    with pytest.raises(ValueError, match="rank"):
        prior.principal(7)


def test_with_trace_fixes_the_total_variance() -> None:
    gen = torch.Generator().manual_seed(1)
    prior = GaussianPrior(torch.zeros(20, dtype=torch.float64),
                          torch.rand(20, generator=gen, dtype=torch.float64) + 0.1,
                          torch.randn(4, 20, generator=gen, dtype=torch.float64))
    target = float(prior.diag_of_covariance().sum())
    for r in (0, 2):
        fixed = prior.principal(r).with_trace(target)
        assert math.isclose(float(fixed.diag_of_covariance().sum()), target, rel_tol=1e-12)
    with pytest.raises(ValueError, match="below"):
        prior.with_trace(target / 2)
    # the full-rank prior at its own trace (as computed in float32 after rescaling, a hair
    # below its float64 sum) is left as it is, not refused
    same = prior.with_trace(target * (1 - 1e-12))
    assert torch.equal(same.variance, prior.variance)


def test_check_covers_names_the_prior_and_both_sizes() -> None:
    prior = make_prior()
    check_covers(prior, D)  # fits: no error
    with pytest.raises(ValueError, match=f"prior 'ssl' has D={D} parameters but the model's "
                                         f"backbone has {D + 1}; a prior fits only"):
        check_covers(prior, D + 1, "prior 'ssl'")
