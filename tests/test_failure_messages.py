"""Issue 8: expected failures end in one line on stderr naming the file, exit code 2, no
traceback, before anything trains; a corrupt learned prior is learned again."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bprior_core import config, study
from bprior_core.cli import main
from bprior_core.data import fashion_mnist
from bprior_core.priors.files import (
    PriorFileError,
    load_authors_prior,
    load_prior,
    save_authors_prior,
)
from bprior_core.priors.gaussian import GaussianPrior
from bprior_core.study import preflight as preflight_module
from bprior_core.training.models import build_model, flat_parameters


def write_profile(tmp_path: Path, **changes) -> Path:
    """The smoke profile with `changes` (dotted keys), as a YAML file in tmp_path."""
    raw = yaml.safe_load((config.PARAMS_DIR / "smoke.yaml").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def authors_files(tmp_path: Path) -> Path:
    """A valid published prior (authors' four files) for the small ResNet."""
    model = build_model("small_resnet", 5)
    mean = flat_parameters(model.backbone).detach()
    prefix = tmp_path / "published"
    published = GaussianPrior(mean, torch.full_like(mean, 1e-4), torch.zeros(3, mean.numel()))
    save_authors_prior(published, prefix, model.backbone.state_dict())
    return prefix


def files_profile(tmp_path: Path, prefix: Path) -> Path:
    """The smoke profile reading a published prior (no learned sources: no oracle control, and
    SimCLR's source does not apply)."""
    return write_profile(tmp_path, **{"priors.source": "files",
                                      "priors.files": {"ssl": str(prefix), "supervised": None},
                                      "priors.draws": 1, "priors.ssl_source": "source_classes",
                                      "experiments.control.enabled": False,
                                      "experiments.covariance.enabled": False})


def run_cli(capsys, *args) -> tuple[int, str]:
    rc = main(list(args))
    err = capsys.readouterr().err
    return rc, err


def assert_one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bprior: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if anything is trained or learned."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(study.execution, "train_pack", refuse)
    monkeypatch.setattr(study.priors, "learn_prior", refuse)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_prior_file_is_one_line_naming_it(tmp_path, capsys, no_training, damage) -> None:
    prefix = authors_files(tmp_path)
    target = Path(f"{prefix}_covmat.pt")
    content = target.read_bytes()
    target.write_bytes({"truncated": content[: len(content) // 2], "garbage": b"not a torch file",
                        "empty": b""}[damage])
    profile = files_profile(tmp_path, prefix)
    rc, err = run_cli(capsys, "run", "--profile", str(profile), "--outputs",
                      str(tmp_path / "out"), "--experiment", "inference")
    assert rc == 2
    assert_one_line(err, str(target), "corrupt")


def test_nan_variance_in_a_prior_file_is_one_line_naming_it(tmp_path, capsys, no_training):
    prefix = authors_files(tmp_path)
    variance = torch.load(f"{prefix}_variance.pt")
    variance[7] = float("nan")
    torch.save(variance, f"{prefix}_variance.pt")
    profile = files_profile(tmp_path, prefix)
    rc, err = run_cli(capsys, "run", "--profile", str(profile), "--outputs",
                      str(tmp_path / "out"), "--experiment", "inference")
    assert rc == 2
    assert_one_line(err, str(prefix), "NaN")


def test_corrupt_learned_prior_file_names_it(tmp_path) -> None:
    path = tmp_path / "ssl.pt"
    path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(PriorFileError, match=str(path)):
        load_prior(path)


def test_truncated_data_file_is_one_line_naming_it(tmp_path, capsys, no_training) -> None:
    folder = tmp_path / "fmnist"
    folder.mkdir()
    for pair in fashion_mnist._FMNIST_FILES.values():
        for name in pair:
            os.symlink(fashion_mnist.DEBIAN_FMNIST_DIR / name, folder / name)
    images = folder / fashion_mnist._FMNIST_FILES["train"][0]
    content = images.read_bytes()
    images.unlink()
    images.write_bytes(content[: len(content) // 3])
    profile = write_profile(tmp_path, **{"data.root": str(folder)})
    rc, err = run_cli(capsys, "run", "--profile", str(profile), "--outputs",
                      str(tmp_path / "out"))
    assert rc == 2
    assert_one_line(err, str(images), "truncated")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["data.root", "BPRIOR_DATA"])
def test_a_data_folder_without_the_data_is_one_line_naming_it(tmp_path, capsys, monkeypatch,
                                                              no_training, how) -> None:
    """Issue 13: a named data folder that does not hold the data stops the run (it used to
    train on the system's copy and exit 0)."""
    empty = tmp_path / "empty-data"
    empty.mkdir()
    if how == "data.root":
        profile = write_profile(tmp_path, **{"data.root": str(empty)})
    else:
        monkeypatch.setenv("BPRIOR_DATA", str(empty))
        profile = write_profile(tmp_path)
    rc, err = run_cli(capsys, "run", "--profile", str(profile), "--outputs",
                      str(tmp_path / "out"))
    assert rc == 2
    assert_one_line(err, str(empty), "does not hold Fashion-MNIST", "train-images-idx3-ubyte.gz")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["plan", "run", "report"])
def test_profile_that_is_not_utf8_is_one_line_naming_it(tmp_path, capsys, command) -> None:
    profile = tmp_path / "latin1.yaml"
    profile.write_bytes("name: smoke\ndescription: caf\u00e9\n".encode("latin-1"))
    rc, err = run_cli(capsys, command, "--profile", str(profile), "--outputs",
                      str(tmp_path / "out"))
    assert rc == 2
    assert_one_line(err, str(profile), "not a UTF-8 text file", "byte 28")
    assert not (tmp_path / "out").exists()


def test_outputs_that_cannot_be_written_is_one_line(tmp_path, capsys, no_training) -> None:
    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the outputs folder should be")
    profile = write_profile(tmp_path)
    rc, err = run_cli(capsys, "run", "--profile", str(profile), "--outputs", str(blocker))
    assert rc == 2
    assert_one_line(err, str(blocker / "smoke"), "not writable", "--outputs")


def test_read_only_outputs_folder_is_refused_before_training(tmp_path, monkeypatch) -> None:
    """(As root a chmod'ed folder stays writable, so the refusal is simulated.)"""
    profile = config.load_profile("smoke")
    study.output_dir(profile, tmp_path).mkdir(parents=True)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "smoke"))

    monkeypatch.setattr(preflight_module.tempfile, "TemporaryFile", denied)
    with pytest.raises(study.StudyError) as info:
        preflight_module.check_outputs_writable(profile, tmp_path)
    assert str(tmp_path / "smoke") in str(info.value) and "Permission denied" in str(info.value)


