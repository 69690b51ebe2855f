"""Result records -> tidy tables: one row per run, and mean +- standard error per group."""

from __future__ import annotations

import math

import pandas as pd

METRICS = ("accuracy", "nll", "ece", "brier")
DIAGNOSTICS = ("clipped_fraction", "max_step_curvature", "max_preconditioned_step_curvature",
               "prior_mahalanobis_rms", "sample_disagreement")


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run: its configuration, status, and the headline metrics.

    The headline prediction is the Bayesian model average where the run collected samples, else
    the final iterate; columns `final_<metric>` keep the final iterate's metrics too."""
    rows = []
    for r in records:
        cfg = r["config"]
        metrics = r["metrics"]
        head = metrics.get("bma") or metrics.get("final") or {}
        final = metrics.get("final") or {}
        prior = cfg.get("prior") or {}
        row = {
            "experiment": cfg["experiment"],
            "arm": cfg["arm"],
            "method": cfg["method"],
            "prior_kind": prior.get("kind"),
            "prior_source": prior.get("source"),
            "rank": prior.get("rank"),
            "trace": prior.get("trace", "scaled"),
            "scale": prior.get("scale"),
            "n_train": cfg["n_train"],
            "seed": r["seed"],
            "status": r["status"],
            "prediction": "bma" if metrics.get("bma") else "final",
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


def summarize(frame: pd.DataFrame, by: list[str], metrics=("error_pct", "nll", "ece", "brier")):
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


def format_mean_se(mean: float, se: float, digits: int = 2) -> str:
    """`12.34 ± 0.56` (or just the mean when the error is undefined)."""
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def display_table(summary: pd.DataFrame, keys: list[str], metrics=("error_pct", "nll", "ece")):
    """A compact table for the report: keys, `metric (mean ± se)` columns, seeds."""
    table = summary[keys].copy()
    if "scale" in table:
        table["scale"] = [f"{x:g}" for x in table["scale"]]
    if "rank" in table:
        table["rank"] = [int(r) for r in table["rank"]]
    if "n_train" in table:
        table["n_train"] = [str(int(n)) if n else "full" for n in table["n_train"]]
    labels = {"error_pct": "test error %", "nll": "NLL", "ece": "ECE", "brier": "Brier"}
    for m in metrics:
        table[labels[m]] = [
            format_mean_se(a, b, 2 if m == "error_pct" else 3)
            for a, b in zip(summary[m], summary[f"{m}_se"], strict=True)
        ]
    table["seeds"] = summary["seeds"]
    if summary["diverged"].any():
        table["diverged"] = summary["diverged"]
    return table


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


def to_html(table: pd.DataFrame) -> str:
    """A table as plain HTML without the index (readable offline, no scripts)."""
    return table.to_html(index=False, border=0, classes="bprior-table")
