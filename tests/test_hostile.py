"""Issue 14's hostile-user battery, one test per defect: bad weights refused, ranks the files do
not hold, incomplete or foreign records, killed writes, messages that never suggest turning the
weights_only protection off."""

from __future__ import annotations

import copy
import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_root, fake_record
from test_failure_messages import (
    assert_one_line,
    authors_files,
    files_profile,
    no_training,  # noqa: F401 - a fixture
    run_cli,
)

from bprior_core import atomic, study
from bprior_core.config import Profile
from bprior_core.priors.files import PriorFileError, load_authors_prior, load_torch_file
from bprior_core.study import execution

# ----------------------------------------------------------------------------- published weights


def damage_model_file(prefix: Path, how: str) -> None:
    path = Path(f"{prefix}_model.pt")
    state = torch.load(path, weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    if how == "empty":
        state = {}
    elif how == "nan":
        state[first] = state[first].clone().fill_(float("nan"))
    elif how == "missing":
        del state[first]
    elif how == "extra":
        state["fc.weight"] = torch.zeros(3, 3)
    elif how == "shape":
        state[first] = torch.zeros(7)
    elif how == "int":
        state[first] = state[first].long()
    torch.save(state, path)


@pytest.mark.parametrize(("how", "needle"), [
    ("empty", "holds no weights"), ("nan", "NaN or infinite values"),
    ("missing", "missing keys stem.0.weight"), ("extra", "unexpected keys fc.weight"),
    ("shape", "wrong shape: stem.0.weight (7,)"), ("int", "wrong kind: stem.0.weight"),
])
def test_published_weights_that_do_not_fit_are_one_line_before_training(
        tmp_path, capsys, no_training, how, needle) -> None:  # noqa: F811
    """`_model.pt` = {} used to train from a random backbone with every run `ok`; NaN weights
    gave `diverged` runs and exit 0; missing, extra or wrong-shape keys a traceback mid-sweep."""
    prefix = authors_files(tmp_path)
    damage_model_file(prefix, how)
    rc, err = run_cli(capsys, "run", "--profile", str(files_profile(tmp_path, prefix)),
                      "--outputs", str(tmp_path / "out"), "--experiment", "inference")
    assert rc == 2
    assert_one_line(err, f"{prefix}_model.pt", needle)
    assert not (study.output_dir(Profile(name="smoke"), tmp_path / "out") / "runs").exists()


def test_a_module_prefix_in_published_weights_is_understood(tmp_path) -> None:
    from bprior_core.priors.files import checked_backbone_state

    prefix = authors_files(tmp_path)
    state = torch.load(f"{prefix}_model.pt", weights_only=True)
    backbone = __import__("bprior_core.training.models", fromlist=["x"]).build_model("small_resnet",
                                                                           5).backbone
    prefixed = {f"module.{k}": v for k, v in state.items()}
    assert checked_backbone_state(prefixed, backbone, "x").keys() == state.keys()


@pytest.mark.parametrize(("suffix", "dtype"), [("variance", torch.bool), ("mean", torch.int64),
                                               ("covmat", torch.complex64)])
def test_prior_tensors_of_the_wrong_dtype_are_refused_naming_the_file(tmp_path, suffix,
                                                                      dtype) -> None:
    """A bool variance used to become 1.0; an int mean was blamed on the variance file."""
    prefix = authors_files(tmp_path)
    path = f"{prefix}_{suffix}.pt"
    tensor = torch.load(path, weights_only=True)
    torch.save(tensor.to(dtype) if dtype is not torch.bool else tensor > 0, path)
    with pytest.raises(PriorFileError) as info:
        load_authors_prior(prefix)
    assert path in str(info.value) and str(dtype) in str(info.value)
    assert "floating-point" in str(info.value)


def test_a_rank_the_covmat_does_not_hold_is_a_preflight_error(tmp_path, capsys,
                                                              no_training) -> None:  # noqa: F811
    """The files hold 3 rows; the smoke profile's inference rank is 3, so ask for 5: it used to
    end in a traceback ('rank must be an int in [0, 3]') in the middle of the sweep."""
    import yaml

    prefix = authors_files(tmp_path)
    path = files_profile(tmp_path, prefix)
    raw = yaml.safe_load(path.read_text())
    raw["experiments"]["inference"]["rank"] = 5
    path.write_text(yaml.safe_dump(raw))
    rc, err = run_cli(capsys, "run", "--profile", str(path), "--outputs", str(tmp_path / "out"),
                      "--experiment", "inference")
    assert rc == 2
    assert_one_line(err, "experiments.inference: rank 5", "3 low-rank rows", "_covmat.pt")


def test_a_pickle_refused_by_weights_only_never_suggests_turning_it_off(tmp_path) -> None:
    path = tmp_path / "payload.pt"
    torch.save({"weights": torch.zeros(2), "payload": copy.copy}, path)  # a function: refused
    with pytest.raises(PriorFileError) as info:
        load_torch_file(path)
    message = str(info.value)
    assert str(path) in message and "refuses to unpickle" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert "corrupt" not in message


# ----------------------------------------------------------------------------- learned priors


@pytest.mark.parametrize("damage", ["swapped", "nan"])
def test_a_learned_backbone_that_is_not_its_priors_is_learned_again(smoke, smoke_priors,
                                                                   tmp_path, damage) -> None:
    """A learned ssl_backbone.pt swapped for supervised_backbone.pt was used (only loadability
    was checked); a NaN in it gave diverged runs. Now the prior records its backbone's digest."""
    root = copy_root(smoke_priors, tmp_path / "out")
    ssl_prior, ssl_backbone = study.prior_paths(smoke, "ssl", root)
    _, supervised_backbone = study.prior_paths(smoke, "supervised", root)
    if damage == "swapped":
        shutil.copyfile(supervised_backbone, ssl_backbone)
    else:
        state = torch.load(ssl_backbone, weights_only=True)
        key = next(k for k, v in state.items() if v.is_floating_point())
        state[key] = torch.full_like(state[key], float("nan"))
        torch.save(state, ssl_backbone)
    with pytest.raises(PriorFileError, match=str(ssl_backbone)):
        study.load_prior_and_backbone(study.prior_location(smoke, "ssl", root))
    with pytest.warns(UserWarning, match="learning this prior again"):
        assert not study.priors.is_stored(smoke, "ssl", 0, root)


# ----------------------------------------------------------------------------- records


def test_a_record_with_only_id_and_config_is_not_done_and_is_redone(smoke, tmp_path) -> None:
    """It used to count as done forever and crash `records_frame` (KeyError: 'seed')."""
    runs = study.plan(smoke, ["rank"])[:2]
    path = study.result_path(smoke, runs[0], tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"id": runs[0]["id"], "config": runs[0]["config"]}))
    assert not study.is_done(smoke, runs[0], tmp_path)
    executed = []

    def execute(pack, profile, root):
        executed.extend(r["id"] for r in pack)
        return [fake_record(r) for r in pack]

    study.run_sweep(smoke, runs, tmp_path, progress=False, execute=execute)
    assert runs[0]["id"] in executed
    from bprior_core import tables

    assert len(tables.records_frame(study.load_results(smoke, tmp_path))) == 2


