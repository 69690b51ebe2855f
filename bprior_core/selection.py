"""Choices made on the validation set, never on the test set.

Each tuned inference arm ran once per grid value of its strength parameter (learned prior:
scale; zero-mean and isotropic priors: variance; `sgd`: weight decay). For every (arm, training
size, seed) the run with the lowest validation NLL of its headline prediction is kept and the
others are dropped, so the claims see one run per arm, size and seed, chosen without looking at
test data. Nothing here reads a test metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .records import headline_value

SELECTION_METRIC = "nll"


def _group(config: Mapping[str, Any]) -> tuple:
    return (config["experiment"], config["arm"], int(config.get("n_train") or 0),
            int(config["seed"]), int(config.get("chain", 0)))


def select_tuned(records: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The records with every tuned group reduced to its validation choice.

    A record of a tuned run (`config.tuned`) competes with the other grid values of its
    (experiment, arm, size, seed); the one with the lowest validation NLL is kept, with a
    `selection` entry (parameter, chosen value, its validation NLL, the candidates' values). A
    run without a finite validation NLL (diverged, or no validation set) is never chosen; if no
    candidate has one, the group is represented by one of its runs marked `status: diverged`
    when any diverged, else dropped. Untuned records pass unchanged, in their order."""
    out: list[dict] = []
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for record in records:
        config = record.get("config") or {}
        if "tuned" not in config:
            out.append(dict(record))
            continue
        key = _group(config)
        if key not in groups:
            groups[key] = []
            out.append({"_group": key})  # placeholder keeps plan order
        groups[key].append(record)
    chosen = {key: _choose(members) for key, members in groups.items()}
    return [chosen[r["_group"]] if "_group" in r else r for r in out
            if "_group" not in r or chosen[r["_group"]] is not None]


def _choose(members: Sequence[Mapping[str, Any]]) -> dict | None:
    scored = [(headline_value(m, SELECTION_METRIC, "val"), i) for i, m in enumerate(members)]
    valid = [(v, i) for v, i in scored if v is not None]
    values = [m["config"]["tuned"]["value"] for m in members]
    if not valid:
        diverged = [m for m in members if m.get("status") == "diverged"]
        return dict(diverged[0]) if diverged else None
    best_value, best = min(valid)
    record = dict(members[best])
    record["selection"] = {"parameter": record["config"]["tuned"]["parameter"],
                           "value": record["config"]["tuned"]["value"],
                           "val_nll": best_value, "candidates": values,
                           "candidates_val_nll": [v for v, _ in scored]}
    return record


def best_by_validation(val_nll: Mapping[Any, Mapping[int, float]], keys: Sequence[Any]) -> Any:
    """The key (a rank, a scale) with the lowest mean validation NLL over its seeds; the first
    in `keys` on ties; None if no key has data."""
    means = [(sum(val_nll[k].values()) / len(val_nll[k]), i, k) for i, k in enumerate(keys)
             if val_nll.get(k)]
    means = [m for m in means if math.isfinite(m[0])]
    return min(means)[2] if means else None


def chosen_values(selected: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Rows (arm, n_train, parameter, value, runs): how often each grid value was chosen."""
    counts: dict[tuple, int] = {}
    for record in selected:
        sel = record.get("selection")
        if not sel:
            continue
        cfg = record["config"]
        key = (cfg["arm"], int(cfg.get("n_train") or 0), sel["parameter"], sel["value"])
        counts[key] = counts.get(key, 0) + 1
    return [{"arm": a, "n_train": n, "parameter": p, "value": v, "runs": c}
            for (a, n, p, v), c in sorted(counts.items(), key=lambda kv: kv[0])]


def grid_edges(selected: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Per tuned arm: how many of its validation choices fell on the smallest or the largest
    value of its grid, and by how much the chosen edge beat the next value inward (mean
    validation NLL gain over those choices, nats). A choice on the edge with a clear gain says
    the best value may lie outside the grid, so the arm is tuned only as well as its grid
    allows; a gain near 0 says the metric has flattened out there. Rows: arm, parameter, grid
    (sorted), choices, at_low, at_high, low_gain, high_gain (None without such choices)."""
    rows: dict[str, dict] = {}
    gains: dict[tuple[str, str], list[float]] = {}
    for record in selected:
        sel = record.get("selection")
        if not sel:
            continue
        grid = sorted(sel["candidates"])
        arm = record["config"]["arm"]
        row = rows.setdefault(arm, {"arm": arm, "parameter": sel["parameter"], "grid": grid,
                                    "choices": 0, "at_low": 0, "at_high": 0})
        row["choices"] += 1
        if len(grid) < 2:
            continue
        for side, edge, inward in (("low", grid[0], grid[1]), ("high", grid[-1], grid[-2])):
            if sel["value"] == edge:
                row[f"at_{side}"] += 1
                nll = dict(zip(sel["candidates"], sel["candidates_val_nll"], strict=True))
                if nll.get(inward) is not None:
                    gains.setdefault((arm, side), []).append(nll[inward] - sel["val_nll"])
    for (arm, side), values in gains.items():
        rows[arm][f"{side}_gain"] = sum(values) / len(values)
    for row in rows.values():
        row.setdefault("low_gain", None)
        row.setdefault("high_gain", None)
    return [rows[arm] for arm in sorted(rows)]
