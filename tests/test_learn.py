"""Tests for bprior_core.priors.learning: prior learning (supervised and SimCLR), NT-Xent,
augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bprior_core.priors import learning as learn
from bprior_core.training.models import (
    build_model,
    flat_parameters,
    num_prior_parameters,
    parameter_spec,
)

SETTINGS = learn.PriorLearningSettings(
    pretrain_steps=4, swag_steps=6, collect_every=2, max_rank=2, batch_size=32,
    bn_refresh_batches=2,
)


def fresh_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("small_resnet", 5)


@pytest.fixture(scope="module")
def learned(source_small):
    """objective -> (prior, backbone state, initial flat weights)."""
    out = {}
    for objective in learn.OBJECTIVES:
        model = fresh_model(0)
        init = flat_parameters(model.backbone).detach().clone()
        prior, state = learn.learn_prior(
            model, source_small, objective, SETTINGS, seed=0, progress=False
        )
        out[objective] = (prior, state, init)
    return out


@pytest.mark.parametrize("objective", learn.OBJECTIVES)
def test_learned_prior_shape_rank_and_variance(learned, objective) -> None:
    prior, _, init = learned[objective]
    backbone = fresh_model(0).backbone
    assert prior.dim == num_prior_parameters(backbone)
    snapshots = SETTINGS.swag_steps // SETTINGS.collect_every
    assert prior.rank == min(SETTINGS.max_rank, snapshots)
    assert torch.isfinite(prior.variance).all() and (prior.variance > 0).all()
    assert torch.isfinite(prior.cov_factor).all()
    assert prior.device.type == "cpu"
    # training moved the weights
    assert not torch.allclose(prior.mean, init)
    # some parameters actually varied between snapshots
    assert float(prior.variance.max()) > 1e-12
    assert prior.meta["param_names"] == parameter_spec(backbone)["param_names"]
    assert prior.meta["learned_by"]["objective"] == objective
    assert prior.meta["learned_by"]["snapshots"] == snapshots


@pytest.mark.parametrize("objective", learn.OBJECTIVES)
def test_prior_mean_equals_returned_backbone_weights(learned, objective) -> None:
    prior, state, _ = learned[objective]
    backbone = fresh_model(1).backbone
    backbone.load_state_dict(state)
    assert torch.equal(flat_parameters(backbone).detach(), prior.mean)
    # BatchNorm statistics were recomputed over bn_refresh_batches source batches
    tracked = [v for k, v in state.items() if k.endswith("num_batches_tracked")]
    assert tracked and all(int(t) == SETTINGS.bn_refresh_batches for t in tracked)
    assert all(v.device.type == "cpu" for v in state.values())


def test_rank_is_limited_by_the_number_of_snapshots(source_small) -> None:
    settings = learn.PriorLearningSettings(
        pretrain_steps=0, swag_steps=6, collect_every=2, max_rank=10, batch_size=32,
        bn_refresh_batches=1,
    )
    prior, _ = learn.learn_prior(fresh_model(0), source_small, "supervised", settings,
                                 progress=False)
    assert prior.rank == 3


def test_learn_prior_is_deterministic_given_the_seed(source_small) -> None:
    # both runs here (not one from the fixture): global float settings could differ in between
    prior, state = learn.learn_prior(fresh_model(0), source_small, "simclr", SETTINGS, seed=0,
                                     progress=False)
    ref_prior, ref_state = learn.learn_prior(fresh_model(0), source_small, "simclr", SETTINGS,
                                             seed=0, progress=False)
    other, _ = learn.learn_prior(fresh_model(0), source_small, "simclr", SETTINGS, seed=1,
                                 progress=False)
    assert not torch.equal(other.mean, prior.mean)
    assert torch.equal(prior.mean, ref_prior.mean)
    assert torch.equal(prior.variance, ref_prior.variance)
    assert torch.equal(prior.cov_factor, ref_prior.cov_factor)
    assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)


def test_unknown_objective_is_an_error(source_small) -> None:
    with pytest.raises(ValueError, match="objective"):
        learn.learn_prior(fresh_model(0), source_small, "byol", SETTINGS, progress=False)


def test_diverging_prior_learning_raises_with_advice(source_small) -> None:
    # an lr far outside the allowed range, set past the dataclass's check, makes SGD diverge
    settings = learn.PriorLearningSettings(
        pretrain_steps=6, swag_steps=4, collect_every=2, max_rank=2, batch_size=32,
        bn_refresh_batches=1,
    )
    object.__setattr__(settings, "pretrain_lr", 1e12)
    with pytest.raises(FloatingPointError, match="lower the lr"):
        learn.learn_prior(fresh_model(0), source_small, "supervised", settings, progress=False)


# ----------------------------------------------------------------------------- NT-Xent


def nt_xent_numpy(z1: np.ndarray, z2: np.ndarray, t: float) -> float:
    """SimCLR's loss written out: mean over the 2n anchors of -log softmax at the positive."""
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    losses = []
    for i in range(2 * n):
        positive = i + n if i < n else i - n
        sims = np.array([z[i] @ z[k] / t for k in range(2 * n)])
        others = [k for k in range(2 * n) if k != i]
        losses.append(-(sims[positive] - np.log(np.sum(np.exp(sims[others])))))
    return float(np.mean(losses))


