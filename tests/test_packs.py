"""Packs in a study: grouping, packed vs unpacked results, exact resume, pack and precision keys."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import SMOKE_PACK, copy_root, fake_record

from bprior_core import study
from bprior_core.cli import main
from bprior_core.config import ProfileError, validate_profile
from bprior_core.study import execution, resources


def fresh_root(source: Path, tmp_path: Path, name: str) -> Path:
    """A copy of a shared outputs root (`smoke_priors`, `smoke_study`) under tmp_path."""
    return copy_root(source, tmp_path / name)


# ----------------------------------------------------------------------------- grouping


def test_pack_key_ignores_what_runs_own(smoke) -> None:
    runs = study.plan(smoke, ["inference"])
    by_key: dict[str, set] = {}
    for run in runs:
        by_key.setdefault(study.pack_key(run["config"]), set()).add(
            (run["config"]["method"], run["config"]["n_train"]))
    # one shape per (method, size): seeds, arms and priors share packs
    assert all(len(v) == 1 for v in by_key.values())
    cfg = runs[0]["config"]
    other = copy.deepcopy(cfg)
    other["train"].update(lr=0.5, weight_decay=0.1, temperature=2.0)
    other.update(seed=99, arm="x", prior={"kind": "zero"})
    assert study.pack_key(other) == study.pack_key(cfg)
    other["train"]["steps"] += 1
    assert study.pack_key(other) != study.pack_key(cfg)


def test_make_packs_cuts_groups_in_plan_order(smoke) -> None:
    runs = study.plan(smoke)
    packs = study.make_packs(runs, 3)
    assert sorted(r["id"] for p in packs for r in p) == sorted(r["id"] for r in runs)
    assert all(1 <= len(p) <= 3 for p in packs)
    for pack in packs:
        assert len({study.pack_key(r["config"]) for r in pack}) == 1
        positions = [runs.index(r) for r in pack]
        assert positions == sorted(positions)
    singles = study.make_packs(runs, 1)
    assert all(len(p) == 1 for p in singles) and len(singles) == len(runs)
    # packs of one experiment are the same whether planned alone or with the others
    rank_only = study.make_packs(study.plan(smoke, ["rank"]), 3)
    assert all(p in packs for p in rank_only)
    with pytest.raises(ValueError, match=">= 1"):
        study.make_packs(runs, 0)


# ----------------------------------------------------------------------------- results


def metrics_of(profile, runs, root) -> dict:
    return {r["id"]: json.loads(study.result_path(profile, r, root).read_text())
            for r in runs}


def pack_check_runs(profile: dict) -> list[dict]:
    """Runs that cover every method and the chains: SGD + learned prior and SGHMC + learned
    prior at the smallest inference size (the first tuning point, every seed), the runs from
    scratch (plain SGD), and the temperature experiment's chains."""
    size = min(profile.experiments.inference.sizes)
    first = profile.experiments.inference.tuning.scales[0]

    def wanted(cfg: dict) -> bool:
        if cfg["experiment"] == "inference":
            return (cfg["arm"] in ("sgd+learned", "sghmc+learned") and cfg["n_train"] == size
                    and cfg["tuned"]["value"] == first)
        return cfg["experiment"] == "temperature" or cfg["arm"] == "scratch"

    return [r for r in study.plan(profile) if wanted(r["config"])]


def test_smoke_packed_and_unpacked_agree_in_float64(smoke, smoke_priors, tmp_path) -> None:
    """In float64 a pack of 4 and the same runs one by one give the same metrics (to 1e-9) on
    any machine: each run's arithmetic touches only its own slice. (In float32 the two round
    differently and few-shot BatchNorm amplifies that over the steps: on one machine 5 of 200
    test images moved, so float32 runs are compared after one step, in test_engine.)"""
    profile = smoke.replace("precision", "fp64")
    runs = pack_check_runs(profile)
    assert {r["config"]["method"] for r in runs} == {"sgd", "sgd_prior", "sghmc"}
    roots = {size: fresh_root(smoke_priors, tmp_path, f"pack{size}") for size in (1, 4)}
    for size, root in roots.items():
        counts = study.run_sweep(profile, runs, root, workers=1, progress=False, pack=size)
        assert counts["ran"] == len(runs)
    one, four = (metrics_of(profile, runs, roots[s]) for s in (1, 4))
    assert {r["pack_size"] for r in four.values()} >= {4} and all(
        r["pack_size"] == 1 for r in one.values())
    for rid, a in one.items():
        b = four[rid]
        assert a["status"] == b["status"] == "ok" and a["config"] == b["config"]
        compared = 0
        for split in ("metrics", "val_metrics"):  # tuning runs are scored on validation only
            for part in ("final", "bma"):
                if a[split][part] is None:
                    assert b[split][part] is None
                    continue
                compared += 1
                for key, value in a[split][part].items():
                    assert value == pytest.approx(b[split][part][key], rel=1e-9, abs=1e-9), \
                        (rid, split, part, key)
        assert compared


