"""Several chains of one sampler run pooled into one record, with their convergence diagnostics
(and a deep ensemble's members pooled the same way).

A sampler's final run (`experiments.inference.chains`) and the temperature experiment's runs
are chains: the same training subset, prior and settings, each with its own batch order, head
initialisation and noise. Pooled, their model averages give the run's prediction (every chain
averages the same number of samples, so the pooled average weighs every sample equally), and
their per-sample draws say whether they converged:

- `rhat_loglik`, `ess_loglik`: rank-normalised split R-hat and bulk ESS (`mcmc`) of each sample's
  test log-likelihood (minus its mean test NLL), over the chains;
- `rhat_points_q95`, `ess_points_median`: the same per test point, of each sample's probability
  of the true class on a fixed subset of the test points (`engine.diagnostic_points`): the 95th
  percentile of the R-hats and the median of the ESSs over the points;
- `rhat` = the larger of the two R-hats, `ess` = the smaller of the two ESSs: what gates a claim
  (`RHAT_MAX`, `ESS_MIN`);
- `rhat_val_points_q95`, `ess_val_points_median`: the same per validation point (the engine keeps
  them for runs scored on a test set and a validation set), beside the gate: diagnostics that
  need no test labels.

Nothing here reads a file: per-test-point arrays come from a `predictions(record)` loader
(`study.predictions`), and without them only the log-likelihood diagnostics are computed and
the metrics are the chains' mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..vocabulary import DEEP_ENSEMBLE, METRICS, SAMPLER_METHODS
from .convergence import MIN_DRAWS, bulk_ess, rank_rhat
from .metrics import classification_metrics, reliability_bins

RHAT_MAX = 1.05  # Vehtari et al.'s lenient threshold
REFERENCE_RHAT_MAX = 1.01  # their strict one: the reference posterior's gate (`reference`)
ESS_MIN = 100  # bulk ESS over all chains
Loader = Callable[[Mapping[str, Any]], dict | None]


def _group_key(record: Mapping[str, Any]) -> tuple | None:
    """The run several chains belong to, or None for a record that is not a chain."""
    cfg = record.get("config") or {}
    chained = cfg.get("experiment") == "temperature" or (
        cfg.get("phase") == "final" and (cfg.get("method") in SAMPLER_METHODS
                                         or cfg.get("arm") == DEEP_ENSEMBLE))
    if not chained:
        return None
    return (cfg["experiment"], cfg["arm"], cfg.get("n_train"), cfg["seed"],
            cfg["train"].get("temperature"))


def combine_chains(records: Sequence[Mapping[str, Any]], predictions: Loader | None = None
                   ) -> list[dict]:
    """The records with every group of chains replaced by one pooled record (in the place of
    its first chain): `chains` (how many were pooled), metrics of the pooled prediction (or
    the chains' mean metrics without per-point predictions), and `diagnostics.convergence`.
    A group with a diverged chain is represented by that diverged chain."""
    groups: dict[tuple, list[Mapping]] = {}
    for record in records:
        key = _group_key(record)
        if key is not None:
            groups.setdefault(key, []).append(record)
    out, done = [], set()
    for record in records:
        key = _group_key(record)
        if key is None:
            out.append(dict(record))
        elif key not in done:
            done.add(key)
            out.append(pool_chains(groups[key], predictions))
    return out


def pool_chains(chains: Sequence[Mapping[str, Any]], predictions: Loader | None = None) -> dict:
    """One record for several chains of one run (see `combine_chains`)."""
    chains = sorted(chains, key=lambda r: r["config"].get("chain", 0))
    diverged = [r for r in chains if r.get("status") != "ok"]
    if diverged:
        return {**diverged[0], "chains": len(chains)}
    loaded = [predictions(r) if predictions else None for r in chains]
    pooled = dict(chains[0])
    pooled["chains"] = len(chains)
    pooled["n_samples"] = sum(r.get("n_samples") or 0 for r in chains)
    if all(p and "test" in p for p in loaded):
        _pooled_metrics(pooled, loaded)
    else:
        for split in ("metrics", "val_metrics"):
            pooled[split] = _mean_metrics([r[split] for r in chains])
    pooled["diagnostics"] = {**(chains[0].get("diagnostics") or {}),
                             "convergence": convergence(chains, loaded)}
    return pooled


def _pooled_metrics(pooled: dict, loaded: Sequence[dict]) -> None:
    """Metrics, reliability bins and in-memory predictions of the chains' pooled average."""
    head = "bma" if pooled["metrics"].get("bma") else "final"
    arrays: dict[str, dict] = {}
    for split, key in (("test", "metrics"), ("val", "val_metrics")):
        if not all(split in p for p in loaded):
            continue
        probs = np.mean([p[split]["probs"] for p in loaded], axis=0)
        labels = loaded[0][split]["labels"]
        arrays[split] = {"probs": probs, "labels": labels}
        metrics = classification_metrics(torch.from_numpy(probs).double(),
                                          torch.from_numpy(labels))
        pooled[key] = {**pooled[key], head: metrics}
        if split == "test":
            pooled["reliability"] = {**(pooled.get("reliability") or {}),
                                     head: reliability_bins(torch.from_numpy(probs).double(),
                                                            torch.from_numpy(labels))}
    pooled["_predictions"] = arrays  # for analyses of this pooled record (never written)


def _mean_metrics(blocks: Sequence[Mapping]) -> dict:
    """The chains' metrics averaged, block by block (when their predictions are not at hand)."""
    out = {}
    for part in ("final", "bma"):
        values = [b.get(part) for b in blocks]
        if any(v is None for v in values):
            out[part] = None
            continue
        out[part] = {k: float(np.mean([v[k] for v in values]))
                     for k in METRICS}
    return out


def convergence(chains: Sequence[Mapping[str, Any]], loaded: Sequence[dict | None]) -> dict:
    """R-hat and bulk ESS of the chains' draws (see the module docstring); None where the
    chains are too few (2) or too short (4 samples) to say."""
    out: dict[str, Any] = {"n_chains": len(chains), "rhat": None, "ess": None}
    nll = [(r.get("diagnostics") or {}).get("sample_test_nll") for r in chains]
    lengths = {len(x) for x in nll if x}
    if len(lengths) == 1:
        out["draws_per_chain"] = next(iter(lengths))
    if len(chains) < 2 or None in nll or len(lengths) != 1 or lengths.pop() < MIN_DRAWS:
        return out
    loglik = -np.asarray(nll, dtype=float)
    out.update(rhat_loglik=float(rank_rhat(loglik)),
               ess_loglik=float(bulk_ess(loglik)),
               traces=[list(map(float, x)) for x in nll])  # each chain's sample test NLLs
    rhats, esses = [out["rhat_loglik"]], [out["ess_loglik"]]
    test = _per_point(loaded, "test")
    if test is not None:
        out.update(rhat_points_q95=test[0], ess_points_median=test[1], n_points=test[2])
        rhats.append(out["rhat_points_q95"])
        esses.append(out["ess_points_median"])
    val = _per_point(loaded, "val")
    if val is not None:  # beside the gate: what a verdict could read without the test set
        out.update(rhat_val_points_q95=val[0], ess_val_points_median=val[1],
                   n_val_points=val[2])
    out["rhat"], out["ess"] = max(rhats), min(esses)
    return out


def _per_point(loaded: Sequence[dict | None], split: str) -> tuple[float, float, int] | None:
    """95th percentile of the per-point R-hats, median of the per-point ESSs and the number of
    points, of every chain's per-sample true-class probabilities on `split`'s diagnostic
    points; None where a chain has none, or their shapes differ, or no point varies."""
    points = [p[split].get("sample_true_probs") if p and split in p else None for p in loaded]
    if any(x is None for x in points) or len({x.shape for x in points}) != 1:
        return None
    draws = np.stack(points).astype(float)  # (chains, samples, points)
    varying = draws.std(axis=(0, 1)) > 0  # a constant point has no R-hat
    if not varying.any():
        return None
    per_rhat, per_ess = rank_rhat(draws[..., varying]), bulk_ess(draws[..., varying])
    return (float(np.quantile(per_rhat, 0.95)), float(np.median(per_ess)),
            int(varying.sum()))


def converged(record: Mapping[str, Any]) -> bool | None:
    """Whether a pooled record's chains converged (R-hat <= RHAT_MAX and ESS >= ESS_MIN); None
    for a record without diagnostics (not a sampler, or too few draws)."""
    conv = (record.get("diagnostics") or {}).get("convergence") or {}
    if conv.get("rhat") is None or conv.get("ess") is None:
        return None
    return conv["rhat"] <= RHAT_MAX and conv["ess"] >= ESS_MIN
