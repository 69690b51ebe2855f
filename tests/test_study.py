"""Tests for bprior_core.study: planning, priors per run, resumable sweeps, atomic result files."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import SMOKE_PACK, copy_root
from conftest import fake_record as complete_record

from bprior_core import study
from bprior_core.config import as_dict, evaluation_seeds, learning_settings, load_profile
from bprior_core.data.subsets import few_shot_indices
from bprior_core.priors import learning as learn
from bprior_core.priors.files import PriorFileError, load_prior, save_authors_prior
from bprior_core.priors.gaussian import GaussianPrior
from bprior_core.study import execution
from bprior_core.study.resources import threads_per_worker, torch_threads
from bprior_core.training.models import build_model, flat_parameters, num_prior_parameters
from bprior_core.training.run import SAMPLER_METHODS, RunOutcome
from bprior_core.vocabulary import TASK_PRIOR


@pytest.fixture(scope="module")
def flowers() -> dict:
    return load_profile("flowers102-resnet50")


def expected_count(profile: dict) -> dict[str, int]:
    """Runs per experiment, from the grid the profile describes."""
    exps = profile.to_dict()["experiments"]

    def seeds(experiment: str) -> int:
        return exps[experiment]["seeds"] or profile.seeds

    scale, tuning, temp = exps["scale"], exps["inference"]["tuning"], exps["temperature"]
    conventions = len(scale["rules"] or [0]) * len(scale["eps"] or [0])
    # tuning runs: each arm's strength grid crossed with the learning rates, on the tuning
    # seeds (the fixed protocol; its final runs follow on the evaluation seeds)
    grid = len(tuning["scales"]) * len(tuning["lrs"] or [0]) if tuning["enabled"] else 1
    tuned = (tuning["seeds"] if exps["inference"]["protocol"] == "fixed"
             else seeds("inference"))
    counts = {
        "rank": len(exps["rank"]["ranks"]) * seeds("rank")
        * (2 if exps["rank"]["fixed_trace"] else 1) * len(exps["rank"]["scales"] or [0]),
        "scale": (len(scale["priors"]) * len(scale["scales"]) * conventions + scale["scratch"])
        * seeds("scale"),
        "inference": len(exps["inference"]["sizes"]) * len(exps["inference"]["arms"]) * grid
        * tuned,
        "temperature": len(temp["temperatures"]) * temp["chains"] * seeds("temperature"),
        "control": len(exps["control"]["arms"]) * grid * tuned,
        "covariance": len(exps["covariance"]["arms"]) * grid * tuned,
        "per_seed": (len(exps["per_seed"]["arms"]) * len(exps["per_seed"]["sizes"]) * grid
                     * exps["per_seed"]["seeds"]),
        # per size and seed: the reference at T = 1, SGD and the recipe on its subspace; on
        # the curve seeds the other temperatures too
        "reference": len(exps["reference"]["sizes"]) * (
            3 * exps["reference"]["seeds"]
            + (len(exps["reference"]["temperatures"]) - 1) * exps["reference"]["curve_seeds"]),
    }
    return {k: v for k, v in counts.items() if exps[k]["enabled"]}


# ----------------------------------------------------------------------------- planning


@pytest.mark.parametrize("name", ["smoke", "cpu", "flowers102-resnet50"])
def test_plan_size_is_the_product_of_the_grid(name) -> None:
    profile = load_profile(name)
    runs = study.plan(profile)
    expected = expected_count(profile)
    assert len(runs) == sum(expected.values())
    per_experiment = Counter(r["config"]["experiment"] for r in runs)
    assert dict(per_experiment) == expected
    for experiment in study.EXPERIMENTS:
        assert len(study.plan(profile, [experiment])) == expected.get(experiment, 0)


def test_flowers_plan_has_2508_runs(flowers) -> None:
    # 6 ranks x 2 traces x 5 seeds + (2 priors x 2 rules x 2 eps x 10 scales + scratch) x 3 seeds
    # + 7 sizes x 7 arms x (5 grid values x 3 learning rates) x 3 tuning seeds (the final runs
    # follow from their results, on 5 evaluation seeds per size)
    assert sum(expected_count(flowers).values()) == 60 + 243 + 2205
    assert len(study.plan(flowers)) == 2508


def test_run_ids_are_unique_and_stable(smoke) -> None:
    runs = study.plan(smoke)
    ids = [r["id"] for r in runs]
    assert len(set(ids)) == len(ids)
    assert ids == [r["id"] for r in study.plan(smoke)]
    assert ids == [r["id"] for r in study.plan(load_profile("smoke"))]
    assert [r["config"] for r in runs] == [r["config"] for r in study.plan(smoke)]
    assert all(isinstance(i, str) and len(i) == 16 for i in ids)
    # every run is JSON-serialisable (it is stored in its result file)
    assert json.loads(json.dumps(runs)) == runs


def test_ids_change_with_what_a_run_depends_on(smoke) -> None:
    tuned = ("inference", "control", "covariance", "per_seed", "reference")  # steps per size
    base = {r["id"] for r in study.plan(smoke) if r["config"]["experiment"] not in tuned}
    longer = smoke.replace("train.steps", smoke.train.steps + 1)
    assert not base & {r["id"] for r in study.plan(longer)}
    assert ([r["id"] for r in study.plan(longer, tuned)] == [r["id"] for r in study.plan(smoke,
                                                                                          tuned)])
    longer = longer.replace("experiments.inference.steps", [13, 16])
    changed = {r["id"] for r in study.plan(longer, tuned)} ^ {r["id"] for r in study.plan(smoke,
                                                                                          tuned)}
    assert changed and all(r["config"]["n_train"] == 5 for r in study.plan(longer, tuned)
                           if r["id"] in changed)
    # changing the inference grid leaves the other experiments' runs (and results) alone
    sizes = copy.deepcopy(smoke)
    sizes = sizes.replace("experiments.inference.sizes", [5, 20])
    for experiment in ("rank", "scale"):
        assert ([r["id"] for r in study.plan(sizes, [experiment])]
                == [r["id"] for r in study.plan(smoke, [experiment])])
    assert {r["id"] for r in study.plan(sizes, ["inference"])} != {
        r["id"] for r in study.plan(smoke, ["inference"])}


def test_disabled_experiment_is_not_planned(smoke) -> None:
    profile = copy.deepcopy(smoke)
    profile = profile.replace("experiments.scale.enabled", False)
    runs = study.plan(profile)
    assert not any(r["config"]["experiment"] == "scale" for r in runs)
    assert len(runs) == sum(expected_count(profile).values())


def test_unknown_experiment_is_a_clear_error(smoke) -> None:
    with pytest.raises(ValueError, match="unknown experiment"):
        study.plan(smoke, ["ranks"])


def untuned(profile: dict) -> dict:
    """A copy of `profile` with the inference arms untuned (fixed scale, trace matching)."""
    out = copy.deepcopy(profile)
    out = out.replace("experiments.inference.tuning.enabled", False)
    return out


def test_tuned_arms_run_once_per_grid_value(smoke) -> None:
    runs = study.plan(smoke, ["inference"])
    tuning = smoke.experiments.inference.tuning
    per_arm: dict[str, set] = {}
    for run in runs:
        cfg = run["config"]
        parameter, value = cfg["tuned"]["parameter"], cfg["tuned"]["value"]
        per_arm.setdefault(cfg["arm"], set()).add(value)
        kind = cfg["prior"]["kind"]
        if kind == "learned":
            assert parameter == "scale" and cfg["prior"]["scale"] == value
        elif kind in ("zero", "isotropic"):
            assert parameter == "variance" and cfg["prior"]["variance"] == value
        else:
            assert parameter == "weight_decay" and cfg["train"]["weight_decay"] == value
    assert set(per_arm) == set(smoke.experiments.inference.arms)
    assert {len(v) for v in per_arm.values()} == {len(tuning.scales)}
    # grid values share a pack; the tuned value is not part of the pack key
    assert len(study.make_packs(runs, 1000)) < len(runs)


def test_arms_map_to_methods_and_prior_kinds(smoke) -> None:
    smoke = untuned(smoke)
    runs = study.plan(smoke, ["inference"])
    bayes = smoke.experiments.inference.bayes_method
    expected = {
        "sgd": ("sgd", "none"), "sgd+learned": ("sgd_prior", "learned"),
        "sghmc+learned": (bayes, "learned"), "sgd+zero": ("sgd_prior", "zero"),
        "sghmc+zero": (bayes, "zero"), "sgd+isotropic": ("sgd_prior", "isotropic"),
        "sghmc+isotropic": (bayes, "isotropic"), "ensemble+learned": (bayes, "learned"),
        "probe": ("probe", "none"),
    }
    seen = set()
    for run in runs:
        cfg = run["config"]
        assert (cfg["method"], cfg["prior"]["kind"]) == expected[cfg["arm"]]
        # the ensemble control is the sampler at temperature 0, otherwise the same settings
        temperature = 0.0 if cfg["arm"] == "ensemble+learned" else smoke.train.temperature
        steps = dict(zip(smoke.experiments.inference.sizes,
                         smoke.experiments.inference.steps, strict=True))
        assert cfg["train"] == {**as_dict(smoke.train), "temperature": temperature,
                                "steps": steps[cfg["n_train"]]}
        seen.add(cfg["arm"])
        if cfg["prior"]["kind"] in ("learned", "isotropic"):
            assert cfg["prior"]["rank"] == smoke.experiments.inference.rank
            assert cfg["prior"]["scale"] == smoke.experiments.inference.scale
        if cfg["prior"]["kind"] == "zero":
            assert cfg["prior"]["variance"] == smoke.experiments.inference.nonlearned_variance
    assert seen == set(smoke.experiments.inference.arms)
    ranks = {r["config"]["prior"]["rank"] for r in study.plan(smoke, ["rank"])}
    assert ranks == set(smoke.experiments.rank.ranks)


def test_same_seed_and_size_share_the_training_subset(smoke, downstream_train) -> None:
    labels = downstream_train.labels
    protocol = smoke.data.subset_protocol
    by_key: dict[tuple[int, int], set[tuple[int, ...]]] = {}
    for run in study.plan(smoke):
        cfg = run["config"]
        assert cfg["data"]["subset_protocol"] == protocol
        idx = few_shot_indices(labels, cfg["n_train"], cfg["data"]["subset_protocol"], cfg["seed"])
        by_key.setdefault((cfg["n_train"], cfg["seed"]), set()).add(tuple(idx.tolist()))
    assert all(len(v) == 1 for v in by_key.values())
    subsets = {k: next(iter(v)) for k, v in by_key.items()}
    assert subsets[(10, 0)] != subsets[(10, 1)]
    assert len(subsets[(5, 0)]) == 5 and len(subsets[(10, 1)]) == 10


# ----------------------------------------------------------------------------- priors


def random_prior(d: int = 50, k: int = 4, seed: int = 0) -> GaussianPrior:
    g = torch.Generator().manual_seed(seed)
    return GaussianPrior(
        torch.randn(d, generator=g, dtype=torch.float64),
        torch.rand(d, generator=g, dtype=torch.float64) + 0.1,
        0.3 * torch.randn(k, d, generator=g, dtype=torch.float64),
    )


def test_build_run_prior_learned_is_truncated_and_rescaled() -> None:
    learned = random_prior()
    spec = {"kind": "learned", "rank": 2, "scale": 10.0, "rule": "same", "eps": 0.1}
    prior = study.build_run_prior(spec, learned)
    assert prior.rank == 2
    assert torch.equal(prior.mean, learned.mean)
    assert torch.allclose(prior.variance, 10.0 * learned.variance + 0.1)
    top2 = learned.principal(2).cov_factor  # the top principal directions, not the first rows
    assert torch.allclose(prior.cov_factor, math.sqrt(10.0) * top2)
    authors = study.build_run_prior({**spec, "rule": "authors"}, learned)
    assert torch.allclose(authors.cov_factor, 10.0 * top2)
    assert torch.allclose(authors.variance, 10.0 * learned.variance + 0.1)
    assert study.build_run_prior({**spec, "rank": 0}, learned).rank == 0
    # at fixed trace every rank has the full-rank rescaled prior's total variance
    full = study.build_run_prior({**spec, "rank": learned.rank}, learned)
    for rank in (0, 1, 2):
        fixed = study.build_run_prior({**spec, "rank": rank, "trace": "fixed"}, learned)
        assert math.isclose(float(fixed.diag_of_covariance().sum()),
                            float(full.diag_of_covariance().sum()), rel_tol=1e-5)


def test_build_run_prior_isotropic_matches_the_trace_around_the_learned_mean() -> None:
    learned = random_prior()
    spec = {"kind": "isotropic", "rank": 3, "scale": 100.0, "rule": "same", "eps": 0.0}
    prior = study.build_run_prior(spec, learned)
    assert prior.rank == 0
    assert torch.equal(prior.mean, learned.mean)
    f = learned.principal(3).cov_factor
    expected_diag = 100.0 * (learned.variance + (f * f).sum(0))
    assert torch.allclose(prior.variance, torch.full_like(prior.variance, expected_diag.mean()))
    dense = torch.diag(100.0 * learned.variance) + 100.0 * f.T @ f
    assert float(prior.variance.sum()) == pytest.approx(float(torch.trace(dense)), rel=1e-10)


def test_build_run_prior_zero_and_none() -> None:
    learned = random_prior()
    zero = study.build_run_prior({"kind": "zero", "variance": 0.01}, learned)
    assert torch.equal(zero.mean, torch.zeros_like(learned.mean))
    assert torch.allclose(zero.variance, torch.full_like(learned.variance, 0.01))
    assert zero.rank == 0
    assert study.build_run_prior({"kind": "none"}, learned) is None
    with pytest.raises(ValueError, match="kind"):
        study.build_run_prior({"kind": "laplace", "rank": 0, "scale": 1.0, "rule": "same",
                               "eps": 0.0}, learned)


def test_every_planned_prior_spec_can_be_built(smoke) -> None:
    learned = random_prior(k=smoke.priors.learning.max_rank)
    kinds = Counter()
    for run in study.plan(smoke):
        spec = run["config"]["prior"]
        if spec["kind"] == "head":  # the reference's head prior is not a backbone prior
            assert study.build_run_prior(spec, learned) is None
            continue
        prior = study.build_run_prior(spec, learned)
        kinds[spec["kind"]] += 1
        if prior is not None:
            assert prior.dim == learned.dim
            assert torch.isfinite(prior.variance).all()
    assert set(kinds) == {"learned", "isotropic", "zero", "none", "task"}


def test_check_prior_files_names_the_missing_files(flowers, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # its published prefixes moved into this test's folder
    flowers = flowers.replace("priors.files", {
        k: str(tmp_path / "priors" / Path(v).name)
        for k, v in as_dict(flowers.priors.files).items()})
    with pytest.raises(study.StudyError) as info:
        study.check_prior_files(flowers)
    message = str(info.value)
    ssl = flowers.priors.files.ssl
    assert f"{ssl}_mean.pt" in message and f"{ssl}_model.pt" in message
    assert f"{flowers.priors.files.supervised}_covmat.pt" in message
    # only the rank experiment: only the ssl prior is needed
    with pytest.raises(study.StudyError) as info:
        study.check_prior_files(flowers, ["rank"])
    assert "priors.files.ssl" in str(info.value)
    assert "priors.files.supervised" not in str(info.value)
    # once the files are there, nothing is raised
    for name in ("ssl", "supervised"):
        prefix = Path(flowers.priors.files.prefix(name))
        prefix.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("mean", "variance", "covmat", "model"):
            Path(f"{prefix}_{suffix}.pt").touch()
    study.check_prior_files(flowers)


def test_check_prior_files_unset_prefix_and_learn_profiles(flowers, smoke) -> None:
    profile = copy.deepcopy(flowers)
    profile = profile.replace("priors.files.ssl", None)
    with pytest.raises(study.StudyError, match="priors.files.ssl is not set"):
        study.check_prior_files(profile, ["rank"])
    study.check_prior_files(smoke)  # learned priors: nothing to check


# ----------------------------------------------------------------------------- executing runs


@pytest.fixture
def fake_prior_loader(monkeypatch, smoke):
    """Replace the stored-prior loader by a random prior over a fresh small ResNet backbone."""
    torch.manual_seed(0)
    backbone = build_model("small_resnet", 5).backbone
    w = flat_parameters(backbone).detach()
    g = torch.Generator().manual_seed(0)
    k = smoke.priors.learning.max_rank
    learned = GaussianPrior(w, torch.full_like(w, 1e-4), 1e-3 * torch.randn(k, w.numel(),
                                                                            generator=g))
    state = {key: v.clone() for key, v in backbone.state_dict().items()}
    monkeypatch.setattr(execution, "load_prior_and_backbone", lambda *a, **kw: (learned, state))
    return learned, state


def test_execute_run_gives_every_arm_the_same_training_subset(
    smoke, fake_prior_loader, monkeypatch
) -> None:
    seen = []

    def fake_train(model, pool, test, method, settings, specs, device, precision, val):
        for spec in specs:
            seen.append({"images": pool.images[spec.train_indices].clone(),
                         "labels": pool.labels[spec.train_indices].clone(), "n_test": len(test),
                         "method": method, "prior": spec.prior, "seed": spec.seed,
                         "val": val})
        return [RunOutcome("ok", {"accuracy": 0.5}, None, 0, settings.steps, 0.1, 0.0)
                for _ in specs]

    monkeypatch.setattr(execution, "train_pack", fake_train)
    smoke = untuned(smoke)
    runs = study.plan(smoke, ["inference"])
    records = [study.execute_run(run, smoke) for run in runs]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, run in enumerate(runs):
        cfg = run["config"]
        groups.setdefault((cfg["n_train"], cfg["seed"]), []).append(i)
        assert seen[i]["method"] == cfg["method"] and seen[i]["seed"] == cfg["seed"]
        assert seen[i]["n_test"] == smoke.data.test_size
        assert (seen[i]["prior"] is None) == (cfg["prior"]["kind"] == "none")
        assert len(seen[i]["labels"]) == cfg["n_train"]
        # the validation set is class-balanced and never part of a training subset
        val = seen[i]["val"]
        assert len(val) == smoke.data.val_size
        assert torch.bincount(val.labels).tolist() == [smoke.data.val_size // 5] * 5
        train_rows = seen[i]["images"].flatten(1)
        assert not (train_rows.unsqueeze(1) == val.images.flatten(1).unsqueeze(0)).all(-1).any()
        assert records[i]["id"] == run["id"] and records[i]["config"] == cfg
    for members in groups.values():
        first = seen[members[0]]
        assert len(members) == len(smoke.experiments.inference.arms)
        for i in members[1:]:
            assert torch.equal(seen[i]["images"], first["images"])
            assert torch.equal(seen[i]["labels"], first["labels"])
            assert records[i]["train_indices_digest"] == records[members[0]]["train_indices_digest"]
    digests = {records[m[0]]["train_indices_digest"] for m in groups.values()}
    assert len(digests) == len(groups)  # different seed or size: different subset


def test_execute_run_end_to_end_record(smoke, fake_prior_loader) -> None:
    tune = next(r for r in study.plan(smoke, ["inference"])
                if r["config"]["arm"] == "sghmc+learned" and r["config"]["n_train"] == 5)
    tuned = study.execute_run(tune, smoke)
    assert tuned["metrics"] == {"final": None, "bma": None}  # a tuning run: validation only
    assert tuned["val_metrics"]["bma"]["nll"] > 0 and set(tuned["_predictions"]) == {"val"}
    config = {**tune["config"], "phase": "final"}  # as finals.final_runs makes it
    run = {"id": study.planning.digest(config), "config": config}
    record = study.execute_run(run, smoke)
    predictions = record.pop("_predictions")  # written beside the record by the driver
    assert predictions["test"]["log_probs"].shape == (smoke.data.test_size, 5)
    assert record["val_metrics"] == tuned["val_metrics"]  # the same training, scored on test
    assert record["status"] == "ok"
    assert record["config"] == run["config"] and record["id"] == run["id"]
    assert record["config"]["method"] in SAMPLER_METHODS
    train_cfg = smoke.train
    assert record["n_samples"] == ((train_cfg.cycles - train_cfg.burn_in_cycles)
                                   * train_cfg.samples_per_cycle)
    assert record["steps_done"] == train_cfg.steps
    for part in ("final", "bma"):
        assert 0.0 <= record["metrics"][part]["accuracy"] <= 1.0
    json.dumps(record)  # storable


def test_a_prior_of_the_wrong_size_is_refused_when_read(smoke, tmp_path) -> None:
    model = build_model("small_resnet", 5)
    small = GaussianPrior(torch.zeros(10), torch.ones(10), torch.zeros(3, 10))
    save_authors_prior(small, tmp_path / "small", model.backbone.state_dict())
    profile = copy.deepcopy(smoke)
    profile = profile.replace("priors", dict(source="files", files={"ssl": str(tmp_path / "small"),
                                                    "supervised": None}, draws=1))
    d = num_prior_parameters(model.backbone)
    with pytest.raises(PriorFileError) as info:
        study.load_prior_and_backbone(study.prior_location(profile, "ssl"))
    assert "D=10" in str(info.value) and str(d) in str(info.value)


# ----------------------------------------------------------------------------- sweeps


def fake_record(run: dict) -> dict:
    """A deterministic, complete result derived from the run configuration alone."""
    digest = hashlib.sha256(json.dumps(run["config"], sort_keys=True).encode()).hexdigest()
    diverged = int(digest[:4], 16) % 4 == 0
    final = None if diverged else {"accuracy": int(digest[4:8], 16) / 65535.0, "nll": 1.0,
                                   "ece": 0.1, "brier": 0.5}
    return complete_record(run, status="diverged" if diverged else "ok",
                           metrics={"final": final, "bma": None})


def make_execute(calls: list[str], fail_after: int | None = None):
    """A fake pack executor: records which runs it trained; fails once `fail_after` runs ran."""
    def execute(pack, profile, root):
        if fail_after is not None and len(calls) + len(pack) > fail_after:
            raise RuntimeError("interrupted")
        calls.extend(run["id"] for run in pack)
        return [fake_record(run) for run in pack]

    return execute


def stored_files(root: Path, profile: dict) -> dict[str, bytes]:
    folder = study.output_dir(profile, root) / "runs"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_interrupted_sweep_resumes_to_the_same_results(smoke, tmp_path) -> None:
    runs = study.plan(smoke)
    k = 7
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="interrupted"):
        study.run_sweep(smoke, runs, tmp_path / "a", workers=1, progress=False,
                        execute=make_execute(calls, fail_after=k))
    assert len(calls) == k
    assert len(stored_files(tmp_path / "a", smoke)) == k

    counts = study.run_sweep(smoke, runs, tmp_path / "a", workers=1, progress=False,
                             execute=make_execute(calls))
    assert counts["planned"] == len(runs)
    assert counts["skipped"] == k
    assert counts["ran"] == len(runs) - k
    assert Counter(calls) == Counter(r["id"] for r in runs)  # each run exactly once overall

    clean_calls: list[str] = []
    clean = study.run_sweep(smoke, runs, tmp_path / "b", workers=1, progress=False,
                            execute=make_execute(clean_calls))
    assert clean["ran"] == len(runs) and clean["skipped"] == 0
    expected_diverged = sum(fake_record(r)["status"] == "diverged" for r in runs)
    assert clean["diverged"] == expected_diverged
    assert stored_files(tmp_path / "a", smoke) == stored_files(tmp_path / "b", smoke)
    assert len(stored_files(tmp_path / "b", smoke)) == len(runs)

    # everything done: a third sweep runs nothing
    again = study.run_sweep(smoke, runs, tmp_path / "a", workers=1, progress=False,
                            execute=make_execute(calls))
    assert again["ran"] == 0 and again["skipped"] == len(runs)
    assert len(calls) == len(runs)
    assert len(study.load_results(smoke, tmp_path / "a")) == len(runs)


def test_is_done_ignores_a_file_with_a_different_config(smoke, tmp_path) -> None:
    run = study.plan(smoke)[0]
    path = study.result_path(smoke, run, tmp_path)
    assert not study.is_done(smoke, run, tmp_path)
    study.write_json_atomic(fake_record(run), path)
    assert study.is_done(smoke, run, tmp_path)

    stale = fake_record(run)
    stale["config"] = {**run["config"], "seed": run["config"]["seed"] + 100}
    study.write_json_atomic(stale, path)
    assert not study.is_done(smoke, run, tmp_path)
    assert study.load_results(smoke, tmp_path) == []
    calls: list[str] = []
    counts = study.run_sweep(smoke, [run], tmp_path, workers=1, progress=False,
                             execute=make_execute(calls))
    assert calls == [run["id"]] and counts["ran"] == 1
    assert json.loads(path.read_text())["config"] == run["config"]

    path.write_text('{"config": ')  # truncated file
    assert not study.is_done(smoke, run, tmp_path)


@pytest.mark.parametrize("content", [b"null", b"[1, 2]", b'"a string"', b"\xff\xfe{}"],
                         ids=["null", "list", "string", "not-utf8"])
def test_a_run_file_that_is_not_a_record_counts_as_missing(smoke, tmp_path, capsys,
                                                           content) -> None:
    """A run file that parses but is not an object, or is not UTF-8, is treated as missing by
    plan, load_results and the sweep (which runs it again), never a traceback."""
    from bprior_core.cli import main

    run = study.plan(smoke)[0]
    path = study.result_path(smoke, run, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    assert study.read_record(path) is None and not study.is_done(smoke, run, tmp_path)
    assert study.load_results(smoke, tmp_path) == []
    assert main(["plan", "--profile", "smoke", "--outputs", str(tmp_path)]) == 0
    assert "0 already done" in capsys.readouterr().out
    calls: list[str] = []
    counts = study.run_sweep(smoke, [run], tmp_path, workers=1, progress=False,
                             execute=make_execute(calls))
    assert calls == [run["id"]] and counts["ran"] == 1
    assert study.is_done(smoke, run, tmp_path)


def test_write_json_atomic_leaves_no_temporary_files(tmp_path) -> None:
    path = tmp_path / "deep" / "runs" / "r.json"
    obj = {"b": [1, 2.5, None], "a": {"x": "y"}}
    study.write_json_atomic(obj, path)
    assert json.loads(path.read_text()) == obj
    study.write_json_atomic({"a": 2}, path)
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_crash_during_json_dump_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "runs" / "r.json"
    study.write_json_atomic({"old": True}, path)

    def crash(obj, f, **kwargs):
        f.write('{"partial": ')
        raise KeyboardInterrupt

    monkeypatch.setattr(execution.json, "dump", crash)
    with pytest.raises(KeyboardInterrupt):
        study.write_json_atomic({"new": True}, path)
    with pytest.raises(KeyboardInterrupt):
        study.write_json_atomic({"new": True}, tmp_path / "runs" / "fresh.json")
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


# ----------------------------------------------------------------------------- a real mini study


def test_learned_prior_mini_study(smoke, tmp_path) -> None:
    """Learn the ssl prior with the smoke settings, run a 2-run rank sweep, resume it."""
    profile = copy.deepcopy(smoke)
    profile = profile.replace("seeds", 1)
    profile = profile.replace("priors.learning", dict(source_train_size=128, pretrain_steps=2,
                                                      swag_steps=6, collect_every=2,
                                                      bn_refresh_batches=1))
    profile = profile.replace("experiments.rank", dict(ranks=[0, 3], fixed_trace=False,
                                                       scales=None))
    paths = study.learn_priors(profile, ["ssl"], root=tmp_path, progress=False)
    prior_file, backbone_file = study.prior_paths(profile, "ssl", tmp_path)
    assert paths == {("ssl", 0): prior_file} and backbone_file.exists()
    stored = load_prior(prior_file)
    assert stored.meta["source_id"] == study.prior_source_id(profile, "ssl")
    assert stored.rank == 3
    mtime = prior_file.stat().st_mtime_ns
    study.learn_priors(profile, ["ssl"], root=tmp_path, progress=False)  # reused
    assert prior_file.stat().st_mtime_ns == mtime

    runs = study.plan(profile, ["rank"])
    counts = study.run_sweep(profile, runs, tmp_path, workers=1, progress=False)
    assert counts["ran"] == 2 and counts["skipped"] == 0
    records = study.load_results(profile, tmp_path, "rank")
    assert len(records) == 2
    assert all(r["status"] in ("ok", "diverged") for r in records)
    assert {r["config"]["prior"]["rank"] for r in records} == {0, 3}
    again = study.run_sweep(profile, runs, tmp_path, workers=1, progress=False)
    assert again["ran"] == 0 and again["skipped"] == 2


def test_zero_prior_without_variance_is_trace_matched():
    """nonlearned_variance null: N(0, v I) with v the rescaled learned prior's mean variance."""
    gen = torch.Generator().manual_seed(3)
    learned = GaussianPrior(torch.randn(6, generator=gen), torch.rand(6, generator=gen) + 0.1,
                            torch.randn(2, 6, generator=gen))
    spec = {"kind": "zero", "variance": None, "rank": 1, "scale": 10.0, "rule": "same", "eps": 0.0}
    prior = study.build_run_prior(spec, learned)
    factor = learned.principal(1).cov_factor
    dense = 10.0 * (torch.diag(learned.variance) + factor.T @ factor)
    assert prior.rank == 0
    assert torch.equal(prior.mean, torch.zeros(6))
    assert torch.allclose(prior.variance, torch.full((6,), float(dense.diagonal().mean())))


