"""Tests for bprior_core.analysis.paired: paired statistics against scipy and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bprior_core.analysis.paired import (
    MIN_SEEDS,
    Comparison,
    bonferroni,
    combine,
    contrast,
    decisive_p,
    holm_levels,
    mde,
    mean_values,
    one_sample,
    paired_difference,
    slopes,
    verdict,
)


def test_paired_difference_hand_computed():
    # d = [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3), t_{0.975, 2} = 4.302652729911275.
    c = paired_difference({0: 2.0, 1: 4.0, 2: 6.0}, {0: 1.0, 1: 2.0, 2: 3.0, 9: 0.0})
    half = 4.302652729911275 / math.sqrt(3)
    assert c.n == 3 and c.seeds == (0, 1, 2)
    assert c.effect == pytest.approx(2.0)
    assert c.se == pytest.approx(1 / math.sqrt(3))
    assert (c.ci_low, c.ci_high) == pytest.approx((2 - half, 2 + half))


def test_paired_difference_matches_scipy():
    a = {0: 0.71, 1: 0.69, 2: 0.74, 3: 0.70, 4: 0.72}
    b = {0: 0.66, 1: 0.68, 2: 0.69, 3: 0.61, 4: 0.70, 7: 0.5}
    c = paired_difference(a, b)
    xa, xb = np.array([a[s] for s in range(5)]), np.array([b[s] for s in range(5)])
    d = xa - xb
    se = d.std(ddof=1) / np.sqrt(5)
    ci = stats.ttest_rel(xa, xb).confidence_interval(0.95)
    assert c.effect == pytest.approx(d.mean())
    assert c.se == pytest.approx(se)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
    assert c.ci_high - c.effect == pytest.approx(stats.t.ppf(0.975, 4) * se)


def test_paired_difference_lower_is_better_flips_sign():
    up = paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.0, 1: 0.5, 2: 1.0})
    down = paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.0, 1: 0.5, 2: 1.0},
                             higher_is_better=False)
    assert down.effect == pytest.approx(-up.effect)
    assert (down.ci_low, down.ci_high) == pytest.approx((-up.ci_high, -up.ci_low))


def test_small_samples_and_verdicts():
    assert one_sample({}).effect is None and verdict(one_sample({})) == "inconclusive"
    single = one_sample({3: 0.5})
    assert single.n == 1 and single.se is None and verdict(single) == "inconclusive"
    two = one_sample({0: 1.0, 1: 1.1})  # significant-looking, but below MIN_SEEDS
    assert MIN_SEEDS == 3 and verdict(two) == "inconclusive"
    assert verdict(Comparison(1.0, 0.1, 0.5, 1.5, 3, (0, 1, 2))) == "supported"
    assert verdict(Comparison(-1.0, 0.1, -1.5, -0.5, 3, (0, 1, 2))) == "contradicted"
    # an interval that contains 0: not supported below the margin, else inconclusive
    assert verdict(Comparison(0.1, 0.1, -0.2, 0.4, 3, (0, 1, 2), margin=0.5)) == "not supported"
    assert verdict(Comparison(0.1, 0.1, -0.2, 0.4, 3, (0, 1, 2), margin=0.4)) == "inconclusive"
    assert verdict(Comparison(0.1, 0.1, -0.2, 0.4, 3, (0, 1, 2))) == "inconclusive"


@pytest.mark.parametrize(("low", "high", "effect", "margin", "expected"), [
    (0.02, 0.08, 0.05, 0.01, "supported"),  # L > 0, e >= m
    (0.001, 0.019, 0.01, 0.01, "supported"),  # e = m exactly
    (0.001, 0.009, 0.005, 0.01, "not supported"),  # significant but U < m: too small
    (0.001, 0.03, 0.008, 0.01, "inconclusive"),  # significant, e < m, U reaches m
    (-0.08, -0.02, -0.05, 0.01, "contradicted"),  # U < 0, e <= -m
    (-0.009, -0.001, -0.005, 0.01, "not supported"),  # significantly below 0 but within m
    (-0.02, 0.005, -0.007, 0.01, "not supported"),  # contains 0, U < m
    (-0.02, 0.01, -0.005, 0.01, "inconclusive"),  # U = m: reaches the margin
    (0.001, 0.003, 0.002, None, "supported"),  # no margin: m = 0
])
def test_verdict_rule_reads_the_interval_the_estimate_and_the_margin(low, high, effect, margin,
                                                                      expected):
    c = Comparison(effect, 0.01, low, high, 5, tuple(range(5)), margin=margin)
    assert verdict(c) == expected
    assert verdict(Comparison(effect, 0.01, low, high, 2, (0, 1), margin=margin)) == \
        "inconclusive"  # too few seeds


def test_p_value_is_the_t_test_and_agrees_with_the_interval():
    """p = the one-sample t test's p-value; the interval at 1 - a excludes 0 iff p < a."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = rng.normal(0.01, 0.02, 5)
        c = one_sample(dict(enumerate(d)))
        assert c.p_value == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-9)
        for a in (0.2, 0.05, 0.01, 0.001):
            at = one_sample(dict(enumerate(d)), level=1 - a)
            assert (at.ci_low > 0 or at.ci_high < 0) == (c.p_value < a)


