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
from bprior_core.config import ProfileError, load_profile
from bprior_core.records import record_problem
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