def test_learned_priors_are_repeatable(smoke, tmp_path):
    """Learning the same prior twice (fresh folders) gives identical tensors and weights."""
    learned = []
    for folder in ("a", "b"):
        torch.manual_seed(1234 if folder == "a" else 4321)  # global RNG state must not matter
        path = study.learn_priors(smoke, ["ssl"], root=tmp_path / folder, progress=False)["ssl", 0]
        learned.append(load_prior(path))
    a, b = learned
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
    assert torch.equal(a.cov_factor, b.cov_factor)


def test_real_sweep_interrupted_then_resumed_matches_uninterrupted(smoke, smoke_priors,
                                                                    smoke_study, tmp_path):
    """Real runs (smoke control experiment): a failure in the third pack, then a re-run, gives the
    same stored metrics as an uninterrupted sweep (`smoke_study`), and every run is executed
    exactly once. (The control experiment: the inference experiment's shapes, fewer runs.)"""
    runs = study.plan(smoke, ["control"])
    executed, failed = [], []
    root = copy_root(smoke_priors, tmp_path / "a")

    def failing(pack, profile, root):
        if len(executed) == 2 * SMOKE_PACK and not failed:  # the third pack fails
            failed.append(pack[0]["id"])
            raise RuntimeError("injected failure")
        executed.extend(run["id"] for run in pack)
        return study.execute_pack(pack, profile, root)

    with pytest.raises(RuntimeError, match="injected"):
        study.run_sweep(smoke, runs, root, workers=1, progress=False, execute=failing,
                        pack=SMOKE_PACK)
    study.run_sweep(smoke, runs, root, workers=1, progress=False, execute=failing,
                    pack=SMOKE_PACK)
    assert failed and sorted(executed) == sorted(r["id"] for r in runs)
    for run in runs:
        a = json.loads(study.result_path(smoke, run, root).read_text())
        b = json.loads(study.result_path(smoke, run, smoke_study).read_text())
        assert a["metrics"] == b["metrics"] and a["status"] == b["status"]


