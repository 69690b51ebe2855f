"""Choices made on the validation set, never on the test set.

Each tuned arm runs once per point of its grid (its strength parameter, learned prior: scale;
zero-mean and isotropic priors: variance; `sgd`: weight decay; crossed with the learning rates
of `tuning.lrs`), scored on validation data only (phase `tune`). For every (experiment, arm,
training size, seed) the point with the lowest validation NLL is trained again with the test set
scored (phase `final`, `finals.final_runs`); that final run, which carries its `selection`,
is the one the claims see. Nothing here reads a test metric.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .records import headline_value

SELECTION_METRIC = "nll"


def choose_point(records: Sequence[Mapping[str, Any]], split: str = "val"
                 ) -> tuple[int, dict] | None:
    """The tuning run to keep among one group's complete `records` (one per grid point): the
    lowest validation NLL of its headline prediction (the first on ties), as (its position, the
    selection: chosen point, its validation NLL, every candidate point with its validation NLL
    or None); None when no candidate has a finite validation NLL (all diverged). `split` is
    what scores it: the fixed validation set (`val`) or each run's held-out part of its
    training subset (`heldout`). The test metrics play no part."""
    scores = [headline_value(r, SELECTION_METRIC, split) for r in records]
    valid = [(v, i) for i, v in enumerate(scores) if v is not None]
    if not valid:
        return None
    best_nll, best = min(valid)
    selection = {**records[best]["config"]["tuned"], "val_nll": best_nll,
                 "candidates": [{**r["config"]["tuned"], "val_nll": v}
                                for r, v in zip(records, scores, strict=True)]}
    return best, selection


def choose_pooled(records: Sequence[Mapping[str, Any]], split: str = "val"
                  ) -> tuple[int, dict] | None:
    """The setting to fix for one (experiment, arm, size) from its tuning runs on every tuning
    seed (`records`: one per grid point and seed, complete): the point whose validation NLL,
    averaged over the tuning seeds, is lowest (the first in plan order on ties; a point that
    diverged on any seed is left out). Returns (the position of that point's first run, the
    selection: chosen point, its pooled validation NLL, the tuning seeds, and every candidate
    with its pooled and per-seed NLL); None when no point has a finite score on every seed."""
    points: dict[str, dict] = {}
    for i, record in enumerate(records):
        tuned = record["config"]["tuned"]
        entry = points.setdefault(json.dumps(tuned, sort_keys=True),
                                  {"first": i, "tuned": tuned, "scores": {}})
        entry["scores"][int(record["config"]["seed"])] = headline_value(
            record, SELECTION_METRIC, split)
    candidates, valid = [], []
    for entry in points.values():
        scores = entry["scores"]
        pooled = (None if any(v is None for v in scores.values())
                  else sum(scores.values()) / len(scores))
        candidates.append({**entry["tuned"], "val_nll": pooled,
                           "per_seed": {str(k): v for k, v in sorted(scores.items())}})
        if pooled is not None and math.isfinite(pooled):
            valid.append((pooled, entry["first"], entry))
    if not valid:
        return None
    best_nll, first, entry = min(valid, key=lambda v: (v[0], v[1]))
    seeds = sorted({int(r["config"]["seed"]) for r in records})
    return first, {**entry["tuned"], "val_nll": best_nll, "tuning_seeds": seeds,
                   "candidates": candidates}


def select_tuned(records: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The records the claims read: tuning runs (phase `tune`) left out, final runs (with their
    `selection`) and untuned runs kept, in their order."""
    return [dict(r) for r in records if (r.get("config") or {}).get("phase") != "tune"]


def best_by_validation(val_nll: Mapping[Any, Mapping[int, float]], keys: Sequence[Any]) -> Any:
    """The key (a rank, a scale) with the lowest mean validation NLL over its seeds; the first
    in `keys` on ties; None if no key has data."""
    means = [(sum(val_nll[k].values()) / len(val_nll[k]), i, k) for i, k in enumerate(keys)
             if val_nll.get(k)]
    means = [m for m in means if math.isfinite(m[0])]
    return min(means)[2] if means else None


