"""Split R-hat against a hand computation and on chains that do and do not agree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bprior_core.analysis.convergence import split_rhat


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


# ----------------------------------------------------------------------------- Vehtari et al.


def ar1_chains(m: int, n: int, phi: float, seed: int, heavy: bool = False) -> np.ndarray:
    """m AR(1) chains of n draws (autocorrelation phi), optionally with Cauchy innovations."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_cauchy((m, n)) if heavy else rng.normal(size=(m, n))
    x = np.zeros((m, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


@pytest.mark.parametrize(("phi", "heavy", "shift"), [(0.0, False, 0.0), (0.7, False, 0.0),
                                                     (0.95, False, 0.0), (0.5, True, 0.0),
                                                     (0.3, False, 2.0)])
def test_rank_rhat_and_bulk_ess_match_arviz(phi, heavy, shift) -> None:
    """Against ArviZ, an independent implementation of Vehtari et al. (2021)."""
    az = pytest.importorskip("arviz")
    from bprior_core.analysis.convergence import bulk_ess, rank_rhat

    x = ar1_chains(4, 101, phi, seed=7, heavy=heavy) + shift * np.arange(4).reshape(-1, 1)
    assert rank_rhat(x) == pytest.approx(float(az.rhat(x, method="rank")), rel=1e-10)
    assert bulk_ess(x) == pytest.approx(float(az.ess(x, method="bulk")), rel=1e-10)


def test_the_diagnostics_run_per_scalar_over_a_batch() -> None:
    from bprior_core.analysis.convergence import bulk_ess, rank_rhat

    x = np.stack([ar1_chains(4, 60, phi, seed=s) for s, phi in enumerate((0.0, 0.9))], axis=-1)
    batch_rhat, batch_ess = rank_rhat(x), bulk_ess(x)
    assert batch_rhat.shape == batch_ess.shape == (2,)
    for j in range(2):
        assert batch_rhat[j] == pytest.approx(rank_rhat(x[..., j]))
        assert batch_ess[j] == pytest.approx(bulk_ess(x[..., j]))
    assert batch_ess[1] < batch_ess[0]  # autocorrelated chains are worth fewer draws


def test_independent_draws_have_ess_near_their_number_and_rhat_near_one() -> None:
    from bprior_core.analysis.convergence import bulk_ess, rank_rhat

    x = np.random.default_rng(1).normal(size=(4, 500))
    assert rank_rhat(x) == pytest.approx(1.0, abs=0.01)
    assert 1600 < bulk_ess(x) < 2400