def test_authors_files_with_zero_variance_need_the_profile_floor(smoke, tmp_path):
    """A published prior with zero variances is refused unless priors.variance_floor is set."""
    from bprior_core.training.models import build_model, flat_parameters

    model = build_model("small_resnet", 5)
    mean = flat_parameters(model.backbone).detach()
    variance = torch.full_like(mean, 1e-4)
    variance[:3] = 0.0
    prefix = tmp_path / "published"
    published = GaussianPrior(mean, torch.full_like(mean, 1e-4), torch.zeros(2, mean.numel()))
    save_authors_prior(published, prefix, model.backbone.state_dict())
    torch.save(variance, f"{prefix}_variance.pt")
    profile = copy.deepcopy(smoke)
    profile = profile.replace("priors", dict(source="files",
                                             files={"ssl": str(prefix), "supervised": None}))
    with pytest.raises(ValueError, match="zero"):
        study.load_prior_and_backbone(study.prior_location(profile, "ssl"))
    profile = profile.replace("priors.variance_floor", 1e-12)
    prior, state = study.load_prior_and_backbone(study.prior_location(profile, "ssl"))
    assert torch.equal(prior.variance[:3], torch.full((3,), 1e-12)) and prior.rank == 2
    assert set(state) == set(model.backbone.state_dict())


