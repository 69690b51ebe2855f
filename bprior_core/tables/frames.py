"""The records as a data frame, summarised over seeds and formatted for display: the tables every
experiment page starts from."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..analysis.records import headline_block, headline_name
from ..claims.text import scale_label
from ..formatting import format_mean_se, size_label
from ..vocabulary import METRICS, SHOWN_METRICS, TABLE_METRICS

DIAGNOSTICS = ("clipped_fraction", "max_step_curvature", "max_preconditioned_step_curvature",
               "prior_mahalanobis_rms", "sample_disagreement", "free_share")


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run: its configuration, status, and the headline metrics.

    The headline prediction is the Bayesian model average where the run collected samples, else
    the final iterate; columns `final_<metric>` keep the final iterate's metrics too."""
    rows = []
    for r in records:
        cfg = r["config"]
        head = headline_block(r) or {}
        final = (r.get("metrics") or {}).get("final") or {}
        prior = cfg.get("prior") or {}
        selection = r.get("selection") or {}
        row = {
            "experiment": cfg["experiment"],
            "arm": cfg["arm"],
            "method": cfg["method"],
            "prior_kind": prior.get("kind"),
            "prior_source": prior.get("source"),
            "rank": prior.get("rank"),
            "trace": prior.get("trace", "scaled"),
            "scale": prior.get("scale"),
            "rule": prior.get("rule"),
            "eps": prior.get("eps"),
            "draw": prior.get("draw", 0),
            "temperature": (cfg.get("train") or {}).get("temperature"),
            "chain": cfg.get("chain", 0),
            "tuned_value": selection.get("value"),
            "n_train": cfg["n_train"],
            "seed": r["seed"],
            "status": r["status"],
            "prediction": headline_name(r),
            "wall_time_s": r.get("wall_time_s"),
        }
        for m in METRICS:
            row[m] = head.get(m, math.nan)
            row[f"final_{m}"] = final.get(m, math.nan)
        diagnostics = r.get("diagnostics") or {}
        for d in DIAGNOSTICS:
            value = diagnostics.get(d)
            row[d] = math.nan if value is None else value
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["error_pct"] = 100 * (1 - frame["accuracy"])
    return frame


