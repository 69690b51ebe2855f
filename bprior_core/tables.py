"""Result records -> tidy tables: one row per run, and mean +- standard error per group."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from . import paired
from .claim_text import scale_label
from .mcmc import split_rhat
from .records import headline_block, headline_name
from .selection import select_tuned
from .vocabulary import (
    FIGURE_METRICS,
    METRICS,
    SGD_ZERO,
    SHOWN_METRICS,
    TABLE_METRICS,
    VIEWED_EXPERIMENTS,
)

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


def size_label(n: float | None) -> str:
    """A training size as text: `full` for the full set (0, None or inf), else the integer."""
    return "full" if not n or n == math.inf or (isinstance(n, float) and math.isnan(n)) \
        else str(int(n))


def format_mean_se(mean: float, se: float, digits: int = 2) -> str:
    """`12.34 ± 0.56` (or just the mean when the error is undefined)."""
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


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


def temperature_table(records: list[dict]) -> pd.DataFrame:
    """Per temperature of the temperature experiment: test error, NLL and ECE of the model
    average (the chains pooled where `chains.combine_chains` pooled them) and of one sample
    (the final iterate), the rank-normalised R-hat (largest over seeds) and bulk ESS (smallest)
    over the chains, the mean disagreement between samples and the prior Mahalanobis RMS."""
    frame = select(records_frame(records), "temperature") if records else pd.DataFrame()
    if frame.empty:
        return frame
    rhat, ess = _temperature_convergence(records)
    ok = frame[frame["status"] == "ok"]
    chains = {t: max((r.get("chains") or 1 for r in records
                      if r["config"]["experiment"] == "temperature"
                      and r["config"]["train"]["temperature"] == t), default=1)
              for t in ok["temperature"].unique()}
    rows = []
    for t, group in ok.groupby("temperature", sort=True):
        rows.append({
            "T": f"{t:g}", "chains": max(chains[t], int(group["chain"].nunique())),
            "runs": len(group), "diverged": int((frame["temperature"] == t).sum() - len(group)),
            "error % (average)": group["error_pct"].mean(),
            "error % (one sample)": 100 * (1 - group["final_accuracy"]).mean(),
            "NLL (average)": group["nll"].mean(), "NLL (one sample)": group["final_nll"].mean(),
            "ECE (average)": group["ece"].mean(),
            "R-hat": (round(rhat[t], 3) if t in rhat
                      else too_short_text(chains[t], _draws_per_chain(records, t))),
            "bulk ESS": round(ess[t]) if t in ess else "not computed (see R-hat)",
            "sample disagreement": _or_why(group["sample_disagreement"].mean(),
                                           "one sample per chain"),
            "prior Mahalanobis RMS": _or_why(group["prior_mahalanobis_rms"].mean(), "no prior"),
        })
    return pd.DataFrame(rows).round(3)


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


# ----------------------------------------------------------------------------- one view per
# experiment: what the report pages and the explorer both show


SCRATCH_LABEL = "from scratch (no pretraining, SGD, no prior)"


@dataclass(frozen=True)
class ViewSpec:
    """How one experiment is grouped and drawn: the grouping columns (the last is the x axis),
    the columns a reader may filter on, and the axis."""

    keys: tuple[str, ...]
    filters: tuple[str, ...]
    logx: bool
    xlabel: str
    count: str = "seeds"


VIEW_SPECS: dict[str, ViewSpec] = {
    "rank": ViewSpec(("trace", "rank"), ("trace",), False, "rank of F (principal directions)"),
    "scale": ViewSpec(("prior_source", "rule", "eps", "scale"), ("prior_source", "convention"),
                      True, "prior scale"),
    "inference": ViewSpec(("arm", "n_train"), ("arm", "n_train"), True, "training images"),
    "temperature": ViewSpec(("temperature",), (), True, "temperature T", count="runs"),
}
FILTER_LABELS = {"trace": "trace", "prior_source": "prior", "convention": "convention",
                 "arm": "arm", "n_train": "size"}


@dataclass(frozen=True)
class ExperimentView:
    """One experiment's runs as the report shows them: tuned arms reduced to their validation
    choice (`selection.select_tuned`), one row per run (`records_frame`), conventions and
    trace variants kept apart by the grouping keys, the from-scratch runs of the scale
    experiment apart in `baseline`. The report pages and the explorer both build their tables
    and figures from this, so they cannot differ."""

    experiment: str
    runs: pd.DataFrame
    baseline: pd.DataFrame
    records: tuple[dict, ...]

    @property
    def spec(self) -> ViewSpec:
        return VIEW_SPECS[self.experiment]

    @property
    def empty(self) -> bool:
        return self.runs.empty and self.baseline.empty

    def summary(self) -> pd.DataFrame:
        """Mean and standard error over seeds per group (`summarize`), in key order with
        training sizes as numbers (the full set, size 0, last)."""
        if self.runs.empty:
            return pd.DataFrame()
        keys = list(self.spec.keys)
        out = summarize(self.runs, keys)
        return out.sort_values(keys, key=_size_order, kind="stable").reset_index(drop=True)

    def baseline_summary(self) -> pd.DataFrame:
        """The from-scratch runs' mean and standard error (scale only; else empty)."""
        if self.baseline.empty:
            return pd.DataFrame()
        return summarize(self.baseline.assign(arm=SCRATCH_LABEL), ["arm"])

    def table(self, metrics: Sequence[str] = SHOWN_METRICS) -> pd.DataFrame:
        """The experiment's table: `display_table` of `summary` (mean ± se per group)."""
        summary = self.summary()
        if summary.empty:
            return summary
        return display_table(summary, list(self.spec.keys), metrics, self.spec.count)

    def baseline_table(self, metrics: Sequence[str] = SHOWN_METRICS):
        """The from-scratch runs as a one-row table (empty without them)."""
        summary = self.baseline_summary()
        return summary if summary.empty else display_table(summary, ["arm"], metrics)

    def options(self) -> dict[str, list[tuple[str, object]]]:
        """The filters that mean something for this experiment: {column: [(label, value)]}
        over the values present (sizes in numeric order, the full set last)."""
        out = {}
        for col in self.spec.filters:
            values = self.runs[col].dropna().unique().tolist() if col in self.runs else []
            if col == "n_train":
                values = sorted(values, key=lambda n: n or math.inf)
                out[col] = [(size_label(v), v) for v in values]
            else:
                out[col] = [(str(v), v) for v in sorted(values, key=str)]
        return out

    def filtered(self, choices: Mapping[str, Sequence]) -> ExperimentView:
        """The same view restricted to the chosen values of its filter columns (a column not
        in `choices` is not restricted)."""
        runs = self.runs
        for col, values in choices.items():
            if col not in self.spec.filters:
                raise ValueError(f"{self.experiment} has no filter {col!r}; it has "
                                 f"{list(self.spec.filters)}")
            runs = runs[runs[col].isin(list(values))]
        return replace(self, runs=runs)


