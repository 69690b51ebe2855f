"""Tables of the samplers as samplers: temperature, chains and their R-hat and ESS, and the
reference posterior against the samplers and SGD on the same head."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..analysis.convergence import split_rhat
from ..analysis.records import headline_block
from ..formatting import size_label
from ..vocabulary import SHOWN_METRICS
from .frames import display_table, records_frame, select, summarize


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


VAL_RHAT = "R-hat, validation points (max)"


def convergence_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """Per experiment, arm and size (and temperature), over the seeds of the pooled chain
    records (`chains.combine_chains`): chains, samples per chain, the largest R-hat and the
    smallest bulk ESS, how many seeds converged (R-hat <= RHAT_MAX, ESS >= ESS_MIN), and the
    largest per-point R-hat on the validation points (beside the gate; empty where not kept)."""
    from ..analysis.chains import converged

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
                                    "seeds converged": 0, "seeds": 0,
                                    VAL_RHAT: None})
        row["seeds"] += 1
        row["seeds converged"] += bool(converged(r))
        for name, value, pick in (("R-hat (max)", conv.get("rhat"), max),
                                  ("bulk ESS (min)", conv.get("ess"), min),
                                  (VAL_RHAT, conv.get("rhat_val_points_q95"), max)):
            if value is not None:
                row[name] = value if row[name] is None else pick(row[name], value)
    if not rows:
        return pd.DataFrame()
    for row in rows.values():
        for name, digits in (("R-hat (max)", 3), ("bulk ESS (min)", 0)):
            row[name] = (round(row[name], digits) if row[name] is not None
                         else too_short_text(row["chains"], row["samples per chain"]))
        row[VAL_RHAT] = "" if row[VAL_RHAT] is None else round(row[VAL_RHAT], 3)
    frame = pd.DataFrame(sorted(rows.values(), key=lambda r: (r["experiment"], r["arm"],
                                                              r["n_train"] or math.inf)))
    frame["n_train"] = [str(int(n)) if n else "full" for n in frame["n_train"]]
    return frame


def too_short_text(chains: int | None, draws: int | None) -> str:
    """Why a chain set has no R-hat or ESS, in words."""
    from ..analysis.convergence import MIN_DRAWS

    if not chains or chains < 2:
        return "not computed: one chain (R-hat needs 2 or more)"
    return (f"not computed: {draws or 0} draws per chain (R-hat needs {MIN_DRAWS} or more)")


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
    from ..posterior.reference import total_variation

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
