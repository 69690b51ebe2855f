"""Tests for bprior_core.training.run: tiny end-to-end downstream runs of every method."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from bprior_core.data import subsets
from bprior_core.priors.gaussian import GaussianPrior
from bprior_core.priors.swag import SWAG
from bprior_core.training import run as train
from bprior_core.training.models import build_model, flat_parameters, num_prior_parameters

SETTINGS = train.TrainSettings(
    steps=12, batch_size=5, lr=0.01, temperature=1e-3, cycles=2, explore_fraction=0.5,
    samples_per_cycle=2, grad_clip=2.0, bn_refresh_batches=1, eval_batch_size=100,
)


def fresh_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("small_resnet", 5)


@pytest.fixture(scope="module")
def tasks(downstream_train, downstream_test):
    """10 balanced training images and 100 test images of the downstream task."""
    idx = subsets.few_shot_indices(downstream_train.labels, 10, "balanced", seed=0)
    return downstream_train.subset(idx), downstream_test.subset(torch.arange(100))


@pytest.fixture(scope="module")
def swag_prior() -> GaussianPrior:
    """A rank-2 SWAG prior from random perturbations of the initial backbone's weights."""
    w = flat_parameters(fresh_model(0).backbone).detach()
    gen = torch.Generator().manual_seed(0)
    swag = SWAG(max_rank=2)
    for _ in range(4):
        swag.collect(w + 0.1 * torch.randn(w.shape, generator=gen))
    prior = swag.to_prior()
    assert prior.rank == 2
    return prior


def run(tasks, method, prior=None, seed=0, settings=SETTINGS, model_seed=0):
    train_data, test_data = tasks
    return train.train_and_evaluate(
        fresh_model(model_seed), train_data, test_data, method, settings, prior, seed=seed
    )


def comparable(outcome: train.RunOutcome) -> dict:
    out = outcome.to_dict()
    out.pop("wall_time_s")
    return out


def check_metrics(metrics: dict) -> None:
    assert set(metrics) >= {"accuracy", "nll", "ece", "brier"}
    assert all(math.isfinite(v) for v in metrics.values())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["nll"] >= 0.0
    assert 0.0 <= metrics["ece"] <= 1.0
    assert 0.0 <= metrics["brier"] <= 2.0


@pytest.mark.parametrize("method", train.METHODS)
def test_each_method_runs_end_to_end(tasks, swag_prior, method) -> None:
    prior = None if method == "sgd" else swag_prior
    outcome = run(tasks, method, prior)
    assert outcome.status == "ok"
    assert outcome.steps_done == SETTINGS.steps
    assert outcome.final_loss is not None and math.isfinite(outcome.final_loss)
    assert outcome.wall_time_s > 0
    check_metrics(outcome.final)
    if method in train.SAMPLER_METHODS:
        assert outcome.bma is not None
        check_metrics(outcome.bma)
        # the first cycle is burn-in: its sample points are counted, not averaged
        kept = SETTINGS.cycles - SETTINGS.burn_in_cycles
        assert outcome.n_samples == kept * SETTINGS.samples_per_cycle
        assert outcome.diagnostics["burn_in_samples"] == (SETTINGS.burn_in_cycles
                                                          * SETTINGS.samples_per_cycle)
        assert len(outcome.diagnostics["sample_test_nll"]) == outcome.n_samples
    else:
        assert outcome.bma is None
        assert outcome.n_samples == 0
    record = outcome.to_dict()
    assert record["status"] == "ok" and record["final"] == outcome.final


@pytest.mark.parametrize("method", ["sgd", "sgd_prior", "sghmc", "sgld"])
def test_runs_are_deterministic_given_the_seed(tasks, swag_prior, method) -> None:
    prior = None if method == "sgd" else swag_prior
    a = run(tasks, method, prior, seed=3)
    b = run(tasks, method, prior, seed=3)
    c = run(tasks, method, prior, seed=4)
    assert comparable(a) == comparable(b)
    assert comparable(a) != comparable(c)
    assert a.final_loss != c.final_loss


def test_head_is_reinitialised_from_the_seed(tasks, swag_prior) -> None:
    train_data, test_data = tasks
    model = fresh_model(0)
    with torch.no_grad():
        model.head.weight.fill_(3.0)
    disturbed = train.train_and_evaluate(model, train_data, test_data, "sgd_prior", SETTINGS,
                                         swag_prior, seed=0)
    assert comparable(disturbed) == comparable(run(tasks, "sgd_prior", swag_prior, seed=0))


def test_sgd_ignores_the_prior(tasks, swag_prior) -> None:
    assert comparable(run(tasks, "sgd", swag_prior)) == comparable(run(tasks, "sgd", None))