def select(frame: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The rows of one experiment (an empty frame if there are none)."""
    if frame.empty or "experiment" not in frame:
        return frame
    return frame[frame["experiment"] == experiment]


def summarize(frame: pd.DataFrame, by: list[str], metrics=TABLE_METRICS):
    """Mean and standard error over seeds per group, with the number of ok seeds and diverged."""
    ok = frame[frame["status"] == "ok"]
    grouped = ok.groupby(by, dropna=False)
    out = grouped[list(metrics)].mean()
    se = grouped[list(metrics)].sem(ddof=1)
    for m in metrics:
        out[f"{m}_se"] = se[m]
    out["seeds"] = grouped.size()
    diverged = frame[frame["status"] != "ok"].groupby(by, dropna=False).size()
    out["diverged"] = diverged.reindex(out.index).fillna(0).astype(int)
    return out.reset_index()


COLUMN_LABELS = {"prior_source": "prior", "temperature": "T"}
METRIC_LABELS = {"error_pct": "test error %", "nll": "NLL", "ece": "ECE", "brier": "Brier"}


def display_table(summary: pd.DataFrame, keys: list[str], metrics=SHOWN_METRICS,
                  count: str = "seeds"):
    """A compact table for the report: keys, `metric (mean ± se)` columns, seeds (or `count`,
    e.g. `runs` where chains of one seed are pooled)."""
    table = summary[keys].copy()
    for col in ("scale", "eps", "temperature"):
        if col in table:
            table[col] = [scale_label(x) if col == "scale" else f"{x:g}" for x in table[col]]
    if "rank" in table:
        table["rank"] = [int(r) for r in table["rank"]]
    if "n_train" in table:
        table["n_train"] = [size_label(n) for n in table["n_train"]]
    for m in metrics:
        table[METRIC_LABELS[m]] = [
            format_mean_se(a, b, 2 if m == "error_pct" else 3)
            for a, b in zip(summary[m], summary[f"{m}_se"], strict=True)
        ]
    table[count] = summary["seeds"]
    if summary["diverged"].any():
        table["diverged"] = summary["diverged"]
    return table.rename(columns=COLUMN_LABELS)


def diagnostics_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and arm, over runs: the largest lr x prior curvature before and after
    preconditioning, the mean fraction of clipped steps, the mean prior Mahalanobis RMS of the
    final weights, and the mean disagreement between samples."""
    if frame.empty:
        return frame
    grouped = frame.groupby(["experiment", "arm"], dropna=False, sort=False)
    out = pd.DataFrame({
        "runs": grouped.size(),
        "max lr x curvature": grouped["max_step_curvature"].max(),
        "... preconditioned": grouped["max_preconditioned_step_curvature"].max(),
        "clipped steps": grouped["clipped_fraction"].mean(),
        "prior Mahalanobis RMS": grouped["prior_mahalanobis_rms"].mean(),
        "sample disagreement": grouped["sample_disagreement"].mean(),
    }).reset_index()
    return out.map(lambda v: f"{v:.3g}" if isinstance(v, float) and not math.isnan(v) else
                   ("-" if isinstance(v, float) else v))


def to_html(table: pd.DataFrame, table_id: str | None = None) -> str:
    """A table as plain HTML without the index (readable offline, no scripts); cell text is
    escaped. `table_id` names the table (e.g. for tests that read the page back)."""
    return table.to_html(index=False, border=0, classes="bprior-table", table_id=table_id,
                         escape=True)


def per_draw_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Test error % per inference arm and size for each prior draw (mean over the seeds that
    used it), and the spread between draws: how much the verdicts depend on one prior draw."""
    rows = select(frame, "inference")
    if rows.empty:
        return pd.DataFrame()
    rows = rows[rows["status"] == "ok"]
    if rows.empty:
        return rows
    table = rows.pivot_table(index=["arm", "n_train"], columns="draw", values="error_pct",
                             aggfunc="mean")
    table.columns = [f"draw {int(c)}" for c in table.columns]
    table["spread (max - min)"] = table.max(axis=1) - table.min(axis=1)
    return table.round(2).reset_index()


def single_vs_average(frame: pd.DataFrame) -> pd.DataFrame:
    """Per sampler arm and size: test error and NLL of one sample (the final iterate) beside
    those of the model average, so the gain of averaging is visible apart from the method."""
    rows = select(frame, "inference")
    if rows.empty:
        return pd.DataFrame()
    rows = rows[(rows["status"] == "ok") & (rows["prediction"] == "bma")]
    if rows.empty:
        return rows
    rows = rows.assign(final_error_pct=100 * (1 - rows["final_accuracy"]))
    out = rows.groupby(["arm", "n_train"], sort=False).agg(
        **{"error % (one sample)": ("final_error_pct", "mean"),
           "error % (average)": ("error_pct", "mean"),
           "NLL (one sample)": ("final_nll", "mean"), "NLL (average)": ("nll", "mean"),
           "ECE (one sample)": ("final_ece", "mean"), "ECE (average)": ("ece", "mean")})
    return out.round(3).reset_index()


def chosen_values_table(rows: list[dict]) -> pd.DataFrame:
    """`selection.chosen_values` as a table: per arm and size, how often each grid value of its
    strength parameter was chosen on validation (one choice per seed). Sizes and grid values
    sort as numbers (the full set, size 0, last)."""
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["size_order"] = [n if n else math.inf for n in frame["n_train"]]
    table = frame.pivot_table(index=["arm", "parameter", "size_order"], columns="value",
                              values="runs", aggfunc="sum", fill_value=0)
    table = table.sort_index().sort_index(axis=1)
    table.columns = [f"{v:g}" for v in table.columns]
    table = table.reset_index()
    table.insert(2, "n_train", [size_label(n) for n in table.pop("size_order")])
    return table


def settings_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """The setting each tuned arm was fixed at, per experiment, arm and size (protocol
    `fixed`: chosen once by the validation NLL pooled over the tuning seeds): the strength
    parameter and its value, the learning rate, that pooled NLL, the tuning seeds, the
    evaluation seeds it ran on, whether the value sits on an edge of its grid, and the mean
    share of backbone coordinates the prior leaves free there (`free_share`: 0 is a linear
    probe, 1 unconstrained fine-tuning)."""
    groups: dict[tuple, dict] = {}
    for record in records:
        cfg, sel = record.get("config") or {}, record.get("selection")
        if not sel or "tuning_seeds" not in sel:
            continue
        key = (cfg["experiment"], cfg["arm"], int(cfg.get("n_train") or 0))
        row = groups.setdefault(key, {"sel": sel, "seeds": set(), "free": []})
        row["seeds"].add(int(record["seed"]))
        free = (record.get("diagnostics") or {}).get("free_share")
        if free is not None:
            row["free"].append(free)
    rows = []
    for (experiment, arm, n), row in sorted(groups.items(),
                                            key=lambda kv: (kv[0][0], kv[0][1],
                                                            kv[0][2] or math.inf)):
        sel = row["sel"]
        grid = sorted({c["value"] for c in sel["candidates"]})
        lrs = sorted({c["lr"] for c in sel["candidates"] if c.get("lr") is not None})
        edges = [name for name, value, values in (("value", sel["value"], grid),
                                                  ("lr", sel.get("lr"), lrs))
                 if len(values) > 1 and value in (values[0], values[-1])]
        rows.append({
            "experiment": experiment, "arm": arm, "n_train": size_label(n),
            "parameter": sel["parameter"], "value": f"{sel['value']:g}",
            "lr": "-" if sel.get("lr") is None else f"{sel['lr']:g}",
            "pooled val NLL": round(sel["val_nll"], 4),
            "tuning seeds": len(sel["tuning_seeds"]), "evaluation seeds": len(row["seeds"]),
            "on a grid edge": ", ".join(edges) or "no",
            "free share": (f"{np.mean(row['free']):.3f}" if row["free"] else "-"),
        })
    return pd.DataFrame(rows)
