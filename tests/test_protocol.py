"""The headline protocol ("Verdicts that decide"): tuning seeds and evaluation seeds, a setting
fixed once per arm and size, power by design, the covariance control's prior, the linear probe
and the share of coordinates a prior leaves free."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import yaml

from bprior_core import config
from bprior_core.analysis import power
from bprior_core.analysis.paired import mde
from bprior_core.analysis.selection import choose_pooled
from bprior_core.config import ProfileError, validate_profile
from bprior_core.priors.gaussian import GaussianPrior
from bprior_core.priors.learning import learn_task_directions
from bprior_core.settings import PriorLearningSettings, TrainSettings
from bprior_core.study.finals import final_runs
from bprior_core.study.planning import plan
from bprior_core.training.diagnostics import free_share
from bprior_core.training.loop import train_pack
from bprior_core.training.models import flat_parameters
from bprior_core.training.spec import RunSpec


def raw(name: str = "smoke") -> dict:
    return yaml.safe_load((config.PARAMS_DIR / f"{name}.yaml").read_text())


def with_values(base: dict, **values) -> dict:
    """A copy of `base` with dotted keys (`__` for `.`) set."""
    out = copy.deepcopy(base)
    for dotted, value in values.items():
        *parents, last = dotted.split("__")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def error_of(profile: dict) -> str:
    with pytest.raises(ProfileError) as info:
        validate_profile(profile)
    return str(info.value)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("values", "expected"), [
    ({"experiments__inference__tuning__seeds": 2}, "use at least 3"),
    ({"experiments__inference__evaluation__first_seed": 1}, "overlap the tuning seeds 0..2"),
    ({"experiments__inference__evaluation__seeds": [3]}, "one per training size"),
    ({"experiments__inference__steps": [10, 20, 30]}, "experiments.inference.steps"),
    ({"experiments__inference__evaluation__pilot_sd": [0.05, 0.05]},
     "needs both target_mde and pilot_sd"),
    ({"experiments__inference__evaluation__pilot_sd": [0.5, 0.05],
      "experiments__inference__evaluation__target_mde": [0.0001, 0.01],
      "experiments__inference__evaluation__seeds": None}, "needs more than 1000"),
    ({"experiments__inference__evaluation__pilot_sd": [0.05, 0.05],
      "experiments__inference__evaluation__target_mde": [0.02, 0.02]}, "miss the power target"),
    ({"experiments__per_seed__first_seed": 101}, "experiments.per_seed.first_seed"),
    ({"experiments__inference__tuning__enabled": False}, "tuning.enabled: true"),
])
def test_the_protocol_refuses_bad_input_before_anything_runs(values, expected):
    assert expected in error_of(with_values(raw(), **values))


def test_per_size_lists_may_repeat_values():
    profile = validate_profile(with_values(raw(), experiments__inference__steps=[12, 12]))
    assert profile.experiments.inference.steps == [12, 12]


def test_the_power_target_sets_the_seeds():
    """Seeds from target_mde and pilot_sd: the fewest whose design mde reaches the target at
    the claims' strictest level (Holm's first step over eight), checked against `paired.mde`."""
    profile = validate_profile(with_values(
        raw(), experiments__inference__evaluation__seeds=None,
        experiments__inference__evaluation__pilot_sd=[0.045, 0.005],
        experiments__inference__evaluation__target_mde=[0.02, 0.01]))
    for n, sd, target in ((5, 0.045, 0.02), (10, 0.005, 0.01)):
        seeds = len(config.evaluation_seeds(profile, n))
        level = 1 - 0.05 / 8
        assert mde(sd / math.sqrt(seeds), seeds - 1, level) <= target
        assert mde(sd / math.sqrt(seeds - 1), seeds - 2, level) > target


def test_seeds_for_is_the_smallest_count_that_reaches_the_target():
    for sd, target in ((0.045, 0.02), (0.01, 0.01), (0.3, 0.05)):
        seeds = power.seeds_for(sd, target)
        brute = next(s for s in range(2, 10_000) if power.design_mde(sd, s) <= target)
        assert seeds == brute
    assert power.seeds_for(1.0, 1e-6, most=1000) is None
    assert power.seeds_needed(None, 10, 0.95, 0.01) is None


# ----------------------------------------------------------------------------- planning


def fake(run: dict, nll: float) -> dict:
    return {"status": "ok", "config": run["config"], "metrics": {},
            "val_metrics": {"final": {"nll": nll}}, "heldout_metrics": {"final": {"nll": nll}}}


def test_a_setting_is_fixed_once_on_the_tuning_seeds_and_evaluated_on_fresh_seeds():
    """The tuning runs use seeds 0-2; the point with the lowest validation NLL averaged over
    them is the final runs' setting for every evaluation seed (100, 101, ...), each with its
    own prior draw; samplers have chains; the deep ensemble and long SGD only on the seeds the
    samplers run."""
    profile = validate_profile(raw())
    runs = plan(profile)
    tuned = [r for r in runs if r["config"].get("phase") == "tune"
             and r["config"]["experiment"] != "per_seed"]
    assert {r["config"]["seed"] for r in tuned} == {0, 1, 2}
    assert all(r["config"]["seed_role"] == "tuning" for r in tuned)

    def nll(run):  # scale 1e5 best on average though not on seed 0
        cfg = run["config"]
        value = cfg["tuned"]["value"]
        base = 1.0 if value != 1e5 else 0.9
        return base + (0.2 if (value == 1e5 and cfg["seed"] == 0) else 0.0)

    finals = final_runs(profile, lambda run: fake(run, nll(run)))
    learned = [f for f in finals if f["config"]["experiment"] == "inference"
               and f["config"]["arm"] == "sgd+learned" and f["config"]["n_train"] == 5]
    assert [f["config"]["seed"] for f in learned] == [100, 101, 102]
    for f in learned:
        assert f["config"]["prior"]["scale"] == 1e5
        assert f["config"]["seed_role"] == "evaluation" and f["config"]["phase"] == "final"
        assert f["config"]["prior"]["draw"] == f["config"]["seed"] % 2
        assert f["selection"]["tuning_seeds"] == [0, 1, 2]
        assert f["selection"]["val_nll"] == pytest.approx((1.1 + 0.9 + 0.9) / 3)
    chains = [f for f in finals if f["config"]["arm"] == "sghmc+learned"
              and f["config"]["n_train"] == 10]
    assert sorted({f["config"]["seed"] for f in chains}) == [100, 101]  # sampler_seeds
    assert {f["config"]["chain"] for f in chains} == {0, 1, 2, 3}
    deep = [f for f in finals if f["config"]["arm"] == "deep_ensemble+learned"
            and f["config"]["n_train"] == 10]
    assert sorted({f["config"]["seed"] for f in deep}) == [100, 101]
    steps = {f["config"]["n_train"]: f["config"]["train"]["steps"] for f in learned + chains}
    assert steps == {5: 12, 10: 16}


def test_choose_pooled_averages_over_seeds_and_drops_a_point_that_diverged_once():
    def rec(value, seed, nll):
        return {"status": "ok" if nll is not None else "diverged",
                "config": {"seed": seed, "tuned": {"parameter": "scale", "value": value,
                                                    "lr": 0.01}},
                "val_metrics": {"final": None if nll is None else {"nll": nll}}}

    records = [rec(1.0, 0, 0.5), rec(1.0, 1, 0.7), rec(10.0, 0, 0.1), rec(10.0, 1, None),
               rec(100.0, 0, 0.6), rec(100.0, 1, 0.5)]
    first, selection = choose_pooled(records)
    assert first == 4 and selection["value"] == 100.0
    assert selection["val_nll"] == pytest.approx(0.55)
    assert [c["val_nll"] for c in selection["candidates"]] == [pytest.approx(0.6), None,
                                                                pytest.approx(0.55)]
    assert choose_pooled([rec(1.0, 0, None)]) is None


# ----------------------------------------------------------------------------- priors


def test_the_shaped_prior_has_the_isotropic_priors_mean_and_trace():
    """Sigma = v [(1 - share) I + share D F^T F / ||F||^2]: trace D v at every v, the mean
    kept, and its log-density that of torch.distributions' low-rank normal."""
    torch.manual_seed(0)
    d, k, v, share = 50, 3, 0.2, 0.4
    base = GaussianPrior(torch.randn(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64),
                         torch.randn(k, d, dtype=torch.float64))
    shaped = base.shaped(v, share)
    assert torch.equal(shaped.mean, base.mean)
    assert float(shaped.diag_of_covariance().sum()) == pytest.approx(d * v, rel=1e-12)
    cov = v * ((1 - share) * torch.eye(d, dtype=torch.float64)
               + share * d * base.cov_factor.T @ base.cov_factor
               / base.cov_factor.pow(2).sum())
    theta = torch.randn(d, dtype=torch.float64)
    reference = torch.distributions.MultivariateNormal(base.mean, cov).log_prob(theta)
    assert float(shaped.log_prob(theta)) == pytest.approx(float(reference), rel=1e-10)
    with pytest.raises(ValueError, match="share"):
        base.shaped(v, 1.0)
    with pytest.raises(ValueError, match="rank 0"):
        GaussianPrior.isotropic(base.mean, 1.0).shaped(v, share)