def _size_order(column: pd.Series) -> pd.Series:
    """A sort key that puts training size 0 (the full set) after every other size."""
    return column.replace(0, math.inf) if column.name == "n_train" else column


def experiment_view(records: Sequence[Mapping], experiment: str) -> ExperimentView:
    """The view of one experiment from the stored records of a profile (all experiments, or
    already one): the validation-selected run per arm, size and seed, as in the claims."""
    if experiment not in VIEW_SPECS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {VIEWED_EXPERIMENTS}")
    chosen = [r for r in select_tuned([r for r in records
                                       if r["config"]["experiment"] == experiment])]
    frame = records_frame(chosen) if chosen else pd.DataFrame()
    baseline = frame.iloc[0:0]
    if len(frame):
        frame["convention"] = [f"{r}, eps {e:g}" if isinstance(r, str) else "-"
                               for r, e in zip(frame["rule"], frame["eps"].fillna(0),
                                               strict=True)]
        if experiment == "scale":
            scratch = frame["arm"] == "scratch"
            frame, baseline = frame[~scratch], frame[scratch]
    return ExperimentView(experiment, frame, baseline, tuple(chosen))


# ----------------------------------------------------------------------------- paired gains


def paired_gains(runs: pd.DataFrame, baseline: str = SGD_ZERO,
                 metrics: Sequence[str] = FIGURE_METRICS,
                 level: float = paired.LEVEL) -> pd.DataFrame:
    """Each inference arm's gain over the `baseline` arm, paired over seeds at each size:
    per seed baseline minus arm (every metric here is lower-is-better, so positive = the arm is
    better), mean with its Student-t interval at `level`. Rows: arm, n_train, metric, gain,
    ci_low, ci_high, n_seeds, level (the baseline itself is left out)."""
    ok = runs[runs["status"] == "ok"] if len(runs) else runs
    if ok.empty or baseline not in set(ok["arm"]):
        return pd.DataFrame(columns=["arm", "n_train", "metric", "gain", "ci_low", "ci_high",
                                     "n_seeds", "level"])
    rows = []
    for metric in metrics:
        means = ok.groupby(["arm", "n_train", "seed"])[metric].mean()
        for (arm, n), by_seed in means.groupby(level=[0, 1], sort=False):
            if arm == baseline or (baseline, n) not in means.index.droplevel(2):
                continue
            base = means.loc[(baseline, n)].to_dict()
            mine = by_seed.droplevel([0, 1]).to_dict()
            c = paired.paired_difference(mine, base, higher_is_better=False, level=level)
            rows.append({"arm": arm, "n_train": n, "metric": metric, "gain": c.effect,
                         "ci_low": c.ci_low, "ci_high": c.ci_high, "n_seeds": c.n,
                         "level": level})
    return pd.DataFrame(rows)


