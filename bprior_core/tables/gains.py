"""Paired gains over seeds against a baseline arm, per prior draw and per size, and the
reliability bins behind the calibration figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from ..analysis import paired
from ..analysis.records import headline_name
from ..formatting import format_level, size_label
from ..vocabulary import FIGURE_METRICS, SGD_ZERO
from .frames import records_frame, select


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