@pytest.mark.parametrize(("change", "needle"), [
    ({"device": '<img src=x onerror="alert(1)">'}, "'device' is not a short identifier"),
    ({"status": "maybe"}, "status 'maybe'"),
    ({"metrics": {"final": {"accuracy": "high"}, "bma": None}}, "metrics.final"),
    ({"id": "0123456789abcdef"}, "belongs to no run of this pack"),
    ({"seed": None}, "field 'seed'"),
])
def test_the_driver_writes_no_record_a_worker_got_wrong(smoke, tmp_path, change,
                                                        needle) -> None:
    runs = study.plan(smoke, ["rank"])[:1]

    def rogue(pack, profile, root):
        return [{**fake_record(r), **change} for r in pack]

    with pytest.raises(study.StudyError, match=needle):
        study.run_sweep(smoke, runs, tmp_path, progress=False, execute=rogue)
    assert not (study.output_dir(smoke, tmp_path) / "runs").exists() or not any(
        (study.output_dir(smoke, tmp_path) / "runs").iterdir())


# ----------------------------------------------------------------------------- files


def test_temporary_files_of_killed_writes_are_removed_on_the_next_start(smoke, tmp_path) -> None:
    runs_dir = study.output_dir(smoke, tmp_path) / "runs"
    priors_dir = study.output_dir(smoke, tmp_path) / "priors"
    for folder in (runs_dir, priors_dir):
        folder.mkdir(parents=True)
        (folder / ".0123456789abcdef.json.k3j_x9qa.tmp").write_text("{half")
        (folder / "keep.tmp").write_text("not ours")
    (tmp_path / ".outside.json.abcdefgh.tmp").write_text("not in a study folder")
    study.run_sweep(smoke, [], tmp_path, progress=False)
    for folder in (runs_dir, priors_dir):
        assert sorted(p.name for p in folder.iterdir()) == ["keep.tmp"]
    assert (tmp_path / ".outside.json.abcdefgh.tmp").exists()


def test_a_full_disk_names_the_file(tmp_path, monkeypatch) -> None:
    """`[Errno 28] No space left on device` used to name no file."""
    target = tmp_path / "runs" / "x.json"

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic.atomic_write(target, full)
    assert info.value.errno == errno.ENOSPC and str(target) in str(info.value)
    assert str(info.value).count(str(target)) == 1  # named once (issue 23)
    assert not list((tmp_path / "runs").iterdir())  # no temporary file left either


def test_a_record_that_cannot_be_written_leaves_no_predictions_behind(smoke, tmp_path,
                                                                      monkeypatch) -> None:
    """A full disk while writing a record: its predictions file, written first, goes too."""
    run = study.plan(smoke, ["inference"])[0]
    predictions = {"val": {"log_probs": np.zeros((3, 5), np.float16),
                           "labels": np.zeros(3, np.int16)}}

    def execute(runs, profile, root):
        return [fake_record(r, _predictions=predictions) for r in runs]

    def full(record, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(execution, "write_json_atomic", full)
    with pytest.raises(OSError):
        study.run_sweep(smoke, [run], tmp_path, workers=1, progress=False, execute=execute)
    assert not list((study.output_dir(smoke, tmp_path) / "runs").glob("*.npz"))


def test_execution_refuses_records_through_every_back_end_path(smoke) -> None:
    """The same check guards the local pool and Ray: `store` takes the pack with the records."""
    run = study.plan(smoke, ["rank"])[0]
    assert execution.checked_records([fake_record(run)], [run])
    with pytest.raises(study.StudyError):
        execution.checked_records({"not": "a list"}, [run])
