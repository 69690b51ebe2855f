"""Result records -> tidy tables: one row per run, and mean +- standard error per group."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .mcmc import split_rhat
from .records import headline_block, headline_name

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


def per_draw_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Test error % per inference arm and size for each prior draw (mean over the seeds that
    used it), and the spread between draws: how much the verdicts depend on one prior draw."""
    rows = select(frame, "inference")
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


def temperature_table(records: list[dict]) -> pd.DataFrame:
    """Per temperature of the temperature experiment: test error, NLL and ECE of the model
    average and of one sample (the final iterate), the split R-hat of the per-sample test NLL
    over the chains (the largest over seeds; needs >= 2 chains of >= 4 samples), the mean
    disagreement between samples and the prior Mahalanobis RMS."""
    rows, chains = [], {}
    for r in records:
        cfg = r["config"]
        if cfg["experiment"] != "temperature" or r["status"] != "ok":
            continue
        t = cfg["train"]["temperature"]
        nll = (r.get("diagnostics") or {}).get("sample_test_nll")
        if nll:
            chains.setdefault((t, r["seed"]), []).append(nll)
    frame = select(records_frame(records), "temperature") if records else pd.DataFrame()
    if frame.empty:
        return frame
    ok = frame[frame["status"] == "ok"]
    for t, group in ok.groupby("temperature", sort=True):
        rhats = [split_rhat(c) for (tt, _), c in chains.items()
                 if tt == t and len(c) >= 2 and len({len(x) for x in c}) == 1 and len(c[0]) >= 4]
        rows.append({
            "T": f"{t:g}", "chains": int(group["chain"].nunique()),
            "runs": len(group), "diverged": int((frame["temperature"] == t).sum() - len(group)),
            "error % (average)": group["error_pct"].mean(),
            "error % (one sample)": 100 * (1 - group["final_accuracy"]).mean(),
            "NLL (average)": group["nll"].mean(), "NLL (one sample)": group["final_nll"].mean(),
            "ECE (average)": group["ece"].mean(),
            "split R-hat (test NLL)": max(rhats) if rhats else np.nan,
            "sample disagreement": group["sample_disagreement"].mean(),
            "prior Mahalanobis RMS": group["prior_mahalanobis_rms"].mean(),
        })
    return pd.DataFrame(rows).round(3)


def chosen_values_table(rows: list[dict]) -> pd.DataFrame:
    """`selection.chosen_values` as a table: per arm and size, how often each grid value of its
    strength parameter was chosen on validation (one choice per seed)."""
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["value"] = [f"{v:g}" for v in frame["value"]]
    frame["n_train"] = [str(int(n)) if n else "full" for n in frame["n_train"]]
    table = frame.pivot_table(index=["arm", "parameter", "n_train"], columns="value",
                              values="runs", aggfunc="sum", fill_value=0)
    return table.reset_index()


def scale_views(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scale experiment's rows split in two: rescaled-prior runs with a `prior, convention`
    column (e.g. `ssl (same, eps 0)`), and the from-scratch runs."""
    part = select(frame, "scale")
    if part.empty:
        return part, part
    scaled = part[part["arm"] != "scratch"].copy()
    scaled["prior, convention"] = [f"{p} ({r}, eps {e:g})" for p, r, e in
                                   zip(scaled["prior_source"], scaled["rule"], scaled["eps"],
                                       strict=True)]
    return scaled, part[part["arm"] == "scratch"]