def _choices(selected: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records that carry a validation choice, one per choice: every per-seed selection,
    but a setting fixed over the tuning seeds (protocol `fixed`) once per experiment, arm and
    size, however many evaluation seeds ran it."""
    out, seen = [], set()
    for record in selected:
        sel = record.get("selection")
        if not sel:
            continue
        if "tuning_seeds" in sel:
            cfg = record["config"]
            key = (cfg["experiment"], cfg["arm"], cfg.get("n_train"))
            if key in seen:
                continue
            seen.add(key)
        out.append(record)
    return out


def _points(selection: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(parameter, chosen value) of a selection: the strength parameter, and the lr if tuned."""
    points = [(selection["parameter"], selection["value"])]
    if selection.get("lr") is not None:
        points.append(("lr", selection["lr"]))
    return points


def chosen_values(selected: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Rows (arm, n_train, parameter, value, runs): how often each grid value was chosen (the
    strength parameter, and the learning rate where it was tuned; a fixed setting counts
    once)."""
    counts: dict[tuple, int] = {}
    for record in _choices(selected):
        sel = record["selection"]
        cfg = record["config"]
        for parameter, value in _points(sel):
            key = (cfg["arm"], int(cfg.get("n_train") or 0), parameter, value)
            counts[key] = counts.get(key, 0) + 1
    return [{"arm": a, "n_train": n, "parameter": p, "value": v, "runs": c}
            for (a, n, p, v), c in sorted(counts.items(), key=lambda kv: kv[0])]


def grid_edges(selected: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Per tuned arm and tuned parameter (its strength, and lr): how many validation choices
    fell on the smallest or the largest value of its grid, and by how much the chosen edge beat
    the next value inward with the other parameter held at its chosen value (mean validation
    NLL gain over those choices, nats). A choice on the edge with a clear gain says the best
    value may lie outside the grid; a gain near 0 says the metric has flattened out there. Rows:
    arm, parameter, grid (sorted), choices, at_low, at_high, low_gain, high_gain."""
    rows: dict[tuple[str, str], dict] = {}
    gains: dict[tuple[str, str, str], list[float]] = {}
    for record in _choices(selected):
        sel = record["selection"]
        arm = record["config"]["arm"]
        nll = {(c["value"], c.get("lr")): c["val_nll"] for c in sel["candidates"]}
        for parameter, value in _points(sel):
            axis = "lr" if parameter == "lr" else "value"
            grid = sorted({c[axis] for c in sel["candidates"]})
            row = rows.setdefault((arm, parameter), {
                "arm": arm, "parameter": parameter, "grid": grid, "choices": 0, "at_low": 0,
                "at_high": 0})
            row["choices"] += 1
            if len(grid) < 2:
                continue
            for side, edge, inward in (("low", grid[0], grid[1]), ("high", grid[-1], grid[-2])):
                if value != edge:
                    continue
                row[f"at_{side}"] += 1
                neighbour = ((sel["value"], inward) if axis == "lr" else (inward, sel.get("lr")))
                if nll.get(neighbour) is not None:
                    gains.setdefault((arm, parameter, side), []).append(
                        nll[neighbour] - sel["val_nll"])
    for (arm, parameter, side), values in gains.items():
        rows[(arm, parameter)][f"{side}_gain"] = sum(values) / len(values)
    for row in rows.values():
        row.setdefault("low_gain", None)
        row.setdefault("high_gain", None)
    return [rows[key] for key in sorted(rows)]


def choice_agreement(selected: Sequence[Mapping[str, Any]]) -> dict[str, int] | None:
    """With `tuning.selection: split`, how often the held-out split's choice (the one used) is
    also the fixed validation set's choice from the same tuning runs: {agree, total}; None
    where no selection carries the validation set's choice."""
    pairs = [(sel, sel["validation_choice"]) for r in _choices(selected)
             if (sel := r["selection"]).get("validation_choice")]
    if not pairs:
        return None
    agree = sum((a["value"], a.get("lr")) == (b["value"], b.get("lr")) for a, b in pairs)
    return {"agree": agree, "total": len(pairs)}
