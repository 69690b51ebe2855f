"""Figures for the notebooks and the report (matplotlib; no method code here)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..analysis.chains import RHAT_MAX
from ..analysis.convergence import MIN_DRAWS
from ..claims.text import VERDICT_COLOURS
from ..formatting import format_level, size_label
from ..priors.gaussian import GaussianPrior
from ..tables import METRIC_LABELS, SCRATCH_LABEL, ExperimentView, temperature_summary
from ..vocabulary import FIGURE_METRICS, SGD_ZERO, SHOWN_METRICS

Y_LABELS = {"error_pct": "test error (%)", "nll": "test NLL", "ece": "ECE", "brier": "Brier"}
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


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


def colours(names: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per name (sorted, tab10), so an arm keeps its colour across figures."""
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(sorted(set(map(str, names))))}


def styles(names: Sequence[str]) -> dict[str, dict]:
    """A fixed colour, marker and line style per name (by sorted position), so a line keeps
    its look across figures and coinciding lines stay distinguishable."""
    palette = colours(names)
    return {name: {"color": palette[name], "marker": MARKERS[i % len(MARKERS)],
                   "ls": LINESTYLES[i % len(LINESTYLES)]} for i, name in enumerate(sorted(palette))}


def size_positions(sizes: Sequence[float]) -> dict[float, float]:
    """x positions of training sizes on a log axis: each size at itself, the full set (0) two
    times beyond the largest (at 1e4 when it is the only size)."""
    finite = [float(n) for n in sizes if n]
    full_at = 2 * max(finite) if finite else 1e4
    return {n: float(n) if n else full_at for n in sizes}


def _size_ticks(ax, sizes) -> None:
    """Training sizes as plain tick labels on a log axis (`full` for the full set)."""
    positions = size_positions(sorted(set(sizes), key=lambda n: n or math.inf))
    ax.set_xticks(list(positions.values()), [size_label(n) for n in positions])
    ax.minorticks_off()


def errorbar_plot(
    summary: pd.DataFrame, x: str, group: str | None, metric: str = "error_pct",
    logx: bool = False, title: str = "", xlabel: str | None = None, ax=None,
    legend: bool = True,
):
    """Mean +- standard error of `metric` against `x`, one line per `group` (each with its own
    colour, marker and line style, so coinciding lines stay visible); the legend outside on
    the right. Training sizes (`x = n_train`) show the full set (0) as `full`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    groups = [(None, summary)] if group is None else summary.groupby(group, sort=True)
    look = styles(summary[group].astype(str)) if group is not None else {}
    positions = size_positions(list(summary[x].unique())) if x == "n_train" else None
    for name, part in groups:
        part = part.sort_values(x)
        xs = part[x].to_numpy(dtype=float)
        if positions is not None:
            xs = np.array([positions[n] for n in part[x]])
        ax.errorbar(xs, part[metric], yerr=part[f"{metric}_se"].fillna(0), capsize=3,
                    **look.get(str(name), {"marker": "o"}),
                    label=str(name) if name is not None else None)
    if logx:
        ax.set_xscale("log")
    if positions is not None:
        _size_ticks(ax, summary[x])
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(Y_LABELS.get(metric, metric))
    ax.set_title(title)
    if group is not None and legend:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return ax


def metric_panel(summary: pd.DataFrame, x: str, group: str | None, logx: bool, title: str,
                 xlabel: str | None = None):
    """Test error and NLL side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    errorbar_plot(summary, x, group, "error_pct", logx, f"{title}: {Y_LABELS['error_pct']}",
                  xlabel, axes[0], legend=False)
    errorbar_plot(summary, x, group, "nll", logx, f"{title}: {Y_LABELS['nll']}", xlabel, axes[1])
    fig.tight_layout()
    return fig