def test_each_seed_uses_its_own_prior_draw(smoke) -> None:
    draws = smoke.priors.draws
    assert draws >= 2
    for run in study.plan(smoke):
        prior = run["config"]["prior"]
        assert prior["draw"] == run["config"]["seed"] % draws
        assert prior["source_id"]["seed"] == prior["draw"]
    assert study.needed_draws(smoke, ["rank"]) == [("ssl", d) for d in range(draws)]


def test_prior_draws_are_learned_independently(smoke, tmp_path) -> None:
    profile = copy.deepcopy(smoke)
    profile = profile.replace("priors.learning", dict(source_train_size=128, pretrain_steps=2,
                                                      swag_steps=6, collect_every=2))
    paths = study.learn_priors(profile, [("ssl", 0), ("ssl", 1)], root=tmp_path, progress=False)
    assert paths[("ssl", 0)] != paths[("ssl", 1)]
    first, second = (load_prior(paths["ssl", d]) for d in (0, 1))
    assert first.meta["source_id"]["seed"] == 0 and second.meta["source_id"]["seed"] == 1
    assert not torch.equal(first.mean, second.mean)


# slow: six prior-learning calls, two of them in a pool of two worker processes (14 s alone on
# 2 cores, 19-25 s beside another pytest worker)
@pytest.mark.slow
def test_workers_learn_task_priors_after_their_simclr_draw_as_one_by_one(smoke, tmp_path):
    """Two worker processes (the costliest priors first, each task prior as soon as its SimCLR
    draw is stored) learn the priors that one call per prior learns (in this process, with a
    worker's threads); a task prior starts from its own SimCLR draw's weights."""
    profile = copy.deepcopy(smoke)
    profile = profile.replace("workers", 2)
    profile = profile.replace("priors.learning", dict(source_train_size=128, pretrain_steps=2,
                                                      swag_steps=6, collect_every=2, max_rank=2))
    wanted = [(TASK_PRIOR, 0), (TASK_PRIOR, 1), ("oracle", 0)]
    together = study.learn_priors(profile, wanted, root=tmp_path / "pool", progress=False)
    for key in [("ssl", 0), ("ssl", 1), *wanted]:
        alone = study.learn_priors(profile, [key], root=tmp_path / "alone", progress=False)
        if key in together:
            one, two = load_prior(alone[key]), load_prior(together[key])
            assert torch.equal(one.mean, two.mean) and torch.equal(one.cov_factor,
                                                                   two.cov_factor)
    for draw in (0, 1):
        ssl = load_prior(study.prior_paths(profile, "ssl", tmp_path / "pool", draw)[0])
        assert torch.equal(load_prior(together[TASK_PRIOR, draw]).mean, ssl.mean)


