"""Tests for bprior_core.paired: paired statistics against scipy and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bprior_core.paired import (
    MIN_SEEDS,
    Comparison,
    bonferroni,
    combine,
    holm_levels,
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
    c = one_sample(d, level=0.9, margin=0.5)
    assert c.level == 0.9 and c.margin == 0.5
    assert c.to_dict()["verdict"] == verdict(c) == "supported"
    assert paired_difference(d, {s: 0.0 for s in d}, level=0.9, margin=0.5) == c