def gains_by_size(rows: list[dict], metric_label: str = "accuracy (points)"):
    """Each comparison's paired effect against the training size (log axis), with its
    interval at the level the claim was judged at (in the legend): the claims' gains size by
    size. Comparisons are nudged sideways; the legend sits below the axes."""
    comparisons = sorted({(r["claim"], r["comparison"]) for r in rows})
    fig, ax = plt.subplots(figsize=(10, 4.2 + 0.22 * len(comparisons)))
    offsets = _offsets(len(comparisons), 0.025)
    positions = size_positions(list({r["n_train"] for r in rows}))
    for i, (claim, comparison) in enumerate(comparisons):
        part = sorted((r for r in rows if (r["claim"], r["comparison"]) == (claim, comparison)
                       and r["effect"] is not None), key=lambda r: positions[r["n_train"]])
        if not part:
            continue
        x = [positions[r["n_train"]] * offsets[i] for r in part]
        y = [100 * r["effect"] for r in part]
        lo = [100 * (r["effect"] - r["ci_low"]) if r["ci_low"] is not None else 0 for r in part]
        hi = [100 * (r["ci_high"] - r["effect"]) if r["ci_high"] is not None else 0
              for r in part]
        levels = sorted({format_level(r.get("level")) for r in part})
        ax.errorbar(x, y, yerr=[lo, hi], marker=MARKERS[i % len(MARKERS)], capsize=3,
                    ls=LINESTYLES[i % len(LINESTYLES)],
                    label=f"{claim}: {comparison} ({', '.join(levels)} interval)")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    _size_ticks(ax, list(positions))
    ax.set_xlabel("training size n (comparisons nudged sideways)")
    ax.set_ylabel(f"paired gain, {metric_label}")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- per experiment


def experiment_figure(view: ExperimentView, metrics: Sequence[str] = FIGURE_METRICS):
    """The figure of one experiment's view (the report's and the explorer's): rank and
    inference as mean ± se lines per trace variant / arm, scale as one panel per prior source
    with a line style per convention and the from-scratch band, temperature against T.
    None when the view has no runs."""
    if view.runs.empty:
        return None
    if view.experiment == "scale":
        return scale_figure(view, metrics)
    if view.experiment == "temperature":
        return temperature_figure(temperature_summary(view.records))
    x = view.spec.keys[-1]
    group = view.spec.keys[0]
    summary = view.summary()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics) + 1.5, 3.8),
                             squeeze=False)
    for i, (ax, metric) in enumerate(zip(axes[0], metrics, strict=True)):
        title = f"{view.experiment}: {Y_LABELS.get(metric, metric)}"  # one title per panel
        errorbar_plot(summary, x, group, metric, view.spec.logx, title,
                      view.spec.xlabel, ax, legend=i == len(metrics) - 1)
    fig.tight_layout()
    return fig


def _offsets(k: int, spread: float = 0.06) -> list[float]:
    """k multiplicative x offsets (log axis) centred on 1, so coinciding points stay apart."""
    return [10 ** (spread * (i - (k - 1) / 2)) for i in range(k)]


def scale_figure(view: ExperimentView, metrics: Sequence[str] = FIGURE_METRICS):
    """One column per prior source, one row per metric; per convention (rule, eps) its own
    colour, line style and marker, nudged sideways so coinciding conventions stay visible;
    the from-scratch runs as a grey line with their mean ± se band."""
    summary = view.summary()
    scratch = view.baseline_summary()
    sources = sorted(summary["prior_source"].unique())
    conventions = sorted({(r, e) for r, e in zip(summary["rule"], summary["eps"], strict=True)})
    offsets = _offsets(len(conventions))
    fig, axes = plt.subplots(len(metrics), len(sources), squeeze=False,
                             figsize=(5.2 * len(sources), 3.4 * len(metrics)))
    palette = colours([f"{r}, eps {e:g}" for r, e in conventions])
    for col, source in enumerate(sources):
        for row, metric in enumerate(metrics):
            ax = axes[row][col]
            for i, (rule, eps) in enumerate(conventions):
                part = summary[(summary["prior_source"] == source) & (summary["rule"] == rule)
                               & (summary["eps"] == eps)].sort_values("scale")
                if part.empty:
                    continue
                label = f"{rule}, eps {eps:g}"
                ax.errorbar(part["scale"] * offsets[i], part[metric],
                            yerr=part[f"{metric}_se"].fillna(0), capsize=3,
                            color=palette[label], ls=LINESTYLES[i % len(LINESTYLES)],
                            marker=MARKERS[i % len(MARKERS)],
                            mfc="none" if i % 2 else None, ms=7 - 1.5 * (i % 3), label=label)
            if not scratch.empty:
                mean, se = scratch[metric].iloc[0], scratch[f"{metric}_se"].iloc[0]
                ax.axhline(mean, color="0.35", lw=1.2, label=SCRATCH_LABEL)
                if not pd.isna(se):
                    ax.axhspan(mean - se, mean + se, color="0.35", alpha=0.15, lw=0)
            ax.set_xscale("log")
            ax.set_xlabel("prior scale (conventions nudged sideways)")
            ax.set_ylabel(Y_LABELS.get(metric, metric))
            ax.set_title(f"prior: {source}")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8,
               title="rescaling convention (rule, eps)", title_fontsize=8)
    legend_in = 0.75 + 0.2 * (len(labels) > 4)  # inches below the panels for the legend
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    return fig


