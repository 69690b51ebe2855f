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
    """{split: {"probs": (n, classes) float32 (also "log_probs", as stored), "labels": (n,)
    int64, and for samplers' test and validation predictions "sample_true_probs": (samples,
    points) float32 with "sample_points": (points,) int64}} or None if the file is missing or
    unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            out: dict[str, Any] = {}
            for name in data.files:
                split, _, key = name.partition("_")
                if split in SPLITS:
                    value = data[name]
                    kind = np.int64 if np.issubdtype(value.dtype, np.integer) else np.float32
                    out.setdefault(split, {})[key] = value.astype(kind)
            for part in out.values():
                if "log_probs" in part and "probs" not in part:
                    part["probs"] = np.exp(part["log_probs"])
            return out
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def predictions_problem(predictions: object) -> str | None:
    """Why `predictions` (as a back end returned them) cannot be stored, or None: a mapping of
    `test` / `val` to a (n, classes) floating `log_probs` and an (n,) integer `labels` array."""
    if not isinstance(predictions, dict) or not set(predictions) <= set(SPLITS):
        return "predictions are not a mapping of test / val"
    for split, part in predictions.items():
        probs, labels = (part.get(k) if isinstance(part, dict) else None
                         for k in ("log_probs", "labels"))
        if not (isinstance(probs, np.ndarray) and probs.ndim == 2
                and np.issubdtype(probs.dtype, np.floating)):
            return f"{split} probabilities are not a 2-D floating array"
        if not (isinstance(labels, np.ndarray) and labels.shape == probs.shape[:1]
                and np.issubdtype(labels.dtype, np.integer)):
            return f"{split} labels are not an integer array, one per image"
        extra = set(part) - {"log_probs", "labels"}
        if extra - {"sample_true_probs", "sample_points"}:
            return f"{split} predictions hold unknown arrays {sorted(extra)[:3]}"
        if extra and not all(isinstance(part.get(k), np.ndarray) and part[k].ndim == n
                             and part[k].dtype.kind in "fiu"
                             for k, n in (("sample_true_probs", 2), ("sample_points", 1))):
            return f"{split} per-sample predictions are not numeric arrays"
    return None


# (path, size, modification time) -> (problem or None, the splits the file holds)
_FILE_CHECKS: dict[tuple[str, int, int], tuple[str | None, frozenset]] = {}


def file_problem(path: Path, record: dict) -> str | None:
    """Why the predictions file `path` cannot back `record` (missing, unreadable or truncated,
    arrays of the wrong kind or shape, not finite, no test predictions where the record has
    test metrics), or None. Read once per file version (path, size, modification time)."""
    try:
        stat = path.stat()
    except OSError:
        return "its predictions file is missing"
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_CHECKS:
        stored = read_predictions(path)
        if stored is None:
            _FILE_CHECKS[key] = ("its predictions file cannot be read", frozenset())
        else:
            problem = predictions_problem({split: {k: v for k, v in part.items() if k != "probs"}
                                           for split, part in stored.items()})
            if problem is None and not all(np.isfinite(part["log_probs"]).all()
                                           for part in stored.values()):
                problem = "its predictions are not finite"
            _FILE_CHECKS[key] = (problem, frozenset(stored))
    problem, splits = _FILE_CHECKS[key]
    if problem is None and (record.get("metrics") or {}).get("final") and "test" not in splits:
        problem = "its predictions file holds no test predictions"
    return problem


def predictions_loader(runs_folder: Path):
    """`loader(record)` -> the record's predictions: its in-memory pooled ones (chains pooled by
    `chains.combine_chains`), else its file in `runs_folder` (read once), else None."""
    cache: dict[str, Any] = {}

    def load(record: dict) -> dict | None:
        if "_predictions" in record:
            return record["_predictions"]
        name = record.get("predictions")
        if not isinstance(name, str):
            return None
        if name not in cache:
            cache[name] = read_predictions(Path(runs_folder) / name)
        return cache[name]

    return load