def test_packed_sweep_killed_mid_pack_resumes_to_identical_results(
    smoke, smoke_priors, smoke_study, tmp_path, monkeypatch
) -> None:
    """Killed after 6 result files (in the middle of the second pack), a resumed sweep retrains
    whole packs and ends with exactly the numbers of an uninterrupted sweep (`smoke_study`).
    The control experiment: 30 tuning runs in 8 packs (the inference experiment's shapes)."""
    runs = study.plan(smoke, ["control"])
    killed, clean = fresh_root(smoke_priors, tmp_path, "killed"), smoke_study
    writes = []
    real_write = execution.write_json_atomic

    def dying_write(obj, path):
        if len(writes) == 6:
            raise KeyboardInterrupt("killed")
        writes.append(path)
        real_write(obj, path)

    monkeypatch.setattr(execution, "write_json_atomic", dying_write)
    with pytest.raises(KeyboardInterrupt):
        study.run_sweep(smoke, runs, killed, workers=1, progress=False, pack=SMOKE_PACK)
    monkeypatch.undo()
    assert len(list((study.output_dir(smoke, killed) / "runs").glob("*.json"))) == 6
    resumed = study.run_sweep(smoke, runs, killed, workers=1, progress=False, pack=SMOKE_PACK)
    assert resumed["skipped"] == 6 and resumed["ran"] == len(runs) - 6
    a, b = metrics_of(smoke, runs, killed), metrics_of(smoke, runs, clean)
    for rid in a:
        for field in ("status", "metrics", "diagnostics", "final_loss", "n_samples"):
            assert a[rid][field] == b[rid][field], (rid, field)


def test_every_pack_runs_with_the_workers_thread_count(smoke, tmp_path, monkeypatch) -> None:
    """With workers: 2 and a single pack left, the pack still gets cpu_count // 2 threads."""
    seen = []

    def execute(pack, profile, root):
        seen.append(torch.get_num_threads())
        return [fake_record(r) for r in pack]

    monkeypatch.setattr(resources, "usable_cores", lambda: 4)
    profile = smoke.replace("workers", 2)
    runs = study.plan(profile, ["rank"])[:1]
    assert runs[0]["config"]["context"]["threads"] == 2  # part of the run's identity
    study.run_sweep(profile, runs, tmp_path, progress=False, execute=execute)
    assert seen == [2]
    # one process asked for instead: the thread count still follows the profile's `workers`
    seen.clear()
    study.run_sweep(profile, runs, tmp_path / "again", workers=1, progress=False,
                    execute=execute)
    assert seen == [2]


def test_a_pack_too_large_for_the_device_says_what_to_do(smoke, smoke_priors, tmp_path,
                                                          monkeypatch) -> None:
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(execution, "train_pack", out_of_memory)
    root = fresh_root(smoke_priors, tmp_path, "oom")
    runs = study.plan(smoke, ["rank"])
    with pytest.raises(study.StudyError, match="smaller `pack:`.*--pack 2"):
        study.run_sweep(smoke, runs, root, workers=1, progress=False, pack=4)
    assert not (study.output_dir(smoke, root) / "runs").exists()


# ----------------------------------------------------------------------------- keys


def raw_profile(name: str) -> dict:
    import yaml

    from bprior_core.config import profile_path

    return yaml.safe_load(profile_path(name).read_text())


@pytest.mark.parametrize("value", [0, -3, "big", 1.5, True])
def test_bad_pack_values_name_what_is_allowed(value) -> None:
    raw = raw_profile("smoke")
    raw["pack"] = value
    with pytest.raises(ProfileError, match="pack.*'auto' or an integer >= 1"):
        validate_profile(raw)


def test_bad_precision_names_the_choices() -> None:
    raw = raw_profile("smoke")
    raw["precision"] = "fp16"
    with pytest.raises(ProfileError, match="precision.*'fp32', 'bf16'"):
        validate_profile(raw)


def test_pack_auto_and_the_cli_override(smoke, monkeypatch) -> None:
    auto = smoke.replace("pack", "auto")
    assert study.resolve_pack_size(auto) == resources.CPU_AUTO_PACK
    assert study.resolve_pack_size(auto, override=7) == 7
    assert study.resolve_pack_size(smoke.replace("pack", 3)) == 3
    with pytest.warns(UserWarning, match="no memory information"):
        assert resources.auto_pack_size("mps", "small_resnet", 10, 1, 16, "fp32") == \
            resources.FALLBACK_PACK


@pytest.mark.parametrize("value", ["0", "-2", "100000", "lots"])
def test_cli_refuses_a_pack_outside_its_range(capsys, value) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--profile", "smoke", "--pack", value])
    assert info.value.code == 2
    assert "an integer in [1, 4096]" in capsys.readouterr().err


def test_cuda_device_without_cuda_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(study.StudyError, match="no CUDA device"):
        study.resolve_device("cuda")
