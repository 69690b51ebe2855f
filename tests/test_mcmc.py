"""Split R-hat against a hand computation and on chains that do and do not agree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bprior_core.mcmc import split_rhat


def test_split_rhat_hand_computed():
    # two chains of 4 -> halves [1,2] [5,6] [2,3] [6,7]: means 1.5 5.5 2.5 6.5, each var 0.5.
    # W = 0.5; var of the means (ddof 1) = 17 / 3; h = 2: var+ = 0.5 * 0.5 + 17 / 3
    value = split_rhat([[1, 2, 5, 6], [2, 3, 6, 7]])
    assert value == pytest.approx(math.sqrt((0.25 + 17 / 3) / 0.5))


def test_split_rhat_drops_the_middle_draw_of_odd_chains():
    assert split_rhat([[1, 2, 99, 5, 6], [2, 3, -99, 6, 7]]) == pytest.approx(
        split_rhat([[1, 2, 5, 6], [2, 3, 6, 7]]))


def test_split_rhat_near_one_for_agreeing_chains_large_for_shifted_ones():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(4, 2000))
    assert split_rhat(same) == pytest.approx(1.0, abs=0.01)
    shifted = same + np.arange(4).reshape(-1, 1)
    assert split_rhat(shifted) > 1.5
    trending = same + np.linspace(0, 3, 2000)  # each chain drifts: the split catches it
    assert split_rhat(trending) > 1.2


def test_split_rhat_refuses_too_few_chains_or_draws():
    with pytest.raises(ValueError, match="at least 2 chains"):
        split_rhat([[1.0, 2.0, 3.0, 4.0]])
    with pytest.raises(ValueError, match="at least 4 draws"):
        split_rhat([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="finite"):
        split_rhat([[1.0, 2.0, 3.0, math.nan], [1.0, 2.0, 3.0, 4.0]])
