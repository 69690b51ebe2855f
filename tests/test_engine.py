"""Tests for the packed engine: packed prior, packed vs one-by-one runs, gradients, divergence."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bprior_core.data import subsets
from bprior_core.data.device import BatchStream, DeviceTask
from bprior_core.priors.gaussian import GaussianPrior, rescale
from bprior_core.priors.packed import PackedPrior
from bprior_core.training.loop import train_pack
from bprior_core.training.models import build_model, flat_parameters
from bprior_core.training.pack import Pack
from bprior_core.training.packing import PackedClassifier, extract_run, load_run
from bprior_core.training.run import TrainSettings
from bprior_core.training.spec import RunSpec
from bprior_core.vocabulary import METHODS

SETTINGS = TrainSettings(steps=8, batch_size=8, lr=0.01, temperature=1e-3, cycles=2,
                         explore_fraction=0.25, samples_per_cycle=1, bn_refresh_batches=1,
                         eval_batch_size=64, burn_in_cycles=0)
CPU = torch.device("cpu")


def fresh_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("small_resnet", 5)


def random_prior(dim: int, rank: int, seed: int, dtype=torch.float64) -> GaussianPrior:
    gen = torch.Generator().manual_seed(seed)
    return GaussianPrior(torch.randn(dim, generator=gen, dtype=dtype),
                         torch.rand(dim, generator=gen, dtype=dtype) + 0.2,
                         torch.randn(rank, dim, generator=gen, dtype=dtype) * 0.5)


@pytest.fixture(scope="module")
def pool(downstream_train) -> DeviceTask:
    return DeviceTask.from_task(downstream_train, "cpu")


@pytest.fixture(scope="module")
def test_set(downstream_test) -> DeviceTask:
    return DeviceTask.from_task(downstream_test.subset(torch.arange(64)), "cpu")


@pytest.fixture(scope="module")
def learned_prior() -> GaussianPrior:
    """A well-conditioned rank-3 prior around the initial backbone (variances 1e-3 .. 2e-3)."""
    w = flat_parameters(fresh_model(0).backbone).detach()
    gen = torch.Generator().manual_seed(7)
    return GaussianPrior(w, 1e-3 + 1e-3 * torch.rand(w.shape, generator=gen),
                         0.02 * torch.randn(3, w.numel(), generator=gen))


def subset(pool: DeviceTask, n: int, seed: int) -> torch.Tensor:
    return subsets.few_shot_indices(pool.labels, n, "balanced", seed)


# ----------------------------------------------------------------------------- packed prior


def test_packed_prior_matches_gaussian_prior_value_and_gradient() -> None:
    """Runs with different ranks (0 included), a shared prior object and distinct ones."""
    dim = 40
    shared = random_prior(dim, 3, 0)
    priors = [shared, shared, random_prior(dim, 0, 1), random_prior(dim, 5, 2)]
    packed = PackedPrior(priors, "cpu")
    gen = torch.Generator().manual_seed(3)
    theta = torch.randn(len(priors), dim, generator=gen, dtype=torch.float64)
    grad = torch.zeros_like(theta)
    weight = torch.tensor([1.0, 0.5, 2.0, 0.1], dtype=torch.float64)
    values = packed.add_neg_log_prob_grad_(theta, grad, weight)
    for r, prior in enumerate(priors):
        t = theta[r].clone().requires_grad_(True)
        expected = prior.log_prob(t)
        (-expected).backward()
        assert math.isclose(float(values[r]), float(expected.detach()), rel_tol=1e-10)
        assert torch.allclose(grad[r], weight[r] * t.grad, rtol=1e-9, atol=1e-12)
        dense = torch.distributions.MultivariateNormal(
            prior.mean, torch.diag(prior.variance) + prior.cov_factor.T @ prior.cov_factor)
        assert math.isclose(float(packed.log_prob(theta)[r]), float(dense.log_prob(theta[r])),
                            rel_tol=1e-9)


def test_packed_prior_broadcasts_a_shared_mean() -> None:
    shared = random_prior(10, 2, 0)
    packed = PackedPrior([shared] * 3, "cpu")
    assert packed.mean.shape == (1, 10) and packed.variance.shape == (1, 10)
    assert len(packed.groups) == 1 and packed.groups[0][0] == slice(0, 3)


# ----------------------------------------------------------------------------- packing


def test_packed_network_equals_separate_networks(pool) -> None:
    """Forward pass of a pack of 3 differently initialised models = each model alone."""
    models = [fresh_model(s) for s in range(3)]
    packed = PackedClassifier(models[0], 3)
    for r, m in enumerate(models):
        load_run(packed, r, m)
    x = pool.images[:12].view(3, 4, 1, 28, 28)
    out = packed(x)
    for r, m in enumerate(models):
        assert torch.allclose(out[r], m(x[r]), atol=1e-5)
    back = extract_run(packed, 1, fresh_model(9))
    for a, b in zip(back.state_dict().values(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)


def _specs(pool, learned_prior, method: str, n: int = 10) -> list[RunSpec]:
    priors = [rescale(learned_prior, 10.0), learned_prior,
              GaussianPrior.isotropic(learned_prior.mean, 1e-2), learned_prior.truncated(1)]
    return [RunSpec(subset(pool, n, seed), seed, None if method == "sgd" else priors[seed],
                    lr=0.01 * (1 + seed), weight_decay=[1e-4, 0.0, 1e-3, 1e-2][seed],
                    temperature=[0.0, 1e-3, 1e-2, 1.0][seed])
            for seed in range(4)]


def _pack_and_singles(pool, test_set, prior, method, settings, dtype):
    specs = _specs(pool, prior.to(dtype=dtype), method)
    model = fresh_model(0).to(dtype)
    packed = Pack(model, pool, test_set, method, settings, specs, CPU, "fp32", False)
    alone = [Pack(model, pool, test_set, method, settings, [s], CPU, "fp32", False)
             for s in specs]
    return packed, alone


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("clip", [None, 0.5])
def test_packed_runs_equal_runs_one_by_one(pool, test_set, learned_prior, method, clip) -> None:
    """Four runs with their own seeds, priors, lr, weight decay and temperature, trained as a
    pack of 4 or each alone: in float64 their weights after 6 steps agree to 1e-12 (each run's
    arithmetic touches only its own slice), in float32 after a step to rounding (grouped and
    plain convolutions round differently; few-shot BatchNorm amplifies that over steps)."""
    settings = TrainSettings(**{**SETTINGS.__dict__, "grad_clip": clip})
    pool64 = DeviceTask(pool.images.double(), pool.labels, pool.num_classes)
    for dtype, data_pool, steps, tol in ((torch.float64, pool64, 6, 1e-12),
                                         (torch.float32, pool, 1, 1e-5)):
        packed, alone = _pack_and_singles(data_pool, test_set, learned_prior, method, settings,
                                          dtype)
        start = packed.weights.clone()
        for k in range(steps):
            packed.step(k)
            for single in alone:
                single.step(k)
        for r, single in enumerate(alone):
            assert (packed.weights[r] - start[r]).abs().max() > 1e-4  # the runs did train
            assert torch.allclose(packed.weights[r], single.weights[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("cap", [None, 0.1])
def test_one_sgd_step_follows_the_reference_loss_gradient(pool, test_set, learned_prior,
                                                          cap) -> None:
    """With momentum 0, one step is theta - lr * M grad of [mean CE - log p / N + wd/2
    |head|^2], M the prior's preconditioner on the backbone (computed here independently with a
    K x K solve; the identity without a cap)."""
    settings = TrainSettings(**{**SETTINGS.__dict__, "momentum": 0.0, "nesterov": False,
                                "prior_step_cap": cap})
    prior = learned_prior.to(dtype=torch.float32)
    spec = RunSpec(subset(pool, 10, 3), 3, prior, weight_decay=0.3)
    model = fresh_model(0)
    pack = Pack(model, pool, test_set, "sgd_prior", settings, [spec], CPU, "fp32", False)
    reference = fresh_model(0)
    torch.manual_seed(3)
    reference.head.reset_parameters()
    x, y = next(BatchStream(pool, [spec.train_indices], 8, [torch.Generator().manual_seed(3)]))
    loss = (F.cross_entropy(reference(x[0]), y[0])
            - prior.log_prob(flat_parameters(reference.backbone)) / 10
            + 0.15 * sum((p * p).sum() for p in reference.head.parameters()))
    loss.backward()
    before = pack.weights[0].clone()
    pack.step(0)
    grads = torch.cat([p.grad.reshape(-1) for p in
                       [*reference.backbone.parameters(), *reference.head.parameters()]])
    step = grads.clone()
    if cap is not None:  # M = a Sigma (I + a Sigma)^{-1}, a = cap N / lr, applied by Woodbury
        a = cap * 10 / settings.lr
        d, f = prior.variance.double(), prior.cov_factor.double()
        g = grads[: prior.dim].double()
        e = 1 + a * d
        cap_k = torch.eye(f.shape[0], dtype=torch.float64) / a + (f / e) @ f.T
        solve = g / e - (f.T @ torch.linalg.solve(cap_k, f @ (g / e))) / e  # (I + a Sigma)^-1 g
        step[: prior.dim] = (g - solve).float()
        assert (step - grads).abs().max() > 1e-3 * grads.abs().max()  # stiff: preconditioned
    assert torch.allclose(pack.weights[0], before - settings.lr * step, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        head_term = 0.15 * sum((p * p).sum() for p in reference.head.parameters())
    assert math.isclose(float(pack.last_loss[0] + head_term), float(loss.detach()), rel_tol=1e-4)


def test_a_diverging_run_does_not_disturb_its_pack(pool, test_set, learned_prior) -> None:
    """Run 1 diverges (lr 1e7); runs 0 and 2 end exactly as they would alone (float64)."""
    pool = DeviceTask(pool.images.double(), pool.labels, pool.num_classes)
    test_set = DeviceTask(test_set.images.double(), test_set.labels, test_set.num_classes)
    specs = _specs(pool, learned_prior.to(dtype=torch.float64), "sghmc")[:3]
    specs[1] = RunSpec(specs[1].train_indices, specs[1].seed, specs[1].prior, lr=1e7)
    model = fresh_model(0).double()
    outcomes = train_pack(model, pool, test_set, "sghmc", SETTINGS, specs)
    assert [o.status for o in outcomes] == ["ok", "diverged", "ok"]
    assert outcomes[1].final is None and outcomes[1].steps_done < SETTINGS.steps
    for r in (0, 2):
        alone = train_pack(model, pool, test_set, "sghmc", SETTINGS, [specs[r]])[0]
        assert outcomes[r].final == alone.final and outcomes[r].bma == alone.bma


def test_outcomes_carry_diagnostics(pool, test_set, learned_prior) -> None:
    specs = _specs(pool, learned_prior, "sghmc")[:2]
    clipped = TrainSettings(**{**SETTINGS.__dict__, "grad_clip": 1e-8})
    for outcome in train_pack(fresh_model(0), pool, test_set, "sghmc", clipped, specs):
        assert outcome.diagnostics["clipped_fraction"] == 1.0
    settings = SETTINGS
    trained = [fresh_model(0), fresh_model(0)]
    outcomes = train_pack(fresh_model(0), pool, test_set, "sghmc", settings, specs,
                          trained=trained)
    for spec, outcome, model in zip(specs, outcomes, trained, strict=True):
        d = outcome.diagnostics
        assert d["clipped_fraction"] == 0.0
        expected = spec.lr / (10 * float(spec.prior.variance.min()))
        assert math.isclose(d["max_step_curvature"], expected, rel_tol=1e-5)
        assert d["max_preconditioned_step_curvature"] <= settings.prior_step_cap * (1 + 1e-5)
        # Mahalanobis RMS from the log-density: quad = -2 log p - D log(2 pi) - log det Sigma
        prior = spec.prior.to(dtype=torch.float64)
        theta = flat_parameters(model.backbone).detach().double()
        logdet = float(prior._capacitance()[1])
        quad = -2 * float(prior.log_prob(theta)) - prior.dim * math.log(2 * math.pi) - logdet
        assert quad > 0
        assert math.isclose(d["prior_mahalanobis_rms"], math.sqrt(quad / prior.dim),
                            rel_tol=1e-3)
        assert 0.0 <= d["sample_disagreement"] <= 1.0
    sgd = train_pack(fresh_model(0), pool, test_set, "sgd", SETTINGS, specs[:1])[0]
    assert sgd.diagnostics["sample_disagreement"] is None
    assert sgd.diagnostics["prior_mahalanobis_rms"] is None


def test_sample_disagreement_counts_differing_predictions() -> None:
    from bprior_core.training.diagnostics import sample_disagreement

    classes = [torch.tensor([[0, 1, 2, 3]]), torch.tensor([[0, 1, 2, 0]]),
               torch.tensor([[1, 1, 2, 0]])]
    # pairs: (0,1) differ on 1/4, (0,2) on 2/4, (1,2) on 1/4 -> mean 1/3
    assert sample_disagreement(classes) == pytest.approx([1 / 3])


def test_bad_precision_and_mismatched_sizes_are_refused(pool, test_set, learned_prior) -> None:
    spec = RunSpec(subset(pool, 10, 0), 0, learned_prior)
    with pytest.raises(ValueError, match="fp32"):
        train_pack(fresh_model(0), pool, test_set, "sghmc", SETTINGS, [spec], precision="fp16")
    other = RunSpec(subset(pool, 20, 1), 1, learned_prior)
    with pytest.raises(ValueError, match="same training-set size"):
        train_pack(fresh_model(0), pool, test_set, "sghmc", SETTINGS, [spec, other])


@pytest.mark.parametrize("precision", ["bf16", "fp64"])
def test_other_precisions_take_the_fp32_step_up_to_their_rounding(pool, test_set, learned_prior,
                                                                  precision) -> None:
    """One step in bf16 (autocast) or float64 moves the weights as float32 does, up to bf16's
    rounding (compared after one step: over many steps few-shot BatchNorm amplifies rounding in
    a way that differs between CPUs); a whole run trains to `ok`."""
    spec = RunSpec(subset(pool, 10, 0), 0, learned_prior)
    packs = {p: Pack(fresh_model(0), pool, test_set, "sgd_prior", SETTINGS, [spec], CPU, p, False)
             for p in ("fp32", precision)}
    start = packs["fp32"].weights.clone().double()
    for pack in packs.values():
        pack.step(0)
    a, b = ((pack.weights.double() - start)[0] for pack in packs.values())
    cosine = float(a @ b / (a.norm() * b.norm()))
    assert cosine > (0.99 if precision == "bf16" else 1 - 1e-9), cosine
    assert packs[precision].weights.dtype == (torch.float64 if precision == "fp64"
                                              else torch.float32)
    out = train_pack(fresh_model(0), pool, test_set, "sgd_prior", SETTINGS, [spec],
                     precision=precision)[0]
    assert out.status == "ok"


def test_validation_metrics_per_sample_nll_and_chains(pool, test_set, learned_prior,
                                                     downstream_test) -> None:
    """A validation set is scored beside the test set without changing the test metrics; each
    sample's test NLL is recorded (the model average's NLL is at most their mean, by convexity
    of -log); another chain on the same subset follows a different path."""
    spec = _specs(pool, learned_prior, "sghmc")[0]
    val = DeviceTask.from_task(downstream_test.subset(torch.arange(64, 96)), "cpu")
    plain = train_pack(fresh_model(0), pool, test_set, "sghmc", SETTINGS, [spec])[0]
    scored = train_pack(fresh_model(0), pool, test_set, "sghmc", SETTINGS, [spec], val=val)[0]
    assert plain.val_final is None and plain.val_bma is None
    assert scored.final == plain.final and scored.bma == plain.bma
    assert set(scored.val_bma) == {"accuracy", "nll", "ece", "brier"}
    nll = scored.diagnostics["sample_test_nll"]
    assert len(nll) == scored.n_samples >= 2
    assert scored.bma["nll"] <= sum(nll) / len(nll) + 1e-6
    other = dataclasses.replace(spec, chain=1)
    chained = train_pack(fresh_model(0), pool, test_set, "sghmc", SETTINGS, [other])[0]
    assert chained.diagnostics["sample_test_nll"] != plain.diagnostics["sample_test_nll"]


def test_each_samples_true_class_probabilities_average_to_the_model_average(
        pool, test_set, learned_prior, downstream_test) -> None:
    """The per-sample probabilities of the true class kept for convergence diagnostics, on the
    test and the validation points, average over the samples to the stored model average's
    probability of the true class (up to their float16 storage)."""
    spec = _specs(pool, learned_prior, "sghmc")[0]
    val = DeviceTask.from_task(downstream_test.subset(torch.arange(64, 96)), "cpu")
    out = train_pack(fresh_model(0), pool, test_set, "sghmc", SETTINGS, [spec], val=val)[0]
    assert out.n_samples == 2
    for split, n in (("test", len(test_set)), ("val", 32)):
        part = out.predictions[split]
        points = part["sample_points"]
        assert part["sample_true_probs"].shape == (2, len(points)) and len(points) == min(n, 500)
        bma = np.exp(part["log_probs"].astype(np.float64))
        expected = bma[points, part["labels"][points].astype(np.int64)]
        assert np.allclose(part["sample_true_probs"].astype(np.float64).mean(0), expected,
                           atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("method", ["sghmc", "sgld"])
def test_the_first_cycles_of_a_longer_run_are_the_shorter_run(pool, test_set, learned_prior,
                                                              method) -> None:
    """A run of 2k cycles of the same length repeats a k-cycle run's samples exactly over its
    first k cycles (the schedule is per cycle; batches and noise are drawn in step order): what
    `benchmarks/convergence.py` relies on to read a whole convergence curve off one long run."""
    spec = _specs(pool, learned_prior, method)[1]
    short = dataclasses.replace(SETTINGS, steps=8, cycles=2)
    long = dataclasses.replace(SETTINGS, steps=16, cycles=4)
    model = fresh_model(0).double()
    prior = dataclasses.replace(spec, prior=spec.prior.to(dtype=torch.float64))
    a = train_pack(model, pool, test_set, method, short, [prior], precision="fp64")[0]
    b = train_pack(model, pool, test_set, method, long, [prior], precision="fp64")[0]
    nll_a, nll_b = a.diagnostics["sample_test_nll"], b.diagnostics["sample_test_nll"]
    assert len(nll_a) == 2 and len(nll_b) == 4
    assert nll_b[:2] == pytest.approx(nll_a, rel=1e-12)
    assert nll_b[2:] != pytest.approx(nll_a, rel=1e-3)


def test_a_runs_seconds_include_its_final_predictions(pool, test_set, learned_prior,
                                                      monkeypatch) -> None:
    """A run's `wall_time_s` is its share of the pack's time up to the end of its final
    predictions (the report's run-seconds once left out the final test-set pass of every
    SGD-type run): on a clock that moves only while the final predictions are made, each of
    the 2 runs gets half of that time."""
    import time

    clock = [0.0]
    predict = Pack.predict_refreshed

    def timed(self):
        clock[0] += 100.0
        return predict(self)

    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(Pack, "predict_refreshed", timed)
    specs = _specs(pool, learned_prior, "sgd_prior")[:2]
    outcomes = train_pack(fresh_model(0), pool, test_set, "sgd_prior", SETTINGS, specs)
    assert [o.wall_time_s for o in outcomes] == [50.0, 50.0]