def test_prior_pulls_the_backbone_towards_its_mean(tasks) -> None:
    """With a prior centred away from the initial weights, MAP training moves towards it."""
    w = flat_parameters(fresh_model(0).backbone).detach()
    gen = torch.Generator().manual_seed(1)
    prior = GaussianPrior.isotropic(w + 0.05 * torch.randn(w.shape, generator=gen), 1e-2)
    settings = replace(SETTINGS, grad_clip=None, cycles=1, burn_in_cycles=0)
    train_data, test_data = tasks
    distances = {}
    for method in ("sgd", "sgd_prior"):
        model = fresh_model(0)
        outcome = train.train_and_evaluate(model, train_data, test_data, method, settings, prior)
        assert outcome.status == "ok"
        distances[method] = float((flat_parameters(model.backbone).detach() - prior.mean).norm())
    start = float((w - prior.mean).norm())
    assert distances["sgd_prior"] < 0.5 * start
    assert distances["sgd"] > 0.9 * start


def test_prior_of_wrong_size_names_both_sizes(tasks) -> None:
    prior = GaussianPrior.isotropic(torch.zeros(123), 1.0)
    d = num_prior_parameters(fresh_model(0).backbone)
    with pytest.raises(ValueError) as info:
        run(tasks, "sgd_prior", prior)
    assert "123" in str(info.value) and str(d) in str(info.value)


@pytest.mark.parametrize("method", ["sgd_prior", "sgld", "sghmc"])
def test_method_needing_a_prior_without_one_is_an_error(tasks, method) -> None:
    with pytest.raises(ValueError, match="needs a prior"):
        run(tasks, method, None)


def test_unknown_method_is_an_error(tasks, swag_prior) -> None:
    with pytest.raises(ValueError, match="unknown method") as info:
        run(tasks, "adam", swag_prior)
    assert all(m in str(info.value) for m in train.METHODS)


def beyond_range_lr(settings: train.TrainSettings, lr: float) -> train.TrainSettings:
    """Settings with an lr above the allowed range (set past the check) to force divergence."""
    object.__setattr__(settings, "lr", lr)
    return settings


@pytest.mark.parametrize("steps", [4, 6, 8])
def test_huge_learning_rate_gives_diverged_status(tasks, steps) -> None:
    settings = beyond_range_lr(replace(SETTINGS, steps=steps, cycles=1, burn_in_cycles=0,
                                       grad_clip=None), 1e6)
    outcome = run(tasks, "sgd", None, settings=settings)
    assert outcome.status == "diverged"
    assert outcome.final is None and outcome.bma is None
    assert outcome.steps_done <= steps


@pytest.mark.parametrize("steps", [8, 12])
def test_huge_learning_rate_in_a_sampler_gives_diverged_status(tasks, swag_prior, steps) -> None:
    """lr 1e6: within a few steps the weights or the collected predictions leave the finite
    numbers (with very few steps BatchNorm, refreshed for the final weights, can still keep
    the predictions finite)."""
    settings = beyond_range_lr(
        replace(SETTINGS, steps=steps, cycles=1, burn_in_cycles=0, samples_per_cycle=1,
                grad_clip=None), 1e6)
    outcome = run(tasks, "sghmc", swag_prior, settings=settings)
    assert outcome.status == "diverged"
    assert outcome.final is None and outcome.bma is None


def test_tiny_prior_variance_diverges_only_with_plain_explicit_steps(tasks) -> None:
    """A prior of variance 1e-30 (lr x curvature ~1e27): plain explicit steps diverge; the
    preconditioned prior step (the default) stays finite without clipping."""
    w = flat_parameters(fresh_model(0).backbone).detach()
    tight = GaussianPrior.isotropic(w + 1e-3, 1e-12)
    settings = replace(SETTINGS, steps=6, cycles=1, burn_in_cycles=0, grad_clip=None,
                       prior_step_cap=None)
    outcome = run(tasks, "sgd_prior", tight, settings=settings)
    assert outcome.status == "diverged"
    assert outcome.final is None
    assert outcome.steps_done < settings.steps
    stable = run(tasks, "sgd_prior", tight, settings=replace(settings, prior_step_cap=0.1))
    assert stable.status == "ok"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0), ("batch_size", 0), ("lr", 0.0), ("lr", float("inf")),
        ("weight_decay", -1e-4), ("momentum", 1.0), ("momentum", -0.1), ("temperature", -1.0),
        ("cycles", 0), ("cycles", 13), ("explore_fraction", 1.0), ("samples_per_cycle", 0),
        ("grad_clip", 0.0), ("bn_refresh_batches", 0), ("eval_batch_size", 0),
    ],
)
def test_train_settings_validation_names_the_bad_field(field, value) -> None:
    base = {"steps": 12, "cycles": 2}
    with pytest.raises(ValueError) as info:
        train.TrainSettings(**{**base, field: value})
    message = str(info.value)
    assert f"{field}={value!r}" in message
    others = [n for n in ("steps", "batch_size", "momentum", "eval_batch_size") if n != field]
    assert not any(f" {n}=" in message or f":{n}=" in message for n in others)


def test_train_settings_defaults_are_valid() -> None:
    s = train.TrainSettings()
    assert s.steps >= s.cycles >= 1
    assert train.TrainSettings(grad_clip=None, temperature=0.0).grad_clip is None
