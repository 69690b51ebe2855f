"""Figures for the notebooks and the report (matplotlib; no method code here)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .prior import GaussianPrior


def prior_figure(priors: dict[str, GaussianPrior]):
    """What was learned: the distribution of log10 variances and the low-rank spectrum."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, prior in priors.items():
        logvar = torch.log10(prior.variance.double()).numpy()
        ax1.hist(logvar, bins=80, histtype="step", label=f"{name} (D={prior.dim})")
        if prior.rank:
            sv = torch.linalg.svdvals(prior.cov_factor.double()).numpy()
            ax2.semilogy(np.arange(1, len(sv) + 1), sv**2, "o-", label=name)
    ax1.set_xlabel("log10 SWAG variance per parameter")
    ax1.set_ylabel("parameters")
    ax1.legend()
    ax2.set_xlabel("component")
    ax2.set_ylabel("eigenvalue of F^T F")
    ax2.set_title("low-rank spectrum")
    ax2.legend()
    fig.tight_layout()
    return fig


def errorbar_plot(
    summary: pd.DataFrame, x: str, group: str | None, metric: str = "error_pct",
    logx: bool = False, title: str = "", xlabel: str | None = None, ax=None,
):
    """Mean +- standard error of `metric` against `x`, one line per `group`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    groups = [(None, summary)] if group is None else summary.groupby(group, sort=False)
    for name, part in groups:
        part = part.sort_values(x)
        xs = part[x].to_numpy(dtype=float)
        if x == "n_train":
            xs = np.where(xs == 0, np.nan, xs)
        ax.errorbar(xs, part[metric], yerr=part[f"{metric}_se"].fillna(0), marker="o",
                    capsize=3, label=str(name) if name is not None else None)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel({"error_pct": "test error (%)", "nll": "test NLL", "ece": "ECE"}.get(metric,
                                                                                    metric))
    ax.set_title(title)
    if group is not None:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def metric_panel(summary: pd.DataFrame, x: str, group: str | None, logx: bool, title: str,
                 xlabel: str | None = None):
    """Test error and NLL side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    errorbar_plot(summary, x, group, "error_pct", logx, title, xlabel, axes[0])
    errorbar_plot(summary, x, group, "nll", logx, title, xlabel, axes[1])
    fig.tight_layout()
    return fig


def gains_by_size(rows: list[dict], metric_label: str = "accuracy (points)"):
    """Each comparison's paired effect against the training size (log axis), with its
    interval: the claims' gains size by size."""
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    comparisons = sorted({(r["claim"], r["comparison"]) for r in rows})
    for i, (claim, comparison) in enumerate(comparisons):
        part = sorted((r for r in rows if (r["claim"], r["comparison"]) == (claim, comparison)
                       and r["effect"] is not None), key=lambda r: r["n_train"] or 1e9)
        if not part:
            continue
        x = [(r["n_train"] or 1e4) * (1 + 0.04 * i) for r in part]
        y = [100 * r["effect"] for r in part]
        lo = [100 * (r["effect"] - r["ci_low"]) if r["ci_low"] is not None else 0 for r in part]
        hi = [100 * (r["ci_high"] - r["effect"]) if r["ci_high"] is not None else 0
              for r in part]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=f"{claim}: {comparison}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training size n")
    ax.set_ylabel(f"paired gain, {metric_label}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
