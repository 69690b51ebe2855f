"""`benchmarks/arithmetic.py`: its FLOP count against the small ResNet's layers counted by hand,
and its forward-pass equivalents and least time for hand-made run records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark


@pytest.fixture
def arithmetic(monkeypatch):
    return load_benchmark(monkeypatch, "arithmetic")


def _conv_macs(side: int, c_in: int, c_out: int, k: int, stride: int) -> int:
    out = (side + 2 * (k // 2) - k) // stride + 1
    return out * out * c_in * c_out * k * k


def test_forward_flops_are_the_small_resnets_multiply_adds_twice(arithmetic) -> None:
    macs = _conv_macs(28, 1, 16, 3, 1)  # stem
    side, c_in = 28, 16
    for width in (16, 32, 64):  # blocks: 3x3 stride 2, 3x3, 1x1 stride 2 shortcut
        macs += _conv_macs(side, c_in, width, 3, 2) + _conv_macs(side, c_in, width, 1, 2)
        side = (side - 1) // 2 + 1
        macs += _conv_macs(side, width, width, 3, 1)
        c_in = width
    macs += 64 * 5  # the head
    assert arithmetic.forward_flops("small_resnet", (1, 28, 28), 5) == 2 * macs == 5_373_056


def _record(folder: Path, name: str, method: str, n_train: int, steps: int, n_samples: int,
            test: int, val: int, experiment: str = "inference") -> None:
    np.savez(folder / f"{name}.predictions.npz", test_labels=np.zeros(test, np.int16),
             test_log_probs=np.zeros((test, 5), np.float16), val_labels=np.zeros(val, np.int16))
    record = {"status": "ok", "steps_done": steps, "n_samples": n_samples, "wall_time_s": 2.0,
              "predictions": f"{name}.predictions.npz",
              "config": {"experiment": experiment, "phase": "final", "method": method,
                         "model": "small_resnet", "n_train": n_train,
                         "train": {"batch_size": 16, "bn_refresh_batches": 8}}}
    (folder / f"{name}.json").write_text(json.dumps(record))


def test_runs_count_training_and_every_evaluation(arithmetic, tmp_path, monkeypatch,
                                                  capsys) -> None:
    runs = tmp_path / "study" / "runs"
    runs.mkdir(parents=True)
    # n = 10 < batch 16: batches of 10, one refresh batch; 3 samples, 3 evaluations
    _record(runs, "a", "sghmc", n_train=10, steps=20, n_samples=3, test=7, val=3)
    assert arithmetic.run_images(json.loads((runs / "a.json").read_text()), runs) \
        == (20 * 10 * 3, 3 * (7 + 3 + 10))
    # n = 100: batches of 16, 7 refresh batches of 16 fill 100 images; a probe: forward only
    _record(runs, "b", "probe", n_train=100, steps=5, n_samples=0, test=4, val=0)
    assert arithmetic.run_images(json.loads((runs / "b.json").read_text()), runs) \
        == (5 * 16, 4 + 7 * 16)
    _record(runs, "c", "hmc", n_train=10, steps=9, n_samples=1, test=4, val=0,
            experiment="reference")  # the head's HMC: not network arithmetic
    monkeypatch.setattr(sys, "argv", ["arithmetic.py", "--outputs", str(runs.parent),
                                      "--train-gflops", "0.001", "--eval-gflops", "0.002"])
    arithmetic.main()
    out = json.loads(capsys.readouterr().out)
    flops = 5_373_056
    train, evaluate = (600 + 80) * flops, (60 + 116) * flops
    assert out["runs"] == 2 and out["run_seconds"] == 4 and out["reference_run_seconds"] == 2
    assert out["least_seconds"] == round((train / 1e6 + evaluate / 2e6) / 2)