def test_task_directions_point_from_the_start_to_the_fine_tuned_snapshots(make_model,
                                                                           source_small):
    model = make_model()
    start = flat_parameters(model.backbone).detach().clone()
    settings = PriorLearningSettings(pretrain_steps=0, swag_steps=6, swag_lr=0.05,
                                     collect_every=2, max_rank=3, batch_size=16)
    prior = learn_task_directions(model, source_small, settings, seed=0, progress=False)
    assert torch.equal(prior.mean, start)
    assert torch.equal(flat_parameters(model.backbone).detach(), start)  # model left at start
    assert prior.rank == 3 and bool((prior.cov_factor.abs().sum(1) > 0).all())
    # the rows grow along the fine-tuning path: each snapshot is further from the start
    norms = prior.cov_factor.norm(dim=1)
    assert norms[-1] > norms[0]


# ----------------------------------------------------------------------------- the engine


def test_a_probe_trains_the_head_and_leaves_the_backbone(make_model, downstream_train,
                                                         downstream_test):
    from bprior_core.data.device import DeviceTask

    model = make_model()
    trained = make_model()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()
              if v.is_floating_point()}
    pool, test = DeviceTask.from_task(downstream_train, "cpu"), DeviceTask.from_task(
        downstream_test, "cpu")
    spec = RunSpec(torch.arange(20), 0)
    out = train_pack(model, pool, test, "probe", TrainSettings(steps=5, batch_size=8), [spec],
                     trained=[trained])[0]
    assert out.status == "ok" and out.diagnostics["free_share"] == 0.0
    weights = dict(trained.backbone.named_parameters())
    for name, value in before.items():
        if name in weights:
            assert torch.equal(weights[name].detach(), value), name
    assert not torch.equal(trained.head.weight, model.head.weight)


