"""The reference posterior (`reference`): the head's tempered log-density and its analytic
gradient against autograd, an exact sampler that agrees with a long run of another sampler, and
the three arms on one small task; bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bprior_core.posterior import reference
from bprior_core.posterior.reference import HeadPosterior, HeadTask
from bprior_core.settings import TrainSettings


def small_task(n: int = 20, features: int = 4, classes: int = 3, seed: int = 0) -> HeadTask:
    gen = torch.Generator().manual_seed(seed)
    centres = 2 * torch.randn(classes, features, generator=gen, dtype=torch.float64)

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(m) % classes
        return centres[y] + torch.randn(m, features, generator=gen, dtype=torch.float64), y

    (x, y), (vx, vy), (tx, ty) = draw(n), draw(30), draw(200)
    return HeadTask(x, y, vx, vy, tx, ty, classes)


def test_the_heads_log_density_and_gradient_match_autograd_and_the_formula():
    """log pi_T = (sum log softmax - |q|^2 / (2 v)) / T, checked by hand; its gradient against
    autograd, for a batch of chains."""
    task = small_task()
    target = HeadPosterior(task.train_x, task.train_y, task.classes, variance=2.0,
                           temperature=0.5)
    q = torch.randn(3, task.dim, dtype=torch.float64, requires_grad=True)
    logp, grad = target(q.detach())
    w, b = reference.unpack(q, task.classes)
    z = torch.einsum("cki,mi->cmk", w, task.train_x) + b[:, None, :]
    hand = (z.log_softmax(-1).gather(2, task.train_y.view(1, -1, 1).expand(3, -1, 1)).sum((1, 2))
            - q.square().sum(1) / 4.0) / 0.5
    assert torch.allclose(logp, hand.detach(), rtol=1e-12)
    auto = torch.autograd.grad(hand.sum(), q)[0]
    assert torch.allclose(grad, auto, rtol=1e-10, atol=1e-12)


def test_the_reference_agrees_with_a_long_random_walk_of_the_same_posterior():
    """The HMC reference's posterior mean of a 2-class head on 2 features (6 parameters)
    against 64 x 6,000 steps of random-walk Metropolis (another exact sampler), within Monte Carlo
    error: the two sample the same distribution."""
    task = small_task(n=12, features=2, classes=2, seed=1)
    target = HeadPosterior(task.train_x, task.train_y, 2, variance=1.0, temperature=1.0)
    gen = torch.Generator().manual_seed(5)
    result = reference.hmc.sample(target, torch.randn(4, task.dim, generator=gen,
                                                      dtype=torch.float64),
                                  2000, 500, 8, generator=gen)
    q = torch.zeros(64, task.dim, dtype=torch.float64)  # 64 random walks side by side
    logp = target(q)[0]
    walk, step = [], 0.35
    for i in range(6000):
        proposal = q + step * torch.randn(q.shape, generator=gen, dtype=torch.float64)
        new = target(proposal)[0]
        take = torch.rand(64, generator=gen, dtype=torch.float64) < (new - logp).exp()
        q, logp = torch.where(take[:, None], proposal, q), torch.where(take, new, logp)
        if i >= 1000 and i % 5 == 0:
            walk.append(q)
    walk = torch.cat(walk).numpy()
    draws = result.draws.reshape(-1, task.dim).numpy()
    sd = draws.std(0)
    assert np.all(np.abs(draws.mean(0) - walk.mean(0)) < 0.1 * sd + 0.02)
    assert np.allclose(draws.std(0), walk.std(0), rtol=0.12)


def test_the_three_arms_give_probabilities_and_the_reference_its_diagnostics():
    task = small_task()
    settings = TrainSettings(steps=60, batch_size=8, lr=0.05, cycles=3, temperature=1.0)
    config = {"prior": {"variance": 1.0}, "seed": 0, "train": {"temperature": 1.0},
              "method": "hmc", "hmc": {"chains": 4, "draws": 200, "warmup": 100, "leapfrog": 5}}
    test, val, diag = reference.run_arm(task, config, settings)
    assert test.shape == (200, 3) and val.shape == (30, 3)
    assert torch.allclose(test.sum(-1), torch.ones(200, dtype=test.dtype))
    assert diag["chains"] == 4 and diag["rhat_val_q95"] < 1.05 and diag["divergent"] == 0
    assert 0.5 < min(diag["accept_rate"]) and diag["mc_se_accuracy"] < 0.02
    for method in ("sgd", "sghmc"):
        out = reference.run_arm(task, {**config, "method": method}, settings)
        assert out[0].shape == (200, 3) and out[2] == {}
        # on well separated classes every arm is accurate
        assert (out[0].argmax(-1) == task.test_y).double().mean() > 0.8
    assert reference.total_variation(test, test) == 0.0


def test_bad_reference_input_is_refused():
    with pytest.raises(ValueError, match="at least 2 chains"):
        reference.check_starts(torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="start at the same point"):
        reference.check_starts(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="must be > 0"):
        HeadPosterior(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), 2, 0.0, 1.0)
    target = HeadPosterior(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), 2, 1.0, 1.0)
    with pytest.raises(ValueError, match="the head's subspace has 6 parameters"):
        target(torch.zeros(4, 5))


def test_sgd_on_the_subspace_is_the_maps_point_estimate():
    """`head_sgd` is trained to convergence: the posterior's gradient vanishes at it, and every
    small step away lowers the log-density."""
    task = small_task()
    q = reference.head_map(task, 1.0)
    target = HeadPosterior(task.train_x, task.train_y, task.classes, 1.0, 1.0)
    logp, grad = target(q)
    assert float(grad.norm()) < 1e-5
    gen = torch.Generator().manual_seed(0)
    nudged = q + 1e-2 * torch.randn(8, task.dim, generator=gen, dtype=torch.float64)
    assert bool((target(nudged)[0] < logp).all())


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("chains", 3, "at least 4 chains"),
    ("temperatures", [0.1, 3.0], "list 1.0 among them"),
    ("curve_seeds", 5, "more than its 3 seeds"),
])
def test_a_reference_profile_is_checked_before_anything_runs(key, value, expected):
    import yaml

    from bprior_core.config import PARAMS_DIR, ProfileError, validate_profile

    raw = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    raw["experiments"]["reference"][key] = value
    with pytest.raises(ProfileError, match=expected):
        validate_profile(raw)


def test_the_reference_runs_are_planned_per_size_seed_and_temperature():
    """Each evaluation seed: the reference at T = 1, SGD and the recipe on its subspace; the
    first `curve_seeds` seeds also the other temperatures; the seed's prior draw gives the
    backbone."""
    from collections import Counter

    from bprior_core.config import load_profile
    from bprior_core.study.planning import plan

    profile = load_profile("smoke")
    runs = plan(profile, ["reference"])
    arms = Counter(r["config"]["arm"] for r in runs)
    assert arms == {"reference": 3, "head_sgd": 3, "head_sghmc": 3, "reference T=0.1": 1,
                    "reference T=0.3": 1, "reference T=3": 1}
    assert {r["config"]["seed"] for r in runs} == {100, 101, 102}
    for r in runs:
        cfg = r["config"]
        assert cfg["prior"]["kind"] == "head" and cfg["prior"]["draw"] == cfg["seed"] % 2
        assert cfg["method"] == {"reference": "hmc", "head_sgd": "sgd",
                                 "head_sghmc": "sghmc"}[cfg["arm"].split(" ")[0]]