def test_draws_learned_in_packs_are_the_packed_learners_draws(smoke, tmp_path) -> None:
    """`priors.pack: 2` learns draws 0-2 of a source as a pack of two and one alone: exactly
    `learn_priors_packed`'s draws 0 and 1 and `priors.pack: 1`'s draw 2 (same machine and
    threads; that a packed draw is the draw learned alone is checked in float64 in
    `test_learn.py`, float32 rounding differs between CPUs), with the same identities (the pack
    is not part of them); each prior records its share of the pack's time."""
    profile = copy.deepcopy(smoke)
    profile = profile.replace("workers", 1)
    profile = profile.replace("priors.learning", dict(source_train_size=128, pretrain_steps=2,
                                                      swag_steps=6, collect_every=2, max_rank=2))
    wanted = [("oracle", d) for d in range(3)]
    learned = {}
    for pack in (1, 2):
        profile = profile.replace("priors.pack", pack)
        paths = study.learn_priors(profile, wanted, root=tmp_path / str(pack), progress=False)
        learned[pack] = [load_prior(paths[key]) for key in wanted]
    source = study.sources.source_task(profile, "oracle")
    models = []
    for draw in (0, 1):
        torch.manual_seed(draw)
        models.append(build_model(profile.model, source.num_classes, profile.model_weights))
    with torch_threads(threads_per_worker(1)):
        direct = learn.learn_priors_packed(models, source, "supervised",
                                           learning_settings(profile), (0, 1), progress=False)
    for (prior, _), stored in zip(direct, learned[2][:2], strict=True):
        assert torch.equal(stored.mean, prior.mean)
        assert torch.equal(stored.cov_factor, prior.cov_factor)
    assert torch.equal(learned[2][2].mean, learned[1][2].mean)
    for alone, packed in zip(learned[1], learned[2], strict=True):
        assert packed.meta["source_id"] == alone.meta["source_id"]
        assert isinstance(packed.meta["wall_time_s"], float)
    assert not torch.allclose(learned[2][0].mean, learned[2][1].mean, rtol=0, atol=5e-3)