def test_decisive_p_needs_the_margin_and_enough_seeds():
    d = {0: 0.010, 1: 0.012, 2: 0.011, 3: 0.013}
    assert decisive_p(one_sample(d, margin=0.005)) == pytest.approx(one_sample(d).p_value)
    assert decisive_p(one_sample(d, margin=0.05)) == 1.0  # |e| < m: never decisive
    assert decisive_p(one_sample({0: 0.01, 1: 0.012})) == 1.0  # below MIN_SEEDS


def test_mde_hand_computed():
    # t tables: t(0.975, 4) = 2.7764, t(0.80, 4) = 0.9410; normal: 1.95996 + 0.84162
    assert mde(0.01, 4) == pytest.approx(0.01 * (2.7764 + 0.9410), abs=1e-6)
    assert mde(1.0, 10 ** 7) == pytest.approx(1.95996 + 0.84162, abs=1e-4)
    assert mde(0.01, 4, level=1 - 0.05 / 7) > mde(0.01, 4)
    c = one_sample({0: 0.01, 1: 0.03, 2: 0.02, 3: 0.025, 4: 0.015})
    assert c.mde == pytest.approx(mde(c.se, 4)) and c.to_dict()["mde"] == c.mde
    # the power at the mde is about 80 % (exactly for a normal reference; the t version is
    # the usual approximation of the non-central t power)
    for df in (4, 10 ** 6):
        crit = stats.t.ppf(0.975, df)
        power = stats.nct.sf(crit, df, mde(1.0, df))
        assert power == pytest.approx(0.80, abs=0.002 if df > 100 else 0.03)


def test_values_with_replicates_are_computed_replicate_by_replicate():
    """Vectors [observed, replicates...] go through contrasts, means and slopes element-wise;
    a mix with plain numbers falls back to the observed values."""
    a = {0: np.array([1.0, 1.1, 0.9]), 1: np.array([2.0, 2.2, 1.8])}
    b = {0: np.array([0.5, 0.4, 0.6]), 1: np.array([1.0, 1.0, 1.0])}
    d = contrast([(1.0, a), (-1.0, b)])
    assert np.allclose(d[0], [0.5, 0.7, 0.3]) and np.allclose(d[1], [1.0, 1.2, 0.8])
    mixed = contrast([(1.0, a), (-1.0, {0: 0.5, 1: 1.0})])
    assert mixed == {0: pytest.approx(0.5), 1: pytest.approx(1.0)}
    assert np.allclose(mean_values([a[0], a[1]]), [1.5, 1.65, 1.35])
    assert mean_values([1.0, np.array([3.0, 9.0])]) == pytest.approx(2.0)
    x = [0.0, 1.0, 3.0]
    series = [{0: np.array([1.0, 0.0])}, {0: np.array([2.5, 1.0])}, {0: np.array([4.0, 3.0])}]
    got = slopes(x, series)[0]
    for r in range(2):
        assert got[r] == pytest.approx(stats.linregress(x, [s[0][r] for s in series]).slope)


def test_bonferroni_widens_interval():
    d = {0: 0.01, 1: 0.03, 2: 0.02, 3: 0.025}
    assert bonferroni(5) == pytest.approx(0.99)
    plain, strict = one_sample(d), one_sample(d, bonferroni(5))
    assert strict.ci_low < plain.ci_low and strict.ci_high > plain.ci_high


def test_combine_rule():
    assert combine(["supported", "supported"]) == "supported"
    assert combine(["supported", "not supported"]) == "not supported"
    assert combine(["supported", "inconclusive", "not supported"]) == "inconclusive"
    assert combine(["inconclusive", "contradicted"]) == "contradicted"
    assert combine([]) == "inconclusive"


# ----------------------------------------------------------------------------- records


def test_holm_levels_hand_computed():
    # sorted p: 0.005 (vs 0.05/4: rejected), 0.01 (vs 0.05/3: rejected), 0.03 (vs 0.05/2: fails),
    # 0.04 (judged at the failing level, so not rejected either)
    levels = holm_levels([0.01, 0.04, 0.03, 0.005])
    assert levels == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 2, 1 - 0.05 / 4])
    assert holm_levels([0.9, 0.001]) == pytest.approx([1 - 0.05, 1 - 0.05 / 2])


def test_slopes_match_scipy_linregress_per_seed():
    x = [0.0, 1.0, 3.0]
    series = [{0: 1.0, 1: 2.0, 5: 9.0}, {0: 2.5, 1: 1.0}, {0: 4.0, 1: 0.5, 2: 7.0}]
    got = slopes(x, series)
    assert sorted(got) == [0, 1]  # seeds present in every series
    for seed in got:
        ref = stats.linregress(x, [s[seed] for s in series]).slope
        assert got[seed] == pytest.approx(ref)
    with pytest.raises(ValueError, match="3 x values but 2 series"):
        slopes(x, series[:2])


def test_margin_and_level_are_carried_by_the_comparison():
    d = {0: 0.01, 1: 0.03, 2: 0.02, 3: 0.025}
    c = one_sample(d, level=0.9, margin=0.01)
    assert c.level == 0.9 and c.margin == 0.01
    assert c.to_dict()["verdict"] == verdict(c) == "supported"
    assert paired_difference(d, {s: 0.0 for s in d}, level=0.9, margin=0.01) == c
    # the same interval (above 0) with an estimate below the margin: significant but too
    # small to matter
    assert verdict(one_sample(d, level=0.9, margin=0.5)) == "not supported"
