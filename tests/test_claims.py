"""Tests for bprior_core.claims: statistics against scipy, verdicts on hand-made record sets."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from scipy import stats

from bprior_core import claims as claims_module
from bprior_core.analysis import bootstrap, metrics, paired
from bprior_core.claims import (
    CLAIM_IDS,
    FAMILY_IDS,
    evaluate_claims,
    evaluate_claims_by_metric,
    headline,
    write_claims_json,
)
from bprior_core.claims.inference import claim_data_efficiency, claim_isotropic, claim_loss_surface
from bprior_core.study.predictions import read_predictions, write_predictions

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
# the positive control at n = 10: the oracle prior 10 points over the zero-mean prior, 5 over
# the isotropic one
CONTROL_OFFSET = {"sgd+learned": 0.10, "sgd+zero": 0.0, "sgd+isotropic": 0.05}
# the covariance control at n = 10: the task-shaped prior 8 points over the isotropic one
COVARIANCE_OFFSET = {"sgd+task": 0.08, "sgd+isotropic": 0.0}
# the reference posterior 5 points over SGD on its subspace, the recipe 1 point below it
REFERENCE_OFFSET = {"reference": 0.05, "head_sgd": 0.0, "head_sghmc": 0.04}


def arm_offset(arm: str, n: int) -> float:
    """Effects built into the 'all claims hold' world (k = +1)."""
    return {"sgd": 0.0, "sgd+zero": 0.0, "sghmc+zero": 0.01, "sgd+isotropic": 0.005,
            "sghmc+isotropic": 0.02, "sgd+learned": LEARNED_GAIN[n],
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
    """All four experiments; k = 1 the claims hold, -1 effects reversed, 0 flat."""
    out = []
    for i, (arm, off) in enumerate(CONTROL_OFFSET.items()):
        out += [record("control", arm, s, 0.4 + k * off + noise(s, 7 * i), n_train=10)
                for s in seeds]
    for i, (arm, off) in enumerate(COVARIANCE_OFFSET.items()):
        out += [record("covariance", arm, s, 0.5 + k * off + noise(s, 11 * i + 3), n_train=10)
                for s in seeds]
    for j, n in enumerate((10, 250)):
        for i, (arm, off) in enumerate(REFERENCE_OFFSET.items()):
            out += [record("reference", arm, s, 0.6 + 0.1 * j + k * off
                           + noise(s, 13 * i + 5 * j + 1), n_train=n) for s in seeds]
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
    # C3 is judged where data are scarcest: its headline effect is the smallest size's
    assert c3["effect"] == pytest.approx(LEARNED_GAIN[5])


def test_reproduction_like_world():
    # Rank flat; scale rises then plateaus (no fall); Bayes ~ SGD; learned >> zero.
    recs = world(0.0)
    for r in recs:
        cfg, acc = r["config"], r["metrics"]["bma"] or r["metrics"]["final"]
        if cfg["experiment"] == "scale":
            acc["accuracy"] += min(math.log10(cfg["prior"]["scale"]), 4) * 0.1
        if cfg["experiment"] == "inference" and cfg["arm"].endswith("learned"):
            acc["accuracy"] += LEARNED_GAIN[cfg["n_train"]]
        if cfg["experiment"] == "control" and cfg["arm"] == "sgd+learned":
            acc["accuracy"] += 0.1
    # a margin below every built-in effect (gains >= 3 points, slopes >= 2 points per decade)
    # and above the reach of the flat comparisons' intervals: effects that exist are
    # supported, the flat ones "not supported" (with the margin in the rule, a supported
    # verdict needs e >= margin)
    margins = {"accuracy": 0.02}
    claims = by_id(evaluate_claims(recs, margins=margins))
    v = {cid: c["verdict"] for cid, c in claims.items()}
    assert v["C1"] == "not supported"  # (a) no rank effect
    for parts in claims["C2"]["evidence"]["sources"].values():
        assert [parts[p]["verdict"] for p in "abc"] == ["supported", "supported",
                                                       "not supported"]
    assert v["C2"] == "not supported"
    assert v["C3"] == "supported" and v["C5"] == "supported"
    assert v["C4"] == "not supported"
    # the interaction, judged at each of the three sizes on five seeds, needs a wider margin
    # before its intervals fall below it
    assert v["C4b"] == "inconclusive"
    assert verdicts(recs, margin=0.05)["C4b"] == "not supported"
    assert v["PC"] == "supported" and not claims["C3"]["evidence"]["uninformative"]


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


def test_an_experiment_without_records_is_not_run_and_one_that_diverged_inconclusive():
    only_rank = [r for r in world(1.0) if r["config"]["experiment"] == "rank"]
    # a wide margin: the saturation comparisons (effects of 0.001) are then too small to matter
    claims = by_id(evaluate_claims(only_rank, margins={"accuracy": 0.05}))
    assert claims["C1"]["verdict"] == "supported"
    for cid in ("PC", "PC2", *FAMILY_IDS[1:]):
        assert claims[cid]["verdict"] == "not run"
        assert "not run in this profile" in claims[cid]["evidence"]["reason"]
        assert not claims[cid]["evidence"]["uninformative"]  # no control: nothing to check
    diverged = [dict(r, status="diverged", metrics={"final": None, "bma": None})
                for r in world(1.0) if r["config"]["experiment"] == "scale"]
    c2 = by_id(evaluate_claims(only_rank + diverged))["C2"]
    assert c2["verdict"] == "inconclusive" and "diverged" in c2["evidence"]["reason"]


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


@pytest.mark.parametrize(("arm", "role"), [
    ("ensemble+learned", "control: snapshot ensemble"),
    ("sgd_long+learned", "control: SGD with the sampler's budget"),
])
def test_a_c4_control_separates_bayes_from_averaging_or_budget(arm, role):
    """C4 needs the sampler to beat each control the profile has too: the T = 0 snapshot
    ensemble (a gain from averaging) and SGD trained for the sampler's whole budget (a gain
    from more gradient steps)."""
    recs = world(1.0)
    control_runs = [copy.deepcopy(r) for r in recs if r["config"]["arm"] == "sghmc+learned"]
    for r in control_runs:
        r["config"]["arm"] = arm
    c4 = by_id(evaluate_claims(recs + control_runs))["C4"]
    assert c4["verdict"] == "not supported"  # no gain beyond the control's
    control = c4["evidence"]["parts"][1]
    assert control["arms"] == ["sghmc+learned", arm]
    assert control["role"] == role
    # both comparisons are judged size by size: 2 x 3 sizes = 6 parts
    assert c4["evidence"]["n_parts"] == 6
    assert [u["verdict"] for u in control["units"]] == ["not supported"] * 3
    for r in control_runs:
        r["metrics"]["bma"]["accuracy"] -= 0.2
    assert by_id(evaluate_claims(recs + control_runs))["C4"]["verdict"] == "supported"


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


def test_data_efficiency_is_the_fall_of_the_gain_from_the_smallest_to_the_largest_size():
    """Gain 10 points at n = 5, 3 points on the full set, each size on its own seeds: C5's
    effect is the fall, +7 points, with the Welch interval of two independent means (checked
    against scipy's Welch test); the sizes between are shown beside it."""
    recs, gains = [], {5: 0.10, 50: 0.06, 0: 0.03}
    noise = {5: (0.01, -0.02, 0.005, 0.0, 0.012), 50: (0.0, 0.01, -0.01), 0: (0.004, -0.002,
                                                                              0.001, -0.003)}
    for n, gain in gains.items():
        for seed, e in enumerate(noise[n]):
            recs.append(record("inference", "sghmc+learned", seed, 0.5 + gain + e, n_train=n,
                               bma=True))
            recs.append(record("inference", "sghmc+zero", seed, 0.5, n_train=n, bma=True))
    claim = claim_data_efficiency(recs)
    part = claim["evidence"]["parts"][0]
    small = [gains[5] + e for e in noise[5]]
    large = [gains[0] + e for e in noise[0]]
    assert claim["evidence"]["effect"] == pytest.approx(np.mean(small) - np.mean(large))
    welch = stats.ttest_ind(small, large, equal_var=False)
    assert part["comparison"]["p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    assert [r["n_train"] for r in part["gain_per_size"]] == [5, 50, 0]
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
    p = claims_module.claim_p_value(claim_loss_surface, c3_records(d),
                                    "accuracy", 0.01)
    assert p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-3)


def test_claims_are_judged_at_their_holm_level():
    out = by_id(evaluate_claims(c3_records([0.01, 0.03, -0.005, 0.02, 0.015])))
    holm = out["C3"]["evidence"]["holm"]
    # only C3 has data: the others have p = 1, so C3 is first and judged at 1 - 0.05 / 8
    assert holm["family"] == 8 and holm["level"] == pytest.approx(1 - 0.05 / 8)
    assert out["C3"]["evidence"]["level"] == pytest.approx(holm["level"])
    # p = 0.058 > 0.05 / 8: the interval at the adjusted level contains 0 and reaches the margin
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


# ----------------------------------------------------------------------------- PC control


def test_positive_control_comes_first_at_95_percent_outside_the_holm_family():
    claims = evaluate_claims(world(1.0))
    pc, pc2, family = claims[0], claims[1], claims[2:]
    assert pc["id"] == "PC" and pc["verdict"] == "supported"
    assert pc2["id"] == "PC2" and pc2["verdict"] == "supported"
    assert pc2["evidence"]["holm"]["family"] is None and pc2["evidence"]["claim_level"] == 0.95
    assert pc2["evidence"]["arms"] == ["sgd+task", "sgd+isotropic"]
    assert pc2["evidence"]["effect"] == pytest.approx(COVARIANCE_OFFSET["sgd+task"])
    ev = pc["evidence"]
    assert ev["claim_level"] == 0.95 and ev["part_level"] == 0.95
    assert ev["holm"]["family"] is None and ev["holm"]["level"] == 0.95
    assert ev["arms"] == ["sgd+learned", "sgd+zero"] and ev["sizes"] == [10]
    assert ev["effect"] == pytest.approx(CONTROL_OFFSET["sgd+learned"])
    iso = ev["parts"][1]
    assert iso["arms"] == ["sgd+learned", "sgd+isotropic"] and iso["role"] == "evidence only"
    assert ev["n_parts"] == 1  # the isotropic comparison does not enter the verdict
    # Holm over the eight claims only: their levels are 1 - 0.05 / (8 - i + 1), i = 1..8
    assert all(c["evidence"]["holm"]["family"] == 8 for c in family)
    levels = sorted(c["evidence"]["holm"]["level"] for c in family)
    assert levels == pytest.approx(sorted(1 - 0.05 / (8 - i) for i in range(8)))


def test_the_isotropic_comparison_does_not_decide_the_control():
    recs = world(1.0)
    for r in recs:
        if r["config"]["experiment"] == "control" and r["config"]["arm"] == "sgd+isotropic":
            r["metrics"]["final"]["accuracy"] += 0.3  # isotropic now far ahead of the oracle
    pc = by_id(evaluate_claims(recs))["PC"]
    assert pc["verdict"] == "supported"
    assert pc["evidence"]["parts"][1]["verdict"] == "contradicted"


@pytest.mark.parametrize("control", ["flat", "missing"])
def test_without_a_supported_control_the_prior_claims_are_uninformative(control):
    """A control that ran and is not supported marks the prior claims; a profile without the
    control marks nothing (issue 23: it used to mark every claim)."""
    recs = world(1.0)
    if control == "missing":
        recs = [r for r in recs if r["config"]["experiment"] != "control"]
    else:
        for r in recs:
            if r["config"]["experiment"] == "control" and r["config"]["arm"] == "sgd+learned":
                r["metrics"]["final"]["accuracy"] -= CONTROL_OFFSET["sgd+learned"]
                r["metrics"]["final"]["nll"] += CONTROL_OFFSET["sgd+learned"]
    claims = by_id(evaluate_claims(recs))
    assert claims["PC"]["verdict"] == ("not run" if control == "missing" else "not supported")
    if control == "missing":
        assert not any(c["evidence"]["uninformative"] for c in claims.values())
        return
    for cid in CLAIM_IDS:
        flagged = claims[cid]["evidence"]["uninformative"]
        assert flagged == (cid in claims_module.NEEDS_CONTROL), cid
        if flagged:
            assert "positive control PC" in claims[cid]["evidence"]["uninformative_reason"]
    assert claims["C3"]["verdict"] == "supported"  # the verdict stays; it is marked
    by_metric = {c["id"]: c for c in evaluate_claims_by_metric(recs)}
    assert by_metric["C3"]["evidence"]["by_metric"]["nll"]["uninformative"]
    assert not any(c["evidence"]["uninformative"] for c in evaluate_claims(world(1.0)))


@pytest.mark.parametrize("covariance", ["flat", "missing"])
def test_without_a_supported_covariance_control_the_covariance_claims_are_uninformative(
        covariance):
    """PC2 not supported: C1 and H1 (the learned covariance's claims) are marked, with PC2 as
    the reason; a profile without the covariance control marks nothing for it."""
    recs = world(1.0)
    if covariance == "missing":
        recs = [r for r in recs if r["config"]["experiment"] != "covariance"]
    else:
        for r in recs:
            if r["config"]["experiment"] == "covariance" and r["config"]["arm"] == "sgd+task":
                r["metrics"]["final"]["accuracy"] -= COVARIANCE_OFFSET["sgd+task"]
    claims = by_id(evaluate_claims(recs))
    for cid in CLAIM_IDS:
        flagged = claims[cid]["evidence"]["uninformative"]
        assert flagged == (covariance == "flat" and cid in claims_module.NEEDS_COVARIANCE), cid
        if flagged:
            assert "covariance control PC2" in claims[cid]["evidence"]["uninformative_reason"]


# ----------------------------------------------------------------------------- per size, parts


def shift(recs: list[dict], arm: str, n: int, by: float) -> list[dict]:
    """Add `by` to the accuracy (and take it from the NLL) of an inference arm at size n."""
    for r in recs:
        cfg = r["config"]
        if cfg["experiment"] == "inference" and cfg["arm"] == arm and cfg["n_train"] == n:
            for block in filter(None, (r["metrics"]["final"], r["metrics"]["bma"])):
                block["accuracy"] += by
                block["nll"] -= by
    return recs


def test_c3_is_judged_where_data_are_scarcest_with_the_other_sizes_beside_it():
    """C3: the learned prior 10 and 6 points ahead at n = 5 and 50, 5 points behind on the
    full set. The claim is about scarce data: judged at n = 5 (supported), the other sizes'
    verdicts shown beside it at the same level, where the loss on the full set is plain."""
    recs = shift(world(1.0), "sgd+learned", 0, -(LEARNED_GAIN[0] + 0.05))
    c3 = by_id(evaluate_claims(recs))["C3"]
    ev = c3["evidence"]
    part = ev["parts"][0]
    assert part["judged"] == "at the smallest size" and ev["n_parts"] == 1
    assert [u["n_train"] for u in part["units"]] == [5]
    assert ev["effect"] == pytest.approx(0.10)
    beside = {r["n_train"]: r["verdict"] for r in part["per_size"] if r.get("beside")}
    assert beside == {50: "supported", 0: "contradicted"}
    assert c3["verdict"] == "supported"
    assert ev["part_level"] == pytest.approx(ev["holm"]["level"])
    assert all(r["level"] == ev["part_level"] for r in part["per_size"])
    assert "beside it" in c3["summary"] and "contradicted at full" in c3["summary"]


def test_the_nll_effect_of_the_sampler_that_reverses_with_n_is_judged_per_size():
    """C4 on NLL: +0.068 at n = 10 and -0.086 at n = 250 (an earlier cpu study's numbers):
    size by size the claim is contradicted at 250, and the summary names both sizes."""
    recs = []
    for s, eps in zip(SEEDS, NOISE, strict=True):
        for n, gain in ((10, 0.068), (250, -0.086)):
            recs.append(record("inference", "sgd+learned", s, 0.6 + eps, n_train=n))
            recs.append(record("inference", "sghmc+learned", s, 0.6 + gain + eps / 2,
                               n_train=n, bma=True))
    c4 = by_id(evaluate_claims(recs, "nll"))["C4"]
    assert c4["evidence"]["effect"] == pytest.approx(0.068, abs=1e-3)  # the smallest size
    assert [(u["n_train"], u["verdict"]) for u in c4["evidence"]["parts"][0]["units"]] == [
        (10, "supported"), (250, "contradicted")]
    assert c4["verdict"] == "contradicted"
    assert "at n = 10" in c4["summary"] and "at n = 250" in c4["summary"]


def test_h1_is_judged_per_size_each_method_and_size_a_part():
    recs = shift(world(1.0), "sghmc+isotropic", 50, 0.12)  # learned +7 at 5, -5 at 50, +5 full
    h1 = by_id(evaluate_claims(recs))["H1"]
    parts = h1["evidence"]["parts"]
    assert [p["judged"] for p in parts] == ["per size", "per size"]
    assert [u["verdict"] for u in parts[0]["units"]] == ["supported", "contradicted",
                                                          "supported"]
    assert h1["verdict"] == "contradicted" and h1["evidence"]["n_parts"] == 6
    assert by_id(evaluate_claims(world(1.0)))["H1"]["verdict"] == "supported"


def h1_records(sghmc: list[float], sgd: list[float]) -> list[dict]:
    """H1 at one size: per-seed differences (learned - isotropic) for both methods."""
    out = []
    for arm, diffs in (("sghmc", sghmc), ("sgd", sgd)):
        for seed, d in enumerate(diffs):
            base = 0.6 + 0.01 * seed
            out.append(record("inference", f"{arm}+isotropic", seed, base, bma=arm == "sghmc"))
            out.append(record("inference", f"{arm}+learned", seed, base + d, bma=arm == "sghmc"))
    return out


def test_parts_are_judged_at_the_bonferroni_level_and_the_claim_p_value_follows():
    sghmc = [0.03, 0.05, 0.02, 0.04, 0.035]
    sgd = [0.02, 0.03, 0.025, 0.05, 0.015]
    recs = h1_records(sghmc, sgd)
    claim = claim_isotropic(recs, level=0.99)
    assert claim["evidence"]["n_parts"] == 2
    for part, d in zip(claim["evidence"]["parts"], (sghmc, sgd), strict=True):
        unit = part["units"][0]
        assert unit["level"] == pytest.approx(1 - 0.01 / 2)
        ref = stats.ttest_1samp(d, 0.0).confidence_interval(1 - 0.01 / 2)
        assert (unit["ci_low"], unit["ci_high"]) == pytest.approx((ref.low, ref.high))
    # both parts must be supported: the claim's p-value is 2 x the larger part p-value
    p = claims_module.claim_p_value(claim_isotropic, recs, "accuracy", 0.01)
    worst = max(stats.ttest_1samp(d, 0.0).pvalue for d in (sghmc, sgd))
    assert p == pytest.approx(2 * worst, rel=1e-3)


def test_one_part_cannot_contradict_a_claim_without_the_correction():
    """The SGD pair alone is contradicted at 95 % (p = 0.036) but not at 97.5 %, the level
    each of H1's two parts is judged at when the claim is judged at 95 %."""
    sgd = [-0.02, -0.035, 0.0, -0.03, -0.012]
    p = stats.ttest_1samp(sgd, 0.0).pvalue
    assert 0.025 < p < 0.05
    alone = paired.one_sample(dict(enumerate(sgd)), 0.95, 0.01)
    assert paired.verdict(alone) == "contradicted"
    claim = claim_isotropic(h1_records([0.0] * 5, sgd), level=0.95)
    assert claim["evidence"]["parts"][1]["verdict"] != "contradicted"
    assert claim["verdict"] != "contradicted"


def test_mde_is_stated_per_claim_from_its_standard_error():
    d = [0.02, 0.021, 0.019, 0.0205, 0.0195]
    out = by_id(evaluate_claims(c3_records(d)))["C3"]["evidence"]
    level = out["part_level"]
    se = np.std(d, ddof=1) / math.sqrt(5)
    hand = (stats.t.ppf(1 - (1 - level) / 2, 4) + stats.t.ppf(0.8, 4)) * se
    assert out["mde"] == pytest.approx(hand)
    assert out["parts"][0]["units"][0]["mde"] == pytest.approx(hand)
    c3 = {c["id"]: c for c in evaluate_claims_by_metric(c3_records(d))}["C3"]
    assert c3["evidence"]["by_metric"]["nll"]["mde"] == pytest.approx(hand)
    # the seeds an mde of one margin (1 point) would have needed, from this SE
    needed = out["seeds_needed"]
    sd = se * math.sqrt(5)
    reach = [(stats.t.ppf(1 - (1 - level) / 2, k - 1) + stats.t.ppf(0.8, k - 1)) * sd
             / math.sqrt(k) for k in (needed - 1, needed)]
    assert reach[1] <= 0.01 < reach[0]


# ----------------------------------------------------------------------------- bootstrap


N_TEST, CLASSES = 120, 3


def prediction_world(seeds: tuple[int, ...] = SEEDS) -> tuple[list[dict], dict]:
    """Control and inference runs with test predictions on one shared test set: per image a
    difficulty; per arm and size a strength; per run the probabilities of a softmax whose
    true-class logit is strength - difficulty + noise. Record metrics are computed from them.
    Returns the records and {record id: predictions} (the `read_predictions` layout)."""
    rng = np.random.default_rng(42)
    labels = rng.integers(0, CLASSES, N_TEST)
    hard = rng.normal(0.0, 1.5, N_TEST)
    strength = {"sgd+zero": 0.0, "sgd+isotropic": 0.3, "sgd+learned": 1.0,
                "sghmc+zero": 0.2, "sghmc+isotropic": 0.5, "sghmc+learned": 1.4}
    runs = [("control", arm, 10) for arm in ("sgd+learned", "sgd+zero", "sgd+isotropic")]
    runs += [("inference", arm, n) for arm in strength for n in (5, 50)]
    records, stored = [], {}
    for experiment, arm, n in runs:
        for s in seeds:
            logits = rng.normal(0.0, 1.0, (N_TEST, CLASSES))
            boost = strength[arm] * (1.5 if n == 5 else 1.0) - hard + rng.normal(0, 0.3)
            logits[np.arange(N_TEST), labels] += 1.0 + boost
            probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            rec = record(experiment, arm, s, 0.0, n_train=n, bma=arm.startswith("sghmc"))
            block = metrics.classification_metrics(probs, labels)
            rec["metrics"] = {"final": dict(block), "bma": dict(block) if rec["metrics"]["bma"]
                              else None}
            rec["predictions"] = f"{rec['id']}.predictions.npz"
            records.append(rec)
            stored[rec["id"]] = {"test": {"probs": probs.astype(np.float32),
                                          "labels": labels}}
    return records, stored


def test_intervals_include_the_test_set_error_where_predictions_are_given():
    recs, stored = prediction_world()
    plain = by_id(evaluate_claims(recs))
    boot = by_id(evaluate_claims(recs, predictions=lambda r: stored.get(r["id"]), n_boot=500))
    for cid in ("PC", "C3", "C4b", "H1"):
        p, b = plain[cid]["evidence"], boot[cid]["evidence"]
        assert p["uncertainty"] == "seeds" and b["uncertainty"] == "seeds x test points"
        assert b["effect"] == pytest.approx(p["effect"])  # the records' numbers, unchanged
        assert b["se"] >= p["se"]
    unit = boot["C3"]["evidence"]["parts"][0]["units"][0]
    plain_unit = plain["C3"]["evidence"]["parts"][0]["units"][0]
    assert unit["se_seeds"] == pytest.approx(plain_unit["se"])  # the seed part is the t SE
    assert unit["se"] ** 2 == pytest.approx(unit["se_seeds"] ** 2 + unit["se_points"] ** 2)
    assert unit["n_boot"] == 500
    # runs without predictions fall back to t intervals over seeds
    half = by_id(evaluate_claims(recs, predictions=lambda r: (
        stored.get(r["id"]) if r["config"]["arm"] != "sgd+zero" else None), n_boot=500))
    assert half["C3"]["evidence"]["uncertainty"] == "seeds"
    assert half["H1"]["evidence"]["uncertainty"] == "seeds x test points"


def pooled_points(stored: dict, arms: tuple[str, str], sizes: tuple[int, ...],
                  weights: np.ndarray, seeds: tuple[int, ...] = SEEDS) -> np.ndarray:
    """Per seed and test image, sum_k weights[k] (correct(A, n_k) - correct(B, n_k)): the
    per-point quantity whose mean over images is a pooled or slope comparison's x_s."""
    def correct(arm: str, n: int, s: int) -> np.ndarray:
        part = stored[f"inference-{arm}-{n}-{s}"]["test"]
        return bootstrap.per_point(part["probs"], part["labels"]).correct

    return np.stack([sum(w * (correct(arms[0], n, s) - correct(arms[1], n, s))
                         for w, n in zip(weights, sizes, strict=True)) for s in seeds])


def test_size_comparisons_are_two_way_bootstraps_and_the_fall_adds_them_in_quadrature():
    """C3's SE at its judged size is the two-way bootstrap of that size's (seeds x images)
    differences; C5's fall between two sizes adds the two sizes' bootstrap SEs in quadrature
    (each size on its own seeds)."""
    recs, stored = prediction_world()
    claims = by_id(evaluate_claims(recs, predictions=lambda r: stored.get(r["id"]), n_boot=500))

    def spread(arms, n):
        x = pooled_points(stored, arms, (n,), np.array([1.0]))
        reps = bootstrap.resampled_metric(
            [bootstrap.PerPoint(row, *(np.zeros(N_TEST),) * 5) for row in x], "accuracy",
            n_boot=500)
        return x.mean(), bootstrap.spread(x.mean(axis=1), reps).se

    effect, se = spread(("sgd+learned", "sgd+zero"), 5)
    c3 = claims["C3"]["evidence"]
    assert c3["effect"] == pytest.approx(effect, abs=1e-6)
    assert c3["se"] == pytest.approx(se, rel=1e-6)
    (g5, se5), (g50, se50) = (spread(("sghmc+learned", "sghmc+zero"), n) for n in (5, 50))
    fall = claims["C5"]["evidence"]["parts"][0]["units"][0]
    assert fall["effect"] == pytest.approx(g5 - g50, abs=1e-6)
    assert fall["se"] == pytest.approx(math.hypot(se5, se50), rel=1e-6)


def test_predictions_are_read_by_the_callers_loader(tmp_path):
    """The claims read no file: the caller's loader does, here from the file named in the
    record, beside it; every metric (ECE too) gets bootstrap intervals."""
    recs, stored = prediction_world()
    for r in recs:
        write_predictions(tmp_path / r["predictions"], stored[r["id"]])

    def loader(r: dict) -> dict | None:
        return read_predictions(tmp_path / r["predictions"])

    claims = evaluate_claims_by_metric(recs, others=("nll", "ece", "brier"), predictions=loader,
                                       n_boot=300)
    assert [c["id"] for c in claims] == list(CLAIM_IDS)
    assert by_id(claims)["C3"]["evidence"]["uncertainty"] == "seeds x test points"
    ece = by_id(evaluate_claims(recs, "ece", predictions=loader, n_boot=300))["PC"]["evidence"]
    assert ece["uncertainty"] == "seeds x test points" and ece["parts"][0]["units"][0]["se_points"]
    json.dumps(claims, allow_nan=False)


# ----------------------------------------------------------------------------- convergence (16)


def with_convergence(records: list[dict], rhat: float, ess: float) -> list[dict]:
    """The world's sampler records as pooled chains with the given diagnostics."""
    out = []
    for r in records:
        r = copy.deepcopy(r)
        if r["config"]["experiment"] == "inference" and r["config"]["arm"].startswith(
                ("sghmc", "ensemble")):
            r["diagnostics"] = {"convergence": {"n_chains": 4, "rhat": rhat, "ess": ess}}
        out.append(r)
    return out


def test_c4_judges_the_procedure_and_says_beside_it_whether_the_chains_converged() -> None:
    """C4 and C4b are the paper's procedure (issue 24): no convergence gate; one line beside
    the verdict says whether the samples are a converged posterior."""
    base = {c["id"]: c for c in evaluate_claims(world())}
    good = {c["id"]: c for c in evaluate_claims(with_convergence(world(), 1.01, 400))}
    for cid in ("C4", "C4b"):
        assert good[cid]["verdict"] == base[cid]["verdict"] == "supported"
        assert good[cid]["evidence"]["rhat"] == 1.01 and good[cid]["evidence"]["ess"] == 400
        assert "converged" in good[cid]["evidence"]["convergence_note"]
        assert base[cid]["evidence"]["convergence_assessed"] is False
    for rhat, ess in ((1.2, 400), (1.01, 60)):
        bad = {c["id"]: c for c in evaluate_claims(with_convergence(world(), rhat, ess))}
        for cid in ("C4", "C4b"):
            assert bad[cid]["verdict"] == "supported"  # the procedure's verdict stands
            assert bad[cid]["evidence"]["rhat"] == rhat and bad[cid]["evidence"]["ess"] == ess
            assert "not from a converged posterior" in bad[cid]["summary"]


def reference_diagnostics(records: list[dict], rhat: float, mc_se: float) -> list[dict]:
    out = []
    for r in records:
        r = copy.deepcopy(r)
        if r["config"]["experiment"] == "reference" and r["config"]["arm"] == "reference":
            r["diagnostics"] = {"reference": {"rhat_val_q95": rhat, "mc_se_accuracy": mc_se,
                                              "ess_val_median": 800.0, "accept_rate": [0.8],
                                              "divergent": 0}}
        out.append(r)
    return out


def test_c4p_is_judged_only_where_the_reference_posterior_converged() -> None:
    """C4p: the reference's model average against SGD on its subspace, gated on R-hat <= 1.01
    over validation points and a Monte Carlo SE below a quarter of the margin."""
    good = {c["id"]: c for c in evaluate_claims(reference_diagnostics(world(), 1.005, 0.001))}
    c4p = good["C4p"]
    assert c4p["verdict"] == "supported"
    assert c4p["evidence"]["arms"] == ["reference", "head_sgd"]
    assert [u["n_train"] for u in c4p["evidence"]["parts"][0]["units"]] == [10, 250]
    assert c4p["evidence"]["parts"][1]["role"] == "evidence only"
    assert [r["rhat"] for r in c4p["evidence"]["reference"]] == [1.005, 1.005]
    # the seed-averaged MC SE of 5 runs of 0.01 each: 0.0045, above a quarter of the margin
    for rhat, mc_se in ((1.02, 0.001), (1.005, 0.01)):
        bad = {c["id"]: c for c in evaluate_claims(reference_diagnostics(world(), rhat, mc_se))}
        assert bad["C4p"]["verdict"] == "not converged"
        assert "Had it converged" in bad["C4p"]["summary"]
    stuck = reference_diagnostics(world(), 1.005, 0.001)
    for r in stuck:
        if (r.get("diagnostics") or {}).get("reference"):
            r["diagnostics"]["reference"]["accept_rate"] = [0.8, 0.1]  # one chain stuck
    c4p = {c["id"]: c for c in evaluate_claims(stuck)}["C4p"]
    assert c4p["verdict"] == "not converged" and "accept rates 0.10-0.80" in c4p["summary"]


def test_the_registry_lists_each_claim_once_in_the_reports_order() -> None:
    """Every claim id of the vocabulary has one spec; the controls come first and stay out of
    the Holm family; each gate names a control; each judge returns its own id."""
    from bprior_core.claims.registry import CLAIMS, CONTROLS, FAMILY

    assert [spec.id for spec in CLAIMS] == list(CLAIM_IDS)
    assert [spec.id for spec in CONTROLS] == ["PC", "PC2"] and len(FAMILY) == 8
    assert {g for spec in CLAIMS for g in spec.gated_by} <= {spec.id for spec in CONTROLS}
    records = world(1.0)
    for spec in CLAIMS:
        assert spec.judge(records, "accuracy")["id"] == spec.id
    from bprior_core.claims.registry import evidence_kind, is_control

    assert [evidence_kind(c) for c in ("C1", "C2", "C3", "unknown")] == [
        "rank", "scale", "pairs", "pairs"]
    assert [is_control(c) for c in ("PC", "PC2", "C1", "unknown")] == [True, True, False, False]