def _tuned_record(run: dict) -> dict:
    """A stored tuning record whose validation NLL is lowest at scale 1e5 and lr 0.01."""
    tuned = run["config"]["tuned"]
    nll = abs(math.log10(tuned["value"]) - 5) + abs(math.log10(tuned["lr"] or 0.01) + 2)
    block = {"accuracy": 0.5, "nll": nll, "ece": 0.1, "brier": 0.5}
    return {"status": "ok", "config": run["config"],
            "val_metrics": {"final": block, "bma": block}}


@pytest.mark.parametrize("long_sgd", [True, False])
def test_long_sgd_is_the_chosen_sgd_run_on_the_samplers_budget(smoke, long_sgd) -> None:
    """`sgd_long+learned`: the chosen `sgd+learned` point, `chains` x the steps, one run."""
    profile = copy.deepcopy(smoke)
    profile = profile.replace("experiments.inference.long_sgd", long_sgd)
    finals = study.final_runs(profile, _tuned_record, ["inference"])
    chains = profile.experiments.inference.chains
    sgd = {(f["config"]["n_train"], f["config"]["seed"]): f["config"] for f in finals
           if f["config"]["arm"] == "sgd+learned"}
    long = [f["config"] for f in finals if f["config"]["arm"] == "sgd_long+learned"]
    # on the seeds the samplers are evaluated on: the control of a sampler comparison
    sampler_seeds = sum(len(evaluation_seeds(profile, n, True))
                        for n in profile.experiments.inference.sizes)
    assert len(long) == (sampler_seeds if long_sgd else 0)
    for cfg in long:
        chosen = sgd[(cfg["n_train"], cfg["seed"])]
        assert cfg["train"]["steps"] == chains * chosen["train"]["steps"]
        assert {**cfg["train"], "steps": chosen["train"]["steps"]} == chosen["train"]
        assert cfg["prior"] == chosen["prior"] and cfg["tuned"] == chosen["tuned"]
        assert cfg["tuned"]["value"] == 1e5 and cfg["method"] == "sgd_prior"
        assert "chain" not in cfg
    packs = study.planning.make_packs(finals, 64)
    assert all(len({p["config"]["train"]["steps"] for p in pack}) == 1 for pack in packs)


def test_a_study_is_planned_once(smoke, smoke_study, tmp_path, monkeypatch) -> None:
    """`run_study` plans once and passes the plan through preflight, prior learning and the
    sweep (issue 25): on a finished study it trains nothing and calls `planning.plan` once
    (six times before)."""
    import sys

    from conftest import copy_root

    from bprior_core.study import planning

    root = copy_root(smoke_study, tmp_path / "outputs")
    real, calls = planning.plan, []

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("bprior_core") and getattr(module, "plan", None) is real:
            monkeypatch.setattr(module, "plan", counting)
    counts = study.run_study(smoke, root, progress=False)
    assert counts["ran"] == 0 and counts["skipped"] == counts["planned"] > 0
    assert len(calls) == 1