def inference_gains_figure(gains: pd.DataFrame, baseline: str = SGD_ZERO,
                           baseline_label: str = "SGD + zero-mean prior"):
    """Each inference arm's paired gain over the `baseline` arm against the training size (one
    panel per metric; positive = better than the baseline), with t intervals: differences
    smaller than the spread between seeds show here where the arms' lines overlap. Arms keep
    the look they have in the inference figure."""
    if gains.empty:
        return None
    metrics = list(dict.fromkeys(gains["metric"]))
    arms = sorted(gains["arm"].unique())
    look = styles([*arms, baseline])
    offsets = _offsets(len(arms), 0.03)
    positions = size_positions(list(gains["n_train"].unique()))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics) + 1.5, 4.2),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, arm in enumerate(arms):
            part = gains[(gains["arm"] == arm) & (gains["metric"] == metric)]
            part = part.assign(x=[positions[n] for n in part["n_train"]]).sort_values("x")
            lo = (part["gain"] - part["ci_low"]).fillna(0)
            hi = (part["ci_high"] - part["gain"]).fillna(0)
            ax.errorbar(part["x"] * offsets[i], part["gain"], yerr=[lo, hi], capsize=3,
                        label=arm, **look[arm])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        _size_ticks(ax, gains["n_train"])
        ax.set_xlabel("training images (arms nudged sideways)")
        unit = " (points)" if metric == "error_pct" else ""
        ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} reduction{unit}")
        levels = ", ".join(sorted({format_level(v) for v in gains["level"]}))
        ax.set_title(f"gain over {baseline_label} ({baseline})\n(paired over seeds, "
                     f"{levels} t interval; above 0 = better)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def temperature_positions(temperatures: Sequence[float]) -> tuple[list[float], list[str]]:
    """x positions on a log axis for temperatures that may include 0: T = 0 sits one decade
    below the smallest positive T (marked with a break); tick labels as the values."""
    positive = [t for t in temperatures if t > 0]
    zero_at = min(positive) / 10 if positive else 1.0
    return ([t if t > 0 else zero_at for t in temperatures],
            [f"{t:g}" for t in temperatures])


def temperature_figure(summary: pd.DataFrame, rhat_max: float = RHAT_MAX):
    """Test error, NLL and ECE (mean ± se over seeds) and the rank-normalised R-hat over the
    chains (largest over seeds; the smallest bulk ESS written beside it; dashed: `rhat_max`) against
    the temperature on a log axis, T = 0 placed a decade below the smallest positive T behind
    an axis break. None without rows."""
    if summary.empty:
        return None
    xs, labels = temperature_positions(list(summary["temperature"]))
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for ax, metric in zip(axes[:3], SHOWN_METRICS, strict=True):
        ax.errorbar(xs, summary[metric], yerr=summary[f"{metric}_se"].fillna(0), marker="o",
                    capsize=3)
        ax.set_ylabel(Y_LABELS.get(metric, metric.upper()))
    rhat = summary["rhat"].to_numpy(dtype=float)
    ax = axes[3]
    if np.isfinite(rhat).any():
        ax.plot(xs, rhat, marker="o")
        if np.nanmax(rhat) > 3:
            ax.set_yscale("log")
        if "ess" in summary:
            for x, y, ess in zip(xs, rhat, summary["ess"], strict=True):
                if np.isfinite(y) and np.isfinite(ess):
                    ax.annotate(f"ESS {ess:.0f}", (x, y), textcoords="offset points",
                                xytext=(0, 6), ha="center", fontsize=7)
    else:
        draws = {int(d) for d in summary.get("draws", []) if d is not None and d == d}
        have = f"these chains hold {', '.join(map(str, sorted(draws)))}" if draws else ""
        ax.text(0.5, 0.5, f"no R-hat: it needs >= 2 chains\nof >= {MIN_DRAWS} draws each;\n{have}",
                transform=ax.transAxes, ha="center", va="center", color="0.4")
    for y, style in ((1.0, "-"), (rhat_max, "--")):
        ax.axhline(y, color="0.5", lw=0.8, ls=style)
    ax.set_ylabel("rank-normalised R-hat (1 = chains agree)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 3, max(xs) * 3)
        ax.set_xticks(xs, labels)
        ax.minorticks_off()
        ax.set_xlabel("temperature T (0 = no noise)")
        ax.grid(alpha=0.3)
        if any(t == 0 for t in summary["temperature"]) and len(xs) > 1:
            _axis_break(ax, xs[list(summary["temperature"]).index(0)])
    fig.tight_layout()
    return fig


def _axis_break(ax, x_zero: float) -> None:
    """A `//` on the x axis just right of the T = 0 position: the log axis has no 0."""
    x = x_zero * 10 ** 0.5
    ax.annotate("//", xy=(x, 0), xycoords=("data", "axes fraction"), ha="center",
                va="center", fontsize=11, fontweight="bold", color="0.3",
                annotation_clip=False)


def reliability_figure(bins: pd.DataFrame, columns: int = 4):
    """A reliability diagram per arm (accuracy against confidence per ECE bin, pooled over
    seeds), one line per training size, marker area proportional to the bin's share of
    examples, the diagonal = perfect calibration. None when there are no bins."""
    if bins.empty:
        return None
    arms = sorted(bins["arm"].unique())
    sizes = sorted(bins["n_train"].unique(), key=lambda n: n or math.inf)
    rows = math.ceil(len(arms) / columns)
    cols = min(columns, len(arms))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.3 * rows), squeeze=False,
                             sharex=True, sharey=True)
    palette = colours([size_label(n) for n in sizes])
    for ax, arm in zip(axes.flat, arms, strict=False):
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
        for n in sizes:
            part = bins[(bins["arm"] == arm) & (bins["n_train"] == n)].sort_values("bin")
            if part.empty:
                continue
            share = part["count"] / part["count"].sum()
            ax.plot(part["confidence"], part["accuracy"], color=palette[size_label(n)], lw=1)
            ax.scatter(part["confidence"], part["accuracy"], s=8 + 200 * share,
                       color=palette[size_label(n)], label=f"n = {size_label(n)}")
        ax.set_title(arm, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(arms):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy in bin")
    for i, ax in enumerate(axes.flat[:len(arms)]):
        if i + cols >= len(arms):  # the lowest panel of its column
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("confidence (top label)")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def per_draw_figure(draws: pd.DataFrame):
    """Test error % of each arm per prior draw (mean over the seeds that used it; every arm
    starts from its draw's pretrained backbone), one panel per training size: a vertical bar
    spans the draws, one marker per draw, so how much a verdict could hang on one prior draw
    is visible. None without rows."""
    if draws.empty:
        return None
    sizes = sorted(draws["n_train"].unique(), key=lambda n: n or math.inf)
    arms = sorted(draws["arm"].unique())
    n_draws = sorted(draws["draw"].unique())
    width = max(4.0, 0.8 * len(arms) + 1.5)
    fig, axes = plt.subplots(1, len(sizes), figsize=(width * len(sizes) + 1.2, 3.8),
                             squeeze=False, sharey=True)
    palette = colours([f"draw {int(d)}" for d in n_draws])
    labelled: set = set()
    for ax, n in zip(axes[0], sizes, strict=True):
        part = draws[draws["n_train"] == n]
        for x, arm in enumerate(arms):
            values = part[part["arm"] == arm]
            if values.empty:
                continue
            ax.vlines(x, values["error_pct"].min(), values["error_pct"].max(), color="0.6",
                      lw=3, alpha=0.5)
            for j, d in enumerate(n_draws):
                point = values[values["draw"] == d]
                label = f"draw {int(d)}"
                ax.scatter([x] * len(point), point["error_pct"], marker=MARKERS[j % len(MARKERS)],
                           color=palette[label], zorder=3,
                           label=label if label not in labelled and len(point) else None)
                if len(point):
                    labelled.add(label)
        ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"n = {size_label(n)}")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("test error (%)")
    handles = [h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in axes[0] for lab in ax.get_legend_handles_labels()[1]]
    axes[0][-1].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def trace_figure(records, max_runs: int = 3):
    """Trace plots: each sample's test NLL in sample order, one line per chain, for the first
    `max_runs` pooled chain records with traces (`chains.convergence`); chains that agree
    overlap. None without traces."""
    runs = [r for r in records
            if ((r.get("diagnostics") or {}).get("convergence") or {}).get("traces")][:max_runs]
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.4), squeeze=False)
    for ax, r in zip(axes[0], runs, strict=True):
        conv = r["diagnostics"]["convergence"]
        for c, trace in enumerate(conv["traces"]):
            ax.plot(range(1, len(trace) + 1), trace, marker=".", lw=1, label=f"chain {c}")
        cfg = r["config"]
        ax.set_title(f"{cfg['arm']}, n = {cfg.get('n_train')}, seed {cfg['seed']}: R-hat "
                     f"{conv['rhat']:.3f}, ESS {conv['ess']:.0f}", fontsize=8)
        ax.set_xlabel("sample (after burn-in)")
        ax.set_ylabel("test NLL of the sample")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def forest_figure(rows: list[dict]):
    """Every claim's judged comparisons at a glance (`claims.forest_rows`): the effect in
    accuracy points with its interval at the level it was judged at, coloured by its verdict;
    the grey band is the margin (the smallest effect that matters), the tick the mde; the
    published numbers, where there are any, beside the row. None without rows."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 0.9 + 0.24 * len(rows)))
    y = np.arange(len(rows))[::-1]
    margin = max((r["margin"] or 0) for r in rows)
    ax.axvspan(-100 * margin, 100 * margin, color="0.9", zorder=0)
    ax.axvline(0, color="black", lw=0.8)
    for yi, r in zip(y, rows, strict=True):
        colour = VERDICT_COLOURS.get(r["verdict"], "0.3")
        lo = r["ci_low"] if r["ci_low"] is not None else r["effect"]
        hi = r["ci_high"] if r["ci_high"] is not None else r["effect"]
        ax.plot([100 * max(lo, -1), 100 * min(hi, 1)], [yi, yi], color=colour, lw=2)
        ax.plot(100 * r["effect"], yi, "o", color=colour)
        if r["mde"] is not None and r["mde"] < 1:
            ax.plot(100 * r["mde"], yi, "|", color="0.35", ms=9)
    ax.set_yticks(y, [f"{r['claim']}  {r['label']}  ({r['verdict']})" for r in rows],
                  fontsize=8)
    for yi, r in zip(y, rows, strict=True):
        if r["published"]:
            ax.annotate(r["published"], (1.01, yi), xycoords=("axes fraction", "data"),
                        fontsize=7, va="center", color="0.35")
    ax.set_xlabel("effect, accuracy points (positive = the claim's direction); bars: the "
                  "judged interval; grey band: the margin; |: the mde")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
