"""Convergence diagnostics of several sampler chains (Vehtari, Gelman, Simpson, Carpenter and
Buerkner 2021, "Rank-normalization, folding, and localization: an improved R-hat"): split
R-hat, its rank-normalised version (bulk and folded tail), and the bulk effective sample size.

Every function takes draws shaped (chains, draws) for one scalar, or (chains, draws, k) for k
scalars at once (e.g. one per test point), and returns a float or a (k,) array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

MIN_DRAWS = 4  # per chain: split R-hat halves each chain, and ranks need a few per half


def _draws(chains: Sequence | np.ndarray, min_chains: int = 2) -> np.ndarray:
    """Float array (chains, draws, k), checked: enough chains and draws, all finite."""
    x = np.asarray(chains, dtype=float)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[0] < min_chains or x.shape[1] < MIN_DRAWS:
        raise ValueError(f"convergence diagnostics need at least {min_chains} chains of at "
                         f"least {MIN_DRAWS} draws, got shape {x.shape[:2]}")
    if not np.isfinite(x).all():
        raise ValueError("convergence diagnostics need finite draws")
    return x


def _squeeze(value: np.ndarray, was_2d: bool):
    return float(value[0]) if was_2d else value


def _split(x: np.ndarray) -> np.ndarray:
    """Each chain cut into its first and last halves (the middle draw dropped when odd)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, -half:]], axis=0)


def _classic_rhat(x: np.ndarray) -> np.ndarray:
    """sqrt(var+ / W) of (chains, draws, k): W the mean within-chain variance (ddof 1),
    var+ = (n - 1) / n W + B / n with B / n the variance of the chain means (ddof 1)."""
    n = x.shape[1]
    w = x.var(axis=1, ddof=1).mean(axis=0)
    b_over_n = x.mean(axis=1).var(axis=0, ddof=1)
    var_plus = (n - 1) / n * w + b_over_n
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(var_plus / w)


def _rank_normalise(x: np.ndarray) -> np.ndarray:
    """Blom-type normal scores of the pooled ranks (average ranks for ties):
    Phi^{-1}((r - 3/8) / (S + 1/4)), S the number of draws of all chains."""
    flat = x.reshape(-1, x.shape[2])
    ranks = stats.rankdata(flat, method="average", axis=0)
    z = stats.norm.ppf((ranks - 0.375) / (flat.shape[0] + 0.25))
    return z.reshape(x.shape)


def split_rhat(chains) -> float | np.ndarray:
    """Split R-hat (BDA3 section 11.4): the classic R-hat of the half-chains. About 1 when the
    chains agree; infinite when every half-chain is constant but their means differ, NaN when
    all draws are equal."""
    x = _draws(chains)
    return _squeeze(_classic_rhat(_split(x)), np.ndim(chains) == 2)


def rank_rhat(chains) -> float | np.ndarray:
    """Rank-normalised split R-hat (Vehtari et al. 2021): the larger of the split R-hat of the
    rank-normalised draws (bulk) and of the rank-normalised distances to the median (folded:
    tails and scale). Robust to heavy tails; > 1.01 (strict) or > 1.05 (lenient) says the
    chains have not mixed."""
    x = _split(_draws(chains))
    bulk = _classic_rhat(_rank_normalise(x))
    folded = _classic_rhat(_rank_normalise(np.abs(x - np.median(x, axis=(0, 1)))))
    return _squeeze(np.maximum(bulk, folded), np.ndim(chains) == 2)


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance (divisor n) of each chain along axis 1, by FFT: (chains, lags, k)."""
    n = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    size = 2 ** int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    return np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n] / n


def _ess(x: np.ndarray) -> np.ndarray:
    """Effective sample size of (chains, draws, k) with Geyer's initial positive and monotone
    sequences on the multi-chain autocorrelation estimate (Stan's and ArviZ's estimator)."""
    m, n, k = x.shape
    acov = _autocovariance(x)
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1)
    var_plus = mean_var * (n - 1) / n
    if m > 1:
        var_plus = var_plus + x.mean(axis=1).var(axis=0, ddof=1)
    out = np.empty(k)
    for j in range(k):
        rho = 1.0 - (mean_var[j] - acov[:, :, j].mean(axis=0)) / var_plus[j]
        out[j] = m * n / _tau(rho, n, m * n)
    return out


def _tau(rho: np.ndarray, n: int, total: int) -> float:
    """The integrated autocorrelation time from autocorrelations `rho` (lag 0 = 1)."""
    kept = np.zeros(n)
    kept[0], even, odd = 1.0, 1.0, rho[1]
    kept[1] = odd
    t = 1
    while t < n - 3 and even + odd > 0:  # initial positive sequence of pair sums
        even, odd = rho[t + 1], rho[t + 2]
        if even + odd >= 0:
            kept[t + 1], kept[t + 2] = even, odd
        t += 2
    last = t - 2
    if even > 0:
        kept[last + 1] = even
    t = 1
    while t <= last - 2:  # initial monotone sequence
        if kept[t + 1] + kept[t + 2] > kept[t - 1] + kept[t]:
            kept[t + 1] = kept[t + 2] = (kept[t - 1] + kept[t]) / 2
        t += 2
    tau = -1.0 + 2.0 * kept[: last + 1].sum() + kept[last + 1: last + 2].sum()
    return max(tau, 1.0 / np.log10(total))


def bulk_ess(chains) -> float | np.ndarray:
    """Bulk effective sample size (Vehtari et al. 2021): the ESS of the rank-normalised split
    chains; how many independent draws the chains are worth for the centre of the
    distribution (at least about 100 over all chains for reliable summaries)."""
    x = _split(_draws(chains))
    return _squeeze(_ess(_rank_normalise(x)), np.ndim(chains) == 2)