@pytest.mark.parametrize(("n", "t"), [(2, 0.5), (3, 1.0), (4, 0.1)])
def test_nt_xent_matches_hand_computation(n, t) -> None:
    rng = np.random.default_rng(n)
    z1, z2 = rng.normal(size=(n, 5)), rng.normal(size=(n, 5))
    got = learn.nt_xent(torch.tensor(z1), torch.tensor(z2), t)
    assert got.ndim == 0
    assert float(got) == pytest.approx(nt_xent_numpy(z1, z2, t), rel=1e-9)


def test_nt_xent_is_symmetric_and_rewards_matching_views() -> None:
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 8, generator=gen), torch.randn(6, 8, generator=gen)
    assert torch.allclose(learn.nt_xent(z1, z2, 0.5), learn.nt_xent(z2, z1, 0.5))
    # scale invariance (vectors are normalised)
    assert torch.allclose(learn.nt_xent(3 * z1, z2, 0.5), learn.nt_xent(z1, z2, 0.5))
    assert learn.nt_xent(z1, z1 + 0.01 * z2, 0.5) < learn.nt_xent(z1, z2, 0.5)


def test_nt_xent_has_gradients() -> None:
    z1 = torch.randn(4, 3, requires_grad=True)
    z2 = torch.randn(4, 3)
    learn.nt_xent(z1, z2, 0.5).backward()
    assert z1.grad is not None and torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- augmentation


def test_augment_keeps_shape_and_is_deterministic_given_the_generator() -> None:
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = learn.augment(x, torch.Generator().manual_seed(1))
    b = learn.augment(x, torch.Generator().manual_seed(1))
    c = learn.augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x)
    # the generator advances: two views drawn from one generator differ
    gen = torch.Generator().manual_seed(1)
    assert not torch.allclose(learn.augment(x, gen), learn.augment(x, gen))


def test_augment_multichannel() -> None:
    x = torch.randn(2, 3, 16, 16)
    assert learn.augment(x, torch.Generator().manual_seed(0)).shape == (2, 3, 16, 16)


# ----------------------------------------------------------------------------- settings


def test_lr_schedules() -> None:
    assert learn.lr_schedule(10, 0.1, "constant")(7) == 0.1
    assert learn.lr_schedule(10, 0.1, "cyclical")(0) == pytest.approx(0.1)
    assert learn.lr_schedule(10, 0.1, "cyclical")(5) == pytest.approx(0.05)
    assert learn.lr_schedule(10, 0.1, "cyclical", 2)(5) == pytest.approx(0.1)  # 2nd cycle starts


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"swag_schedule": "linear"}, "swag_schedule"),
        ({"swag_steps": 10, "collect_every": 6}, "2 snapshots"),
        ({"collect_every": 0}, "collect_every"),
        ({"batch_size": 1}, "batch_size"),
        ({"max_rank": -1}, "max_rank"),
    ],
)
def test_prior_learning_settings_validation(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        learn.PriorLearningSettings(**kwargs)


# ----------------------------------------------------------------------------- packed draws


@pytest.mark.parametrize("objective", learn.OBJECTIVES)
def test_draws_learned_as_a_pack_equal_draws_learned_one_by_one_in_float64(source_small,
                                                                           objective) -> None:
    """Three draws (seeds 0, 1, 2) learned together as one packed network give, in float64,
    each draw's prior (mean, variances, factor), backbone state and losses from `learn_prior`
    alone; the draws differ from each other."""
    source = learn.TensorTask(source_small.images[:96].double(), source_small.labels[:96],
                              source_small.num_classes)
    settings = learn.PriorLearningSettings(pretrain_steps=3, swag_steps=6, collect_every=2,
                                           max_rank=2, batch_size=16, bn_refresh_batches=2)
    seeds = [0, 1, 2]
    alone = [learn.learn_prior(fresh_model(s).double(), source, objective, settings, seed=s,
                               progress=False) for s in seeds]
    packed = learn.learn_priors_packed([fresh_model(s).double() for s in seeds], source,
                                       objective, settings, seeds, progress=False)
    for (one, one_state), (many, many_state) in zip(alone, packed, strict=True):
        for name in ("mean", "variance", "cov_factor"):
            assert torch.allclose(getattr(many, name), getattr(one, name),
                                  rtol=1e-8, atol=1e-12), name
        for key, value in one_state.items():
            assert torch.allclose(many_state[key].double(), value.double(), rtol=1e-8,
                                  atol=1e-10), key
        for key in ("final_pretrain_loss", "final_swag_loss", "seed", "snapshots"):
            assert many.meta["learned_by"][key] == pytest.approx(one.meta["learned_by"][key],
                                                                 rel=1e-9)
    assert not torch.allclose(packed[0][0].mean, packed[1][0].mean)


def test_a_pack_needs_one_seed_per_model(source_small) -> None:
    with pytest.raises(ValueError, match="one seed per model"):
        learn.learn_priors_packed([fresh_model(0)], source_small, "supervised", SETTINGS, [0, 1],
                                  progress=False)
