"""Each run's headline probabilities on the test and validation sets, stored beside its record.

`runs/<id>.json` holds the numbers the report prints; `runs/<id>.predictions.npz` the headline
prediction (model average, else final iterate) per test and validation image, float16, with the
labels: what a bootstrap over test images or an ensemble of runs needs without training again.
Written atomically before the record (the record is the commit point) and read with
`allow_pickle=False`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write

SUFFIX = ".predictions.npz"
SPLITS = ("test", "val")


def predictions_name(run_id: str) -> str:
    """The file name of a run's predictions, beside its record."""
    return f"{run_id}{SUFFIX}"


def write_predictions(path: Path, predictions: dict[str, dict[str, np.ndarray]]) -> None:
    """Write {split: {probs, labels}} as one compressed .npz, atomically."""
    arrays = {f"{split}_{key}": np.asarray(value)
              for split, part in predictions.items() for key, value in part.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, lambda f: f.write(buffer.getvalue()), binary=True)


def read_predictions(path: Path) -> dict[str, dict[str, np.ndarray]] | None:
    """{split: {"probs": (n, classes) float32, "labels": (n,) int64}} or None if the file is
    missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            out: dict[str, Any] = {}
            for split in SPLITS:
                if f"{split}_probs" in data:
                    out[split] = {"probs": data[f"{split}_probs"].astype(np.float32),
                                  "labels": data[f"{split}_labels"].astype(np.int64)}
            return out
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def predictions_problem(predictions: object) -> str | None:
    """Why `predictions` (as a back end returned them) cannot be stored, or None: a mapping of
    `test` / `val` to a (n, classes) floating `probs` and an (n,) integer `labels` array."""
    if not isinstance(predictions, dict) or not set(predictions) <= set(SPLITS):
        return "predictions are not a mapping of test / val"
    for split, part in predictions.items():
        probs, labels = (part.get(k) if isinstance(part, dict) else None
                         for k in ("probs", "labels"))
        if not (isinstance(probs, np.ndarray) and probs.ndim == 2
                and np.issubdtype(probs.dtype, np.floating)):
            return f"{split} probabilities are not a 2-D floating array"
        if not (isinstance(labels, np.ndarray) and labels.shape == probs.shape[:1]
                and np.issubdtype(labels.dtype, np.integer)):
            return f"{split} labels are not an integer array, one per image"
    return None
