"""Stored results are checked before they are trusted (issue 23): a record with a non-finite
metric or a predictions file that cannot back it is not done; profiles are read from regular
files with a bound; Ctrl-C ends in one line."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from conftest import fake_record

from bprior_core import cli, study
from bprior_core.analysis.records import record_problem
from bprior_core.config import ProfileError, load_profile
from bprior_core.study.predictions import predictions_name, write_predictions


def stored(smoke, tmp_path, record: dict, predictions: dict | None = None) -> dict:
    """Write `record` (and its predictions) where the study looks for it; return the run."""
    run = {"id": record["id"], "config": record["config"]}
    path = study.result_path(smoke, run, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if predictions is not None:
        write_predictions(path.parent / predictions_name(run["id"]), predictions)
        record["predictions"] = predictions_name(run["id"])
    path.write_text(json.dumps(record))
    return run


def test_a_record_with_a_nan_metric_is_not_done(smoke, tmp_path):
    """A hand-edited `"accuracy": NaN` used to count as done (and the report dropped the seed)."""
    run = study.plan(smoke, ["rank"])[0]
    record = fake_record(run)
    assert record_problem(record) is None
    for block in ("final", "bma"):
        bad = json.loads(json.dumps(record))
        bad["metrics"][block] = {**record["metrics"]["final"], "accuracy": math.nan}
        assert "finite" in record_problem(bad) or "metrics" in record_problem(bad)
        stored(smoke, tmp_path, bad)
        assert not study.is_done(smoke, run, tmp_path)


def test_a_truncated_predictions_file_is_not_done(smoke, tmp_path):
    """A predictions file cut to 100 bytes used to count as done, and the claims silently fell
    back to intervals over seeds only."""
    run = study.plan(smoke, ["rank"])[0]
    predictions = {"test": {"log_probs": np.log(np.full((20, 5), 0.2, np.float16)),
                            "labels": np.zeros(20, np.int16)}}
    stored(smoke, tmp_path, fake_record(run), predictions)
    assert study.is_done(smoke, run, tmp_path)
    npz = study.result_path(smoke, run, tmp_path).parent / predictions_name(run["id"])
    npz.write_bytes(npz.read_bytes()[:100])
    assert not study.is_done(smoke, run, tmp_path)
    # a readable file without the test predictions the record's metrics come from
    stored(smoke, tmp_path, fake_record(run), {"val": predictions["test"]})
    assert not study.is_done(smoke, run, tmp_path)


def test_a_profile_must_be_a_regular_file(tmp_path):
    """`--profile /dev/zero` read 3 GB before a MemoryError; a FIFO hung."""
    with pytest.raises(ProfileError, match="not a regular file"):
        load_profile("/dev/zero")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ProfileError, match="not a regular file"):
        load_profile(fifo)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 1_100_000)
    with pytest.raises(ProfileError, match="more than 1000000 bytes"):
        load_profile(big)


def test_ctrl_c_ends_in_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_plan_command", interrupted)
    assert cli.main(["plan", "--profile", "smoke"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["bprior: interrupted; every finished run is stored: run "
                                        "the same command again to resume"]


def test_plan_runs_the_checks_run_runs(tmp_path, capsys, monkeypatch):
    """`bprior plan` said "ready" for a published prior with NaN variance and for read-only
    outputs, both of which `bprior run` refuses; it runs the same checks now, writing nothing."""
    import stat

    import torch
    import yaml

    from bprior_core.config import PARAMS_DIR
    from bprior_core.priors.files import save_authors_prior
    from bprior_core.priors.gaussian import GaussianPrior
    from bprior_core.training.models import build_backbone, num_prior_parameters

    backbone = build_backbone("small_resnet")
    d = num_prior_parameters(backbone)
    prefix = tmp_path / "published"
    prior = GaussianPrior(torch.zeros(d), torch.ones(d), torch.zeros(2, d))
    save_authors_prior(prior, str(prefix), backbone.state_dict())
    variance = torch.load(f"{prefix}_variance.pt", weights_only=True)
    variance[0] = float("nan")
    torch.save(variance, f"{prefix}_variance.pt")
    raw = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    raw["priors"].update(source="files", files={"ssl": str(prefix), "supervised": None},
                         draws=1, ssl_source="source_classes")
    raw["experiments"]["control"]["enabled"] = False
    raw["experiments"]["covariance"]["enabled"] = False
    raw["experiments"]["scale"]["priors"] = ["ssl"]
    profile = tmp_path / "published.yaml"
    profile.write_text(yaml.safe_dump(raw))
    assert cli.main(["plan", "--profile", str(profile), "--outputs", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "check prior files: `bprior run` would stop here" in out and "NaN" in out
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    real_access = os.access  # root ignores the mode: the folder answers as a user's would

    def access(path, mode):
        return False if os.fspath(path) == str(locked) else real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    try:
        assert cli.main(["plan", "--profile", "smoke", "--outputs", str(locked)]) == 0
        out = capsys.readouterr().out
        assert "check outputs: `bprior run` would stop here" in out
        assert not (locked / "smoke").exists()
    finally:
        locked.chmod(stat.S_IRWXU)