def test_permission_error_later_on_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    import bprior_core.study.runner as runner

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / "smoke" / "runs"))

    monkeypatch.setattr(runner, "prepare_priors", denied)
    rc, err = run_cli(capsys, "run", "--profile", str(write_profile(tmp_path)), "--outputs",
                      str(tmp_path / "out"))
    assert rc == 2
    assert_one_line(err, "Permission denied", str(tmp_path / "out" / "smoke" / "runs"))


def test_variance_fix_names_the_profile_key(tmp_path) -> None:
    prefix = authors_files(tmp_path)
    variance = torch.load(f"{prefix}_variance.pt")
    variance[:2] = 0.0
    torch.save(variance, f"{prefix}_variance.pt")
    with pytest.raises(PriorFileError) as info:
        load_authors_prior(prefix)
    assert "priors.variance_floor" in str(info.value) and f"{prefix}_variance.pt" in str(info.value)


@pytest.mark.parametrize("damaged", ["prior", "backbone"])
def test_corrupt_learned_prior_is_learned_again(tmp_path, damaged) -> None:
    profile = copy.deepcopy(config.load_profile("smoke"))
    profile = profile.replace("priors.learning", dict(source_train_size=128, pretrain_steps=2,
                                                      swag_steps=4, collect_every=2,
                                                      bn_refresh_batches=1, max_rank=2))
    study.learn_priors(profile, ["ssl"], root=tmp_path, progress=False)
    prior_file, backbone_file = study.prior_paths(profile, "ssl", tmp_path)
    first = load_prior(prior_file)
    target = prior_file if damaged == "prior" else backbone_file
    target.write_bytes(target.read_bytes()[:100])
    with pytest.warns(UserWarning, match="learning this prior again"):
        study.learn_priors(profile, ["ssl"], root=tmp_path, progress=False)
    again = load_prior(prior_file)
    assert torch.equal(first.mean, again.mean) and torch.equal(first.cov_factor, again.cov_factor)
    torch.load(backbone_file, weights_only=True)  # readable again


def test_a_reader_that_leaves_the_pipe_early_ends_the_command_quietly() -> None:
    """`bprior plan -v | head`: no error line when the reader closes the pipe (the gpu plan's
    200 kB outgrow the pipe's buffer, so the write fails while the command still runs)."""
    proc = subprocess.Popen([sys.executable, "-m", "bprior_core", "plan", "-v", "--profile",
                             "gpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"profile gpu: ")
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert err == b"" and proc.returncode == 141