def protocol_table(records: Sequence[Mapping], baseline: str = SGD_ZERO) -> pd.DataFrame:
    """The two protocols side by side: each arm of the per-seed experiment against `baseline`
    there (each seed tuned on its own subset), and the same arms in the inference experiment
    (settings fixed on the tuning seeds, evaluated on fresh seeds), per size: the gain in test
    error points (baseline minus arm, positive = the arm is better) with its 95 % Student-t
    interval over seeds (descriptive: the claims' intervals are in their evidence)."""
    frame = records_frame(list(records)) if records else pd.DataFrame()
    per_seed = select(frame, "per_seed")
    if per_seed.empty:
        return pd.DataFrame()
    arms = set(per_seed["arm"])
    rows = []
    for experiment, label in (("inference", "fixed setting, fresh seeds"),
                              ("per_seed", "tuned per seed (Harvey et al.)")):
        part = select(frame, experiment)
        part = part[part["arm"].isin(arms) & part["n_train"].isin(set(per_seed["n_train"]))]
        gains = paired_gains(part, baseline, metrics=("error_pct",))
        for _, g in gains.iterrows():
            rows.append({"comparison": f"{g['arm']} vs {baseline}",
                         "n_train": size_label(g["n_train"]), "protocol": label,
                         "gain (error points)": f"{g['gain']:+.2f}",
                         "95% interval": ("-" if g["ci_low"] is None or pd.isna(g["ci_low"])
                                          else f"{g['ci_low']:+.2f} .. {g['ci_high']:+.2f}"),
                         "seeds": int(g["n_seeds"])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- temperature


def temperature_summary(records: Sequence[Mapping]) -> pd.DataFrame:
    """Per temperature (numeric, ascending): mean and standard error over the ok runs (chains
    and seeds) of test error % and NLL of the model average, the split R-hat of the per-sample
    test NLL (largest over seeds; NaN without >= 2 chains of >= 4 samples) and the runs."""
    part = select(records_frame(list(records)), "temperature") if records else pd.DataFrame()
    if part.empty:
        return pd.DataFrame()
    summary = summarize(part, ["temperature"], SHOWN_METRICS)
    rhat, ess = _temperature_convergence(records)
    summary["rhat"] = [rhat.get(t, math.nan) for t in summary["temperature"]]
    summary["ess"] = [ess.get(t, math.nan) for t in summary["temperature"]]
    summary["draws"] = [_draws_per_chain(records, t) for t in summary["temperature"]]
    return summary.sort_values("temperature").reset_index(drop=True)


def _temperature_convergence(records: Sequence[Mapping]) -> tuple[dict, dict]:
    """Per temperature: the largest R-hat and the smallest bulk ESS over seeds, from the pooled
    chains' diagnostics (`chains.combine_chains`), else the split R-hat of separate chain
    records' per-sample test NLL."""
    rhat: dict[float, float] = {}
    ess: dict[float, float] = {}
    for r in records:
        cfg, conv = r["config"], (r.get("diagnostics") or {}).get("convergence") or {}
        if cfg["experiment"] != "temperature" or conv.get("rhat") is None:
            continue
        t = cfg["train"]["temperature"]
        rhat[t] = max(rhat.get(t, -math.inf), conv["rhat"])
        ess[t] = min(ess.get(t, math.inf), conv["ess"])
    for t, group in _chains(records).items():
        values = [split_rhat(c) for c in group.values()
                  if len(c) >= 2 and len({len(x) for x in c}) == 1 and len(c[0]) >= 4]
        if t not in rhat and values:
            rhat[t] = max(values)
    return rhat, ess


def _or_why(value: float, why: str) -> float | str:
    """A number, rounded, or the reason there is none."""
    return why if value is None or not np.isfinite(value) else round(float(value), 3)


def _draws_per_chain(records: Sequence[Mapping], temperature: float) -> int | None:
    """The draws each chain of a temperature holds (its pooled records' diagnostics)."""
    for r in records:
        conv = (r.get("diagnostics") or {}).get("convergence") or {}
        if (r["config"]["experiment"] == "temperature"
                and r["config"]["train"]["temperature"] == temperature):
            if conv.get("draws_per_chain") is not None:
                return int(conv["draws_per_chain"])
            nll = (r.get("diagnostics") or {}).get("sample_test_nll")
            if nll:
                return len(nll)
    return None


def _chains(records: Sequence[Mapping]) -> dict[float, dict[int, list]]:
    """{temperature: {seed: [per-sample test NLL of each chain]}} of the ok temperature runs."""
    out: dict[float, dict[int, list]] = {}
    for r in records:
        cfg = r["config"]
        nll = (r.get("diagnostics") or {}).get("sample_test_nll")
        if cfg["experiment"] == "temperature" and r["status"] == "ok" and nll:
            out.setdefault(cfg["train"]["temperature"], {}).setdefault(r["seed"], []).append(nll)
    return out


# ----------------------------------------------------------------------------- reliability

RELIABILITY_KEYS = ("confidence", "accuracy", "count")


def reliability_bins(records: Sequence[Mapping]) -> pd.DataFrame:
    """Per-bin reliability of each run's headline prediction, pooled over seeds per arm and
    size: rows arm, n_train, bin, confidence, accuracy, count (count-weighted means; empty bins
    left out). Reads `record["reliability"][bma|final]` = {"confidence": [...], "accuracy":
    [...], "count": [...]} (one entry per ECE bin, `metrics.reliability_bins`) of the headline
    prediction; runs without it are skipped, so the frame is empty where records hold no bins."""
    rows = []
    for r in records:
        bins = (r.get("reliability") or {}).get(headline_name(r))
        if r.get("status") != "ok" or not isinstance(bins, Mapping):
            continue
        if not all(isinstance(bins.get(k), Sequence) for k in RELIABILITY_KEYS):
            continue
        for b, (conf, acc, count) in enumerate(zip(*(bins[k] for k in RELIABILITY_KEYS),
                                                   strict=True)):
            if count and conf is not None and acc is not None:
                rows.append({"arm": r["config"]["arm"], "n_train": r["config"]["n_train"],
                             "bin": b, "count": float(count), "conf_sum": conf * count,
                             "acc_sum": acc * count})
    if not rows:
        return pd.DataFrame(columns=["arm", "n_train", "bin", "confidence", "accuracy",
                                     "count"])
    frame = pd.DataFrame(rows).groupby(["arm", "n_train", "bin"], sort=False).sum()
    frame["confidence"] = frame.pop("conf_sum") / frame["count"]
    frame["accuracy"] = frame.pop("acc_sum") / frame["count"]
    return frame.reset_index()[["arm", "n_train", "bin", "confidence", "accuracy", "count"]]


# ----------------------------------------------------------------------------- prior draws


def per_draw_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Test error % per inference arm, size and prior draw (mean over the ok seeds that used
    the draw; every arm starts from the pretrained backbone of its seed's draw, and the learned
    prior arms use that draw's prior too): rows arm, n_train, draw, error_pct, seeds. Empty
    with a single draw."""
    ok = runs[runs["status"] == "ok"] if len(runs) else runs
    if len(ok) and ok["draw"].nunique() < 2:
        ok = ok.iloc[0:0]
    if ok.empty:
        return pd.DataFrame(columns=["arm", "n_train", "draw", "error_pct", "seeds"])
    grouped = ok.groupby(["arm", "n_train", "draw"], sort=False)["error_pct"]
    return grouped.agg(error_pct="mean", seeds="size").reset_index()


# ----------------------------------------------------------------------------- claims' gains


def gains_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """`claims.gains_by_size` rows as a table: the effect and its interval in accuracy points
    (cut at +-100, what a difference of accuracies allows), and the confidence level each
    interval is at (the level its comparison is judged at)."""
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(list(rows))
    out = pd.DataFrame({"claim": frame["claim"], "comparison": frame["comparison"],
                        "n_train": [size_label(n) for n in frame["n_train"]]})
    missing = "no interval (fewer than 2 seeds)"
    for col, label, bound in (("effect", "effect (points)", None),
                              ("ci_low", "interval low", -1.0), ("ci_high", "interval high", 1.0)):
        out[label] = [missing if v is None or pd.isna(v) else
                      f"{100 * bound:+.0f} (cut: beyond what accuracy allows)"
                      if bound is not None and abs(v) > 1 else f"{100 * v:+.1f}"
                      for v in frame[col]]
    out["level"] = [format_level(v) for v in frame.get("level", [None] * len(frame))]
    out["seeds"] = frame["n_seeds"]
    return out


def format_level(level: float | None) -> str:
    """A confidence level as a percentage with the digits it needs (95 %, 99.29 %)."""
    if level is None or pd.isna(level):
        return "-"
    return f"{100 * level:.4g} %"


# ----------------------------------------------------------------------------- convergence


def convergence_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """Per experiment, arm and size (and temperature), over the seeds of the pooled chain
    records (`chains.combine_chains`): chains, samples per chain, the largest R-hat and the
    smallest bulk ESS, and how many seeds converged (R-hat <= RHAT_MAX, ESS >= ESS_MIN)."""
    from .chains import converged

    rows: dict[tuple, dict] = {}
    for r in records:
        conv = (r.get("diagnostics") or {}).get("convergence")
        if not conv or r.get("status") != "ok" or not conv.get("draws_per_chain"):
            continue  # a deep ensemble's members are not chains of draws
        cfg = r["config"]
        key = (cfg["experiment"], cfg["arm"], cfg.get("n_train") or 0)
        row = rows.setdefault(key, {"experiment": key[0], "arm": key[1], "n_train": key[2],
                                    "chains": conv.get("n_chains"),
                                    "samples per chain": int(conv["draws_per_chain"]),
                                    "R-hat (max)": None, "bulk ESS (min)": None,
                                    "seeds converged": 0, "seeds": 0})
        row["seeds"] += 1
        row["seeds converged"] += bool(converged(r))
        for name, value, pick in (("R-hat (max)", conv.get("rhat"), max),
                                  ("bulk ESS (min)", conv.get("ess"), min)):
            if value is not None:
                row[name] = value if row[name] is None else pick(row[name], value)
    if not rows:
        return pd.DataFrame()
    for row in rows.values():
        for name, digits in (("R-hat (max)", 3), ("bulk ESS (min)", 0)):
            row[name] = (round(row[name], digits) if row[name] is not None
                         else too_short_text(row["chains"], row["samples per chain"]))
    frame = pd.DataFrame(sorted(rows.values(), key=lambda r: (r["experiment"], r["arm"],
                                                              r["n_train"] or math.inf)))
    frame["n_train"] = [str(int(n)) if n else "full" for n in frame["n_train"]]
    return frame


def too_short_text(chains: int | None, draws: int | None) -> str:
    """Why a chain set has no R-hat or ESS, in words."""
    from .mcmc import MIN_DRAWS

    if not chains or chains < 2:
        return "not computed: one chain (R-hat needs 2 or more)"
    return (f"not computed: {draws or 0} draws per chain (R-hat needs {MIN_DRAWS} or more)")


# ----------------------------------------------------------------------------- reference


def reference_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """The reference experiment at T = 1 per arm and size: test error, NLL and ECE (mean ±
    standard error over seeds) of the reference posterior's model average, SGD on its subspace
    (the MAP) and the paper's SGHMC recipe there."""
    frame = select(records_frame(list(records)), "reference") if records else pd.DataFrame()
    if frame.empty:
        return frame
    frame = frame[frame["arm"].isin(("reference", "head_sgd", "head_sghmc"))]
    return display_table(summarize(frame, ["arm", "n_train"]), ["arm", "n_train"])


def reference_diagnostics(records: Sequence[Mapping]) -> pd.DataFrame:
    """Per size and temperature, over the reference posterior's seeds: the largest 95th
    percentile of the validation points' R-hat, the smallest median bulk ESS, the largest Monte
    Carlo SE of the model-averaged test accuracy (points), the accept rates' range and the
    divergent transitions."""
    rows: dict[tuple, dict] = {}
    for r in records:
        cfg = r.get("config") or {}
        diag = (r.get("diagnostics") or {}).get("reference")
        if cfg.get("experiment") != "reference" or not diag:
            continue
        key = (int(cfg.get("n_train") or 0), cfg["train"]["temperature"])
        row = rows.setdefault(key, {"n_train": size_label(key[0]), "T": f"{key[1]:g}",
                                    "seeds": 0, "R-hat (val, q95, max)": 0.0,
                                    "ESS (val, median, min)": math.inf,
                                    "MC SE of accuracy (points, max)": 0.0,
                                    "accept rate": [1.0, 0.0], "divergent": 0,
                                    "chains x draws": f"{diag['chains']} x "
                                                      f"{diag['draws_per_chain']}"})
        row["seeds"] += 1
        row["R-hat (val, q95, max)"] = max(row["R-hat (val, q95, max)"], diag["rhat_val_q95"])
        row["ESS (val, median, min)"] = min(row["ESS (val, median, min)"],
                                            diag["ess_val_median"])
        row["MC SE of accuracy (points, max)"] = max(row["MC SE of accuracy (points, max)"],
                                                     100 * diag["mc_se_accuracy"])
        low, high = row["accept rate"]
        row["accept rate"] = [min(low, *diag["accept_rate"]), max(high, *diag["accept_rate"])]
        row["divergent"] += diag["divergent"]
    out = []
    for key in sorted(rows, key=lambda k: (k[0] or math.inf, k[1])):
        row = rows[key]
        low, high = row.pop("accept rate")
        out.append({**row, "R-hat (val, q95, max)": round(row["R-hat (val, q95, max)"], 4),
                    "ESS (val, median, min)": round(row["ESS (val, median, min)"]),
                    "MC SE of accuracy (points, max)":
                        round(row["MC SE of accuracy (points, max)"], 3),
                    "accept rate": f"{low:.2f}-{high:.2f}"})
    return pd.DataFrame(out)


def recipe_agreement(records: Sequence[Mapping], predictions) -> pd.DataFrame:
    """Does the paper's SGHMC recipe sample the posterior? Per size, over the seeds with both
    runs: the mean total variation distance between the recipe's and the reference's
    predictive distributions on the test points (0 = the same predictions) and the accuracy
    difference (points, recipe minus reference), from the stored predictions."""
    from .reference import total_variation

    runs: dict[tuple, dict] = {}
    for r in records:
        cfg = r.get("config") or {}
        if cfg.get("experiment") == "reference" and cfg["arm"] in ("reference", "head_sghmc"):
            runs.setdefault((int(cfg.get("n_train") or 0), int(r["seed"])), {})[cfg["arm"]] = r
    by_size: dict[int, list[tuple[float, float]]] = {}
    for (n, _), pair in runs.items():
        if len(pair) < 2:
            continue
        loaded = [predictions(pair[arm]) for arm in ("head_sghmc", "reference")]
        if any(p is None or "test" not in p for p in loaded):
            continue
        recipe, ref = (torch_probs(p["test"]) for p in loaded)
        accuracy = [headline_block(pair[arm])["accuracy"] for arm in ("head_sghmc", "reference")]
        by_size.setdefault(n, []).append((total_variation(recipe, ref),
                                          100 * (accuracy[0] - accuracy[1])))
    return pd.DataFrame([{"n_train": size_label(n), "seeds": len(v),
                          "total variation (mean)": round(float(np.mean([t for t, _ in v])), 4),
                          "accuracy, recipe - reference (points)":
                              round(float(np.mean([a for _, a in v])), 2)}
                         for n, v in sorted(by_size.items(), key=lambda kv: kv[0] or math.inf)])


def torch_probs(part: Mapping) -> object:
    """A stored split's probabilities as a float64 tensor."""
    import torch

    return torch.as_tensor(np.asarray(part["probs"], dtype=np.float64))


def reference_temperature_summary(records: Sequence[Mapping]) -> pd.DataFrame:
    """The reference posterior's temperature curve on the seeds that ran every temperature:
    per T, test error, NLL and ECE of the model average (mean ± standard error over those
    seeds) with the largest R-hat (95th percentile over validation points) and the smallest
    median ESS; the columns `plots.temperature_figure` draws."""
    frame = select(records_frame(list(records)), "reference") if records else pd.DataFrame()
    if frame.empty:
        return frame
    ref = frame[frame["arm"].str.startswith("reference")]
    curve_seeds = set(ref[ref["arm"] != "reference"]["seed"])
    ref = ref[ref["seed"].isin(curve_seeds)]
    if ref.empty:
        return pd.DataFrame()
    summary = summarize(ref, ["n_train", "temperature"], SHOWN_METRICS)
    diag = {(int(r["config"].get("n_train") or 0), r["config"]["train"]["temperature"]):
            (r.get("diagnostics") or {}).get("reference") for r in records
            if (r.get("config") or {}).get("experiment") == "reference"
            and r["seed"] in curve_seeds and (r.get("diagnostics") or {}).get("reference")}
    rhat, ess = {}, {}
    for key, d in diag.items():
        rhat[key] = max(rhat.get(key, 0.0), d["rhat_val_q95"])
        ess[key] = min(ess.get(key, math.inf), d["ess_val_median"])
    keys = list(zip(summary["n_train"].astype(int), summary["temperature"], strict=True))
    summary["rhat"] = [rhat.get(k, math.nan) for k in keys]
    summary["ess"] = [ess.get(k, math.nan) for k in keys]
    summary["draws"] = [next((d["draws_per_chain"] for kk, d in diag.items() if kk == k), None)
                        for k in keys]
    return summary.sort_values(["n_train", "temperature"]).reset_index(drop=True)
