"""Chains of one sampler run pooled into one record, with R-hat and bulk ESS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bprior_core.analysis.chains import combine_chains, converged, pool_chains
from bprior_core.analysis.metrics import classification_metrics


def chain_record(chain: int, draws: np.ndarray, seed: int = 0, arm: str = "sghmc+learned",
                 status: str = "ok") -> dict:
    """A final sampler record of one chain whose per-sample test NLLs are `draws`."""
    metrics = {"accuracy": 0.5 + 0.1 * chain, "nll": 1.0, "ece": 0.1, "brier": 0.6}
    return {"id": f"{arm}-{seed}-{chain}", "seed": seed, "status": status,
            "config": {"experiment": "inference", "arm": arm, "method": "sghmc", "n_train": 10,
                       "seed": seed, "chain": chain, "phase": "final",
                       "train": {"temperature": 1.0}},
            "metrics": {"final": metrics, "bma": metrics},
            "val_metrics": {"final": metrics, "bma": metrics}, "n_samples": len(draws),
            "diagnostics": {"sample_test_nll": list(map(float, draws))}}


def predictions_for(records, n: int = 60, points: int = 20, shift: float = 0.0,
                    val_shift: float | None = None):
    """Per-record test and val predictions (random, seeded by the chain) and per-sample
    probabilities of the true class on `points` points, shifted by chain x `shift`; with
    `val_shift`, on validation points too (shifted by chain x `val_shift`)."""
    out = {}
    for r in records:
        c = r["config"]["chain"]
        rng = np.random.default_rng(c)
        probs = rng.dirichlet(np.ones(5), size=n).astype(np.float32)
        draws = np.clip(rng.uniform(0.2, 0.8, size=(len(r["diagnostics"]["sample_test_nll"]),
                                                    points)) + shift * c, 0, 1)
        out[r["id"]] = {"test": {"probs": probs, "labels": np.arange(n) % 5,
                                 "sample_true_probs": draws, "sample_points": np.arange(points)},
                        "val": {"probs": probs[:10], "labels": np.arange(10) % 5}}
        if val_shift is not None:
            val_draws = np.clip(rng.uniform(0.2, 0.8, size=(draws.shape[0], 10))
                                + val_shift * c, 0, 1)
            out[r["id"]]["val"].update(sample_true_probs=val_draws,
                                       sample_points=np.arange(10))
    return lambda record: out.get(record["id"])


def test_pooled_metrics_are_those_of_the_averaged_prediction() -> None:
    rng = np.random.default_rng(0)
    records = [chain_record(c, rng.normal(1.0, 0.1, 30)) for c in range(4)]
    loader = predictions_for(records)
    pooled = pool_chains(records, loader)
    probs = np.mean([loader(r)["test"]["probs"] for r in records], axis=0)
    expected = classification_metrics(torch.from_numpy(probs).double(),
                                      torch.from_numpy(np.arange(60) % 5))
    assert pooled["metrics"]["bma"] == pytest.approx(expected)
    assert pooled["chains"] == 4 and pooled["n_samples"] == 120
    assert sum(pooled["reliability"]["bma"]["count"]) == 60
    assert pooled["_predictions"]["test"]["probs"].shape == (60, 5)


def test_agreeing_chains_converge_and_shifted_ones_do_not() -> None:
    rng = np.random.default_rng(1)
    same = [chain_record(c, rng.normal(1.0, 0.1, 60)) for c in range(4)]
    good = pool_chains(same, predictions_for(same))["diagnostics"]["convergence"]
    assert good["rhat"] < 1.05 and good["ess"] > 100 and converged(
        {"diagnostics": {"convergence": good}})
    assert good["rhat_points_q95"] < 1.1 and good["n_points"] == 20
    apart = [chain_record(c, rng.normal(1.0 + 0.5 * c, 0.1, 60)) for c in range(4)]
    bad = pool_chains(apart, predictions_for(apart))["diagnostics"]["convergence"]
    assert bad["rhat"] > 1.5 and not converged({"diagnostics": {"convergence": bad}})
    points_apart = predictions_for(same, shift=0.3)
    by_points = pool_chains(same, points_apart)["diagnostics"]["convergence"]
    assert by_points["rhat_loglik"] < 1.05 and by_points["rhat"] > 1.5  # the points catch it


def test_validation_points_are_diagnosed_beside_the_gate() -> None:
    """Per-point R-hat and ESS on the validation points are computed as on the test points
    (rank-normalised split R-hat per point, the 95th percentile) and do not enter the gate."""
    from bprior_core.analysis.convergence import rank_rhat

    rng = np.random.default_rng(3)
    same = [chain_record(c, rng.normal(1.0, 0.1, 60)) for c in range(4)]
    loader = predictions_for(same, val_shift=0.3)
    conv = pool_chains(same, loader)["diagnostics"]["convergence"]
    draws = np.stack([loader(r)["val"]["sample_true_probs"] for r in same])
    assert conv["rhat_val_points_q95"] == pytest.approx(
        float(np.quantile(rank_rhat(draws), 0.95)))
    assert conv["rhat_val_points_q95"] > 1.5 and conv["n_val_points"] == 10
    assert conv["rhat"] < 1.1  # the gate reads the test points and the log-likelihood
    plain = pool_chains(same, predictions_for(same))["diagnostics"]["convergence"]
    assert "rhat_val_points_q95" not in plain


def test_without_predictions_the_chains_mean_metrics_and_loglik_diagnostics() -> None:
    rng = np.random.default_rng(2)
    records = [chain_record(c, rng.normal(1.0, 0.1, 30)) for c in range(4)]
    pooled = pool_chains(records)
    assert pooled["metrics"]["bma"]["accuracy"] == pytest.approx(0.65)
    conv = pooled["diagnostics"]["convergence"]
    assert conv["rhat"] == conv["rhat_loglik"] and "rhat_points_q95" not in conv
    too_short = pool_chains([chain_record(c, [1.0, 1.1]) for c in range(4)])
    assert converged(too_short) is None


def test_combine_chains_pools_each_run_in_place_and_keeps_the_rest() -> None:
    rng = np.random.default_rng(3)
    sgd = {**chain_record(0, [1.0]), "id": "sgd"}
    sgd["config"] = {**sgd["config"], "method": "sgd_prior", "arm": "sgd+learned"}
    runs = [chain_record(c, rng.normal(1, 0.1, 8), seed=s) for s in (0, 1) for c in range(4)]
    diverged = chain_record(2, [1.0] * 8, seed=1, status="diverged")
    out = combine_chains([sgd, *runs[:6], diverged, runs[7]])
    assert [r["id"] for r in out] == ["sgd", runs[0]["id"], diverged["id"]]
    assert out[1]["chains"] == 4 and out[2]["status"] == "diverged"


def test_the_convergence_table_and_traces_summarise_pooled_runs() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from bprior_core import tables
    from bprior_core.report import plots

    rng = np.random.default_rng(4)
    pooled = [pool_chains([chain_record(c, rng.normal(1.0 + shift * c, 0.1, 40), seed=s)
                           for c in range(4)])
              for s, shift in ((0, 0.0), (1, 0.0), (2, 0.5))]
    table = tables.convergence_table(pooled)
    (row,) = table.to_dict("records")
    assert row["chains"] == 4 and row["samples per chain"] == 40 and row["seeds"] == 3
    assert row["seeds converged"] == 2 and row["R-hat (max)"] > 1.5
    fig = plots.trace_figure(pooled, max_runs=2)
    assert fig is not None and len(fig.axes) == 2 and len(fig.axes[0].lines) == 4
    assert tables.convergence_table([chain_record(0, [1.0])]).empty
    assert plots.trace_figure([chain_record(0, [1.0])]) is None


def test_a_claim_on_chains_too_short_for_r_hat_says_why_beside_its_verdict() -> None:
    """4 chains of 3 draws have no R-hat: the verdict stands (C4 judges the procedure) and the
    line beside it says why the samples are not a converged posterior."""
    from bprior_core.claims.pairs import _describe_convergence

    rng = np.random.default_rng(2)
    chains = [chain_record(c, rng.normal(1.0 + 0.5 * c, 0.1, 3)) for c in range(4)]
    pooled = pool_chains(chains, predictions_for(chains))
    claim = {"verdict": "inconclusive", "summary": "effect.", "evidence": {}}
    out = _describe_convergence(claim, [pooled], ["sghmc+learned"])
    assert out["verdict"] == "inconclusive"
    assert "3 draws per chain, fewer than the 4 R-hat needs" in out["summary"]
    assert out["evidence"]["convergence_note"].startswith("The samples are not from a converged")
