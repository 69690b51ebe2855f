"""Tests for bprior_core.claims: statistics against scipy, verdicts on hand-made record sets."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from scipy import stats

from bprior_core import claims as claims_module
from bprior_core.claims import (
    CLAIM_IDS,
    evaluate_claims,
    evaluate_claims_by_metric,
    headline,
    write_claims_json,
)

# Per-seed noise, rotated by an arm/size index so that paired differences vary across seeds but
# average exactly to the intended effect (every arm sees the same five noise values).
NOISE = (0.0, 0.004, -0.003, 0.002, -0.001)
SEEDS = (0, 1, 2, 3, 4)

RANK_OFFSET = {0: 0.0, 1: 0.04, 2: 0.06, 3: 0.061, 4: 0.06, 5: 0.06}
SCALE_OFFSET = {1.0: 0.0, 1e2: 0.10, 1e4: 0.20, 1e6: 0.15, 1e9: 0.05}
SIZES = (5, 50, 0)  # 0 = full training set, the largest size
BASE = {5: 0.20, 50: 0.50, 0: 0.80}
LEARNED_GAIN = {5: 0.10, 50: 0.06, 0: 0.03}
ARM_INDEX = {"sgd": 0, "sgd+learned": 1, "sghmc+learned": 2, "sgd+zero": 3, "sghmc+zero": 4,
             "sgd+isotropic": 5, "sghmc+isotropic": 6}


def arm_offset(arm: str, n: int) -> float:
    """Effects built into the 'all claims hold' world (k = +1)."""
    return {"sgd": 0.0, "sgd+zero": 0.0, "sghmc+zero": 0.01, "sgd+isotropic": 0.02,
            "sghmc+isotropic": 0.03, "sgd+learned": LEARNED_GAIN[n],
            "sghmc+learned": LEARNED_GAIN[n] + 0.04}[arm]


def record(experiment: str, arm: str, seed: int, acc: float, *, prior: dict | None = None,
           n_train: int = 50, status: str = "ok", bma: bool = False) -> dict:
    """One result record in the study's format; nll = 2 - accuracy (better acc = lower nll)."""
    block = {"accuracy": acc, "nll": 2.0 - acc, "ece": 0.05, "brier": 0.5}
    metrics = {"final": block, "bma": dict(block) if bma else None}
    if status != "ok":
        metrics = {"final": None, "bma": None}
    method = "sghmc" if arm.startswith("sghmc") else "sgd"
    config = {"experiment": experiment, "arm": arm, "method": method,
              "prior": prior or {"kind": "none", "source": "ssl"}, "n_train": n_train,
              "seed": seed}
    return {"id": f"{experiment}-{arm}-{n_train}-{seed}", "status": status, "seed": seed,
            "config": config, "metrics": metrics}


