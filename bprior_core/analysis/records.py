"""Reading a run's result record: the one place that says which prediction is a run's headline,
and whether a record is complete (an inference arm's name is read by `vocabulary.arm_parts`).

A run's headline prediction is its Bayesian model average when it collected samples, else its
final iterate. Test metrics live in `metrics`, validation metrics in `val_metrics`, each as
`{"final": {...}, "bma": {...} | None}`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..vocabulary import METRICS

SPLITS = {"test": "metrics", "val": "val_metrics", "heldout": "heldout_metrics"}
STATUSES = ("ok", "diverged")
# the fields every complete record has (what the report and the claims read), with their types
_FIELDS = {"id": str, "config": dict, "status": str, "seed": int, "metrics": dict,
           "val_metrics": dict, "n_samples": int, "steps_done": int, "diagnostics": dict}
# text fields a record carries about where it ran: short identifiers, never markup
_LABELS = ("device", "version", "torch_version")
_LABEL = re.compile(r"[A-Za-z0-9_.+:-]{1,64}")


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


def record_problem(record: object) -> str | None:
    """Why `record` is not a complete result record, or None if it is: every field the report
    and the claims read, of the right type; an `ok` run with finite test metrics of its final
    iterate; where-it-ran labels that are short identifiers (a record from a worker or a file is
    untrusted input)."""
    if not isinstance(record, dict):
        return f"not a mapping ({type(record).__name__})"
    for key, kind in _FIELDS.items():
        value = record.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"field {key!r} is missing or not a {kind.__name__}"
    if record["status"] not in STATUSES:
        return f"status {str(record['status'])[:20]!r} is not one of {', '.join(STATUSES)}"
    for split in ("metrics", "val_metrics"):
        for part in ("final", "bma"):
            block = record[split].get(part)
            if block is not None and not _metric_block(block):
                return f"{split}.{part} is not a block of the metrics {', '.join(METRICS)}"
    cfg = record["config"]
    scored = ("metrics" if cfg.get("phase") != "tune" else
              "heldout_metrics" if cfg.get("fit") == "split" else "val_metrics")
    if not isinstance(record.get(scored), dict):
        return f"field {scored!r} is missing"
    if record["status"] == "ok" and not _metric_block(record[scored].get("final"), True):
        return f"an ok run without finite {scored} of its final iterate"
    head = headline_block(record, "test" if scored == "metrics" else "val")
    if record["status"] == "ok" and scored != "heldout_metrics" and not _metric_block(head, True):
        return f"an ok run without finite headline {scored}"
    for key in _LABELS:
        value = record.get(key)
        if value is not None and not (isinstance(value, str) and _LABEL.fullmatch(value)):
            return f"field {key!r} is not a short identifier"
    return None


def _metric_block(block: object, finite: bool = False) -> bool:
    """Whether `block` maps every metric name to a number (or null, unless `finite`: then
    every one must be a finite number; an ok run's headline block must be, `record_problem`)."""
    if not isinstance(block, dict):
        return False
    for name in METRICS:
        value = block.get(name, "missing")
        if value is None and not finite:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if finite and not math.isfinite(value):
            return False
    return True