def test_the_free_share_counts_coordinates_the_preconditioner_leaves_free():
    """a sigma^2 >= 1 with a = cap N / lr: lr 0.01, N 10, cap 0.05 -> variance >= 0.02."""
    diagonal = torch.tensor([0.01, 0.019, 0.02, 0.5, 3.0])
    assert free_share(diagonal, 0.01, 10, 0.05) == pytest.approx(3 / 5)
    assert free_share(diagonal, 0.01, 1000, 0.05) == 1.0


def test_a_prior_run_records_its_free_share(make_model, downstream_train, downstream_test):
    from bprior_core.data.device import DeviceTask

    model = make_model()
    dim = flat_parameters(model.backbone).numel()
    mean = flat_parameters(model.backbone).detach()
    tight, loose = GaussianPrior.isotropic(mean, 1e-6), GaussianPrior.isotropic(mean, 10.0)
    pool, test = DeviceTask.from_task(downstream_train, "cpu"), DeviceTask.from_task(
        downstream_test, "cpu")
    specs = [RunSpec(torch.arange(10), 0, tight), RunSpec(torch.arange(10), 1, loose)]
    out = train_pack(model, pool, test, "sgd_prior", TrainSettings(steps=4, batch_size=5),
                     specs)
    assert [o.diagnostics["free_share"] for o in out] == [0.0, 1.0]
    assert dim > 0 and np.isfinite(out[0].final["accuracy"])


def test_the_draws_of_the_evaluation_seeds_are_learned_too():
    """Evaluation seeds use draw s mod draws: prior learning must cover the draws the tuning
    seeds never use (a cpu study stopped at its final runs for want of oracle draw 4)."""
    from bprior_core.study.finals import needed_draws

    profile = validate_profile(with_values(raw(), priors__draws=6))
    draws = needed_draws(profile)
    # tuning seeds 0-2, evaluation seeds 100-102 at n = 5 (draws 4, 5, 0)
    for source in ("oracle", "task"):
        assert {d for s, d in draws if s == source} == {0, 1, 2, 4, 5}, source


def test_the_power_design_level_counts_every_claim_of_the_family():
    from bprior_core.claims import FAMILY_IDS

    assert power.FAMILY_SIZE == len(FAMILY_IDS)
    assert power.DESIGN_LEVEL == pytest.approx(1 - 0.05 / len(FAMILY_IDS))