def noise(seed: int, index: int) -> float:
    """Two rotations of NOISE: distinct for indices 0..24, same multiset of values per index."""
    return NOISE[(seed + index) % 5] + NOISE[(2 * seed + index // 5) % 5] / 2


def world(k: float = 1.0, seeds: tuple[int, ...] = SEEDS) -> list[dict]:
    """All three experiments; k = 1 the claims hold, -1 effects reversed, 0 flat."""
    out = []
    for i, (rank, off) in enumerate(RANK_OFFSET.items()):
        prior = {"kind": "learned", "source": "ssl", "rank": rank, "scale": 1e5}
        out += [record("rank", f"rank={rank}", s, 0.70 + k * off + noise(s, i), prior=prior)
                for s in seeds]
    for source, base in (("ssl", 0.5), ("supervised", 0.55)):
        for i, (scale, off) in enumerate(SCALE_OFFSET.items()):
            prior = {"kind": "learned", "source": source, "rank": 5, "scale": scale}
            out += [record("scale", f"{source}@{scale:g}", s, base + k * off + noise(s, i),
                           prior=prior) for s in seeds]
    for j, n in enumerate(SIZES):
        for arm, i in ARM_INDEX.items():
            bma, acc = arm.startswith("sghmc"), BASE[n] + k * arm_offset(arm, n)
            out += [record("inference", arm, s, acc + noise(s, 3 * i + j), n_train=n, bma=bma)
                    for s in seeds]
    return out


def verdicts(records: list[dict], metric: str = "accuracy",
             margin: float | None = None) -> dict[str, str]:
    margins = None if margin is None else {metric: margin}
    return {c["id"]: c["verdict"] for c in evaluate_claims(records, metric, margins)}


def by_id(claims: list[dict]) -> dict[str, dict]:
    return {c["id"]: c for c in claims}


# ----------------------------------------------------------------------------- statistics


def test_margin_reaches_every_comparison_and_the_evidence():
    flat = world(0.0)
    for metric, margin in (("accuracy", 0.01), ("nll", 0.02)):
        for claim in evaluate_claims(flat, metric):
            assert claim["evidence"]["margin"] == margin
    wide = by_id(evaluate_claims(flat, margins={"accuracy": 5.0}))
    assert all(c["evidence"]["margin"] == 5.0 for c in wide.values())
    with pytest.raises(ValueError, match="margin must be > 0"):
        evaluate_claims(flat, margins={"accuracy": 0.0})


def test_headline_prefers_bma_and_skips_diverged():
    r = record("inference", "sghmc+learned", 0, 0.6, bma=True)
    r["metrics"]["bma"]["accuracy"] = 0.9
    assert headline(r) == 0.9
    assert headline(record("inference", "sgd", 0, 0.6)) == 0.6
    assert headline(record("inference", "sgd", 0, 0.6), "nll") == pytest.approx(1.4)
    assert headline(record("inference", "sgd", 0, 0.6, status="diverged")) is None
    with pytest.raises(ValueError):
        headline(r, "f1")


def test_headline_bma_drives_verdict():
    # Final iterates say SGHMC + learned loses to SGD + learned; the BMA says it wins.
    recs = [r for r in world() if r["config"]["arm"] in ("sgd+learned", "sghmc+learned")]
    for r in recs:
        if r["config"]["arm"] == "sghmc+learned":
            r["metrics"]["final"] = {**r["metrics"]["final"], "accuracy": 0.0}
    assert verdicts(recs)["C4"] == "supported"


# ----------------------------------------------------------------------------- verdicts


def test_all_claims_supported():
    assert verdicts(world(1.0)) == dict.fromkeys(CLAIM_IDS, "supported")


def test_reversed_effects_contradicted():
    assert verdicts(world(-1.0)) == dict.fromkeys(CLAIM_IDS, "contradicted")


def test_flat_world_not_supported_or_inconclusive_by_margin():
    """No effect anywhere: "not supported" when every interval stays below the margin, and
    "inconclusive" when the margin is smaller than the intervals' reach."""
    assert verdicts(world(0.0), margin=0.2) == dict.fromkeys(CLAIM_IDS, "not supported")
    assert verdicts(world(0.0), margin=1e-6) == dict.fromkeys(CLAIM_IDS, "inconclusive")


def test_two_seeds_inconclusive():
    assert verdicts(world(1.0, seeds=(0, 1))) == dict.fromkeys(CLAIM_IDS, "inconclusive")


def test_nll_direction():
    # nll = 2 - accuracy, so every claim that holds for accuracy holds for NLL (lower is better).
    assert verdicts(world(1.0), "nll") == dict.fromkeys(CLAIM_IDS, "supported")
    assert verdicts(world(-1.0), "nll") == dict.fromkeys(CLAIM_IDS, "contradicted")
    c3 = by_id(evaluate_claims(world(1.0), "nll"))["C3"]["evidence"]
    assert c3["higher_is_better"] is False
    assert c3["effect"] == pytest.approx(np.mean(list(LEARNED_GAIN.values())))


def test_reproduction_like_world():
    # Rank flat; scale rises then plateaus (no fall); Bayes ~ SGD; learned >> zero.
    recs = world(0.0)
    for r in recs:
        cfg, acc = r["config"], r["metrics"]["bma"] or r["metrics"]["final"]
        if cfg["experiment"] == "scale":
            acc["accuracy"] += min(math.log10(cfg["prior"]["scale"]), 4) * 0.05
        if cfg["experiment"] == "inference" and cfg["arm"].endswith("learned"):
            acc["accuracy"] += LEARNED_GAIN[cfg["n_train"]]
    v = verdicts(recs, margin=0.2)  # a margin the synthetic noise stays under
    assert v["C1"] == "not supported"  # (a) no rank effect
    c2 = by_id(evaluate_claims(recs, margins={"accuracy": 0.2}))["C2"]
    for parts in c2["evidence"]["sources"].values():
        assert [parts[p]["verdict"] for p in "abc"] == ["supported", "supported",
                                                       "not supported"]
    assert v["C2"] == "not supported"
    assert v["C3"] == "supported" and v["C5"] == "supported"
    assert v["C4"] == "not supported" and v["C4b"] == "not supported"


def test_diverged_runs_ignored_and_counted():
    recs = world(1.0)
    for r in recs:
        cfg = r["config"]
        if cfg["experiment"] == "inference" and cfg["arm"] == "sgd+zero" and r["seed"] == 4:
            r["status"], r["metrics"] = "diverged", {"final": None, "bma": None}
    claims = by_id(evaluate_claims(recs))
    c3 = claims["C3"]["evidence"]
    assert claims["C3"]["verdict"] == "supported"
    assert c3["n_diverged"] == 3 and c3["n_seeds"] == 4
    assert [row["n_seeds"] for row in c3["per_size"]] == [4, 4, 4]
    assert claims["C4"]["evidence"]["n_diverged"] == 0


def test_missing_experiment_inconclusive():
    only_rank = [r for r in world(1.0) if r["config"]["experiment"] == "rank"]
    # a wide margin: the saturation comparisons (effects of 0.001) are then too small to matter
    claims = by_id(evaluate_claims(only_rank, margins={"accuracy": 0.05}))
    assert claims["C1"]["verdict"] == "supported"
    for cid in CLAIM_IDS[1:]:
        assert claims[cid]["verdict"] == "inconclusive"
        assert "reason" in claims[cid]["evidence"]


# ----------------------------------------------------------------------------- output


def test_output_json_and_fields(tmp_path):
    claims = evaluate_claims(world(1.0))
    assert [c["id"] for c in claims] == list(CLAIM_IDS)
    json.dumps(claims, allow_nan=False)
    keys = {"id", "title", "statement", "paper", "reproduction", "verdict", "rule", "evidence",
            "summary"}
    for c in claims:
        assert set(c) == keys
        assert {"metric", "n_diverged"} <= set(c["evidence"])
    c3 = by_id(claims)["C3"]
    assert "points accuracy" in c3["summary"] and "sizes 5-full" in c3["summary"]
    assert c3["evidence"]["sizes"] == [5, 50, 0]
    path = write_claims_json(claims, tmp_path / "out" / "claims.json")
    assert json.loads(path.read_text()) == claims
    assert [p.name for p in path.parent.iterdir()] == ["claims.json"]


def test_output_has_no_nan_with_missing_data():
    claims = evaluate_claims(world(1.0, seeds=(0,)))
    text = json.dumps(claims, allow_nan=False)
    assert "NaN" not in text


def test_sgld_bayes_arm_detected():
    recs = world(1.0)
    for r in recs:
        r["config"]["arm"] = r["config"]["arm"].replace("sghmc", "sgld")
    claims = by_id(evaluate_claims(recs))
    assert claims["C4"]["verdict"] == "supported"
    assert claims["C4"]["evidence"]["arms"] == ["sgld+learned", "sgd+learned"]
    assert claims["C5"]["evidence"]["parts"][0]["arms"] == ["sgld+learned", "sgld+zero"]


def test_ensemble_control_separates_bayes_from_averaging():
    """C4 needs the sampler to beat the T = 0 snapshot ensemble too, where the profile has it."""
    recs = world(1.0)
    ensemble = [copy.deepcopy(r) for r in recs if r["config"]["arm"] == "sghmc+learned"]
    for r in ensemble:
        r["config"]["arm"] = "ensemble+learned"
    c4 = by_id(evaluate_claims(recs + ensemble))["C4"]
    assert c4["verdict"] == "not supported"  # no gain beyond the ensemble's
    assert c4["evidence"]["ensemble_control"]["arms"] == ["sghmc+learned", "ensemble+learned"]
    for r in ensemble:
        r["metrics"]["bma"]["accuracy"] -= 0.2
    assert by_id(evaluate_claims(recs + ensemble))["C4"]["verdict"] == "supported"


def test_claims_carry_their_verdicts_on_nll_and_ece():
    claims = evaluate_claims_by_metric(world(1.0))
    assert [c["id"] for c in claims] == list(CLAIM_IDS)
    for c in claims:
        by_metric = c["evidence"]["by_metric"]
        assert set(by_metric) == {"nll", "ece"}
        assert by_metric["nll"]["verdict"] == "supported"  # nll = 2 - accuracy in this world
        assert by_metric["nll"]["margin"] == 0.02
    json.dumps(claims)


def test_gains_by_size_lists_every_pooled_comparison_per_size():
    rows = claims_module.gains_by_size(evaluate_claims(world(1.0)))
    c3 = [r for r in rows if r["claim"] == "C3"]
    assert sorted(r["n_train"] for r in c3) == sorted(SIZES)
    for r in c3:
        assert r["effect"] == pytest.approx(LEARNED_GAIN[r["n_train"]], abs=0.05)
        assert r["ci_low"] <= r["effect"] <= r["ci_high"]


def test_data_efficiency_is_the_slope_of_the_gain_in_log_n():
    """Gain 10 points at n = 5 falling 5 points per decade: C5's effect is +0.05 per decade
    exactly (the seeds' noise is shared by both arms and cancels); the full set is left out."""
    recs = []
    for seed, noise in zip((0, 1, 2, 3), (0.01, -0.02, 0.005, 0.0), strict=True):
        for n in (5, 50, 500, 0):
            gain = 0.1 - 0.05 * math.log10(n / 5) if n else 0.3  # the full set is not fitted
            for arm, extra in (("sghmc+learned", gain), ("sghmc+zero", 0.0)):
                recs.append(record("inference", arm, seed, 0.5 + extra + noise + 0.001 * seed * n,
                                   n_train=n, bma=True))
    claim = claims_module.claim_data_efficiency(recs)
    part = claim["evidence"]["parts"][0]
    assert part["sizes_fitted"] == [5, 50, 500]
    assert claim["evidence"]["effect"] == pytest.approx(0.05, abs=1e-9)
    assert claim["verdict"] == "supported"


# ----------------------------------------------------------------------------- Holm, C2, C3


def c3_records(differences: list[float]) -> list[dict]:
    out = []
    for seed, d in enumerate(differences):
        out.append(record("inference", "sgd+zero", seed, 0.6 + 0.01 * seed))
        out.append(record("inference", "sgd+learned", seed, 0.6 + 0.01 * seed + d))
    return out


def test_a_simple_claims_p_value_is_its_t_test_p_value():
    d = [0.01, 0.03, -0.005, 0.02, 0.015]
    p = claims_module.claim_p_value(claims_module.claim_loss_surface, c3_records(d),
                                    "accuracy", 0.01)
    assert p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-3)


def test_claims_are_judged_at_their_holm_level():
    out = by_id(evaluate_claims(c3_records([0.01, 0.03, -0.005, 0.02, 0.015])))
    holm = out["C3"]["evidence"]["holm"]
    # only C3 has data: the others have p = 1, so C3 is first and judged at 1 - 0.05 / 7
    assert holm["family"] == 7 and holm["level"] == pytest.approx(1 - 0.05 / 7)
    assert out["C3"]["evidence"]["level"] == pytest.approx(holm["level"])
    # p = 0.058 > 0.05 / 7: the interval at the adjusted level contains 0 and reaches the margin
    assert out["C3"]["verdict"] == "inconclusive"
    assert verdicts(c3_records([0.02, 0.021, 0.019, 0.0205, 0.0195]))["C3"] == "supported"


def test_c3_compares_with_the_tuned_zero_mean_prior_not_plain_sgd():
    recs = c3_records([0.02, 0.021, 0.019, 0.0205, 0.0195])
    recs += [record("inference", "sgd", s, 0.99) for s in SEEDS]  # plain sgd would win
    c3 = by_id(evaluate_claims(recs))["C3"]
    assert c3["evidence"]["arms"] == ["sgd+learned", "sgd+zero"]
    assert c3["verdict"] == "supported"


def scale_record(rule: str, eps: float, scale: float | None, seed: int, acc: float) -> dict:
    prior = ({"kind": "none", "source": "ssl"} if scale is None else
             {"kind": "learned", "source": "ssl", "rank": 5, "scale": scale, "rule": rule,
              "eps": eps})
    r = record("scale", "scratch" if scale is None else f"ssl@{scale:g}", seed, acc, prior=prior)
    if scale is None:
        r["config"]["init"] = "scratch"
    return r


def test_c2_judges_the_profile_convention_and_reports_the_others_and_scratch():
    rising = {1.0: 0.0, 1e2: 0.1, 1e4: 0.2, 1e6: 0.15}
    recs = []
    for s in SEEDS:
        for scale, off in rising.items():
            recs.append(scale_record("same", 0.0, scale, s, 0.5 + off + noise(s, 0)))
            recs.append(scale_record("authors", 0.1, scale, s, 0.7 + noise(s, 1)))  # flat
        recs.append(scale_record("", 0.0, None, s, 0.6 + noise(s, 2)))
    same = by_id(evaluate_claims(recs, convention=("same", 0.0)))["C2"]
    authors = by_id(evaluate_claims(recs, convention=("authors", 0.1)))["C2"]
    assert same["evidence"]["convention"] == "same, eps 0"
    assert authors["evidence"]["convention"] == "authors, eps 0.1"
    assert set(same["evidence"]["by_convention"]) == {"same, eps 0", "authors, eps 0.1"}
    assert same["evidence"]["sources"]["ssl"]["a"]["verdict"] == "supported"
    assert authors["evidence"]["sources"]["ssl"]["a"]["verdict"] != "supported"
    # un-rescaled (0.5) vs from scratch (0.6): the un-rescaled prior is 10 points worse
    scratch = same["evidence"]["sources"]["ssl"]["scratch"]
    assert scratch["effect"] == pytest.approx(-0.1, abs=0.01)
    assert "from scratch" in same["summary"]
