"""Reading a run's result record: the one place that says which prediction is a run's headline,
and how an inference arm's name (`method+prior`) is read.

A run's headline prediction is its Bayesian model average when it collected samples, else its
final iterate. Test metrics live in `metrics`, validation metrics in `val_metrics`, each as
`{"final": {...}, "bma": {...} | None}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SPLITS = {"test": "metrics", "val": "val_metrics"}


def headline_block(record: Mapping[str, Any], split: str = "test") -> dict | None:
    """The headline prediction's metrics on `split` ('test' or 'val'): BMA, else final."""
    metrics = record.get(SPLITS[split]) or {}
    return metrics.get("bma") or metrics.get("final")


def headline_name(record: Mapping[str, Any]) -> str:
    """'bma' or 'final': which prediction `headline_block` reads."""
    return "bma" if (record.get("metrics") or {}).get("bma") else "final"


def headline_value(record: Mapping[str, Any], metric: str, split: str = "test") -> float | None:
    """A finite headline metric of an ok run on `split`, else None."""
    if record.get("status") != "ok":
        return None
    block = headline_block(record, split)
    value = block.get(metric) if block else None
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def arm_parts(arm: str) -> tuple[str, str | None]:
    """An inference arm's name `method+prior` (e.g. `sghmc+learned`, `sgd`) split in two."""
    method, _, prior_kind = arm.partition("+")
    return method, prior_kind or None
