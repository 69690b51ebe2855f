"""Convergence diagnostics of several sampler chains."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split_rhat(chains: Sequence[Sequence[float]]) -> float:
    """Split R-hat (Gelman et al., BDA3 section 11.4) of one scalar over m >= 2 chains of equal
    length n >= 4: each chain is cut into halves (the middle draw dropped when n is odd), then
    R-hat = sqrt(var+ / W) over the 2m half-chains of length h, where W is the mean within-chain
    variance (ddof 1), B / h the variance of the half-chain means (ddof 1) and
    var+ = (h - 1) / h * W + B / h. About 1 when the chains agree; above 1.01-1.1 they have not
    mixed. Infinite when every half-chain is constant but their means differ, NaN when all draws
    are equal."""
    x = np.asarray(chains, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 4:
        raise ValueError(f"split R-hat needs at least 2 chains of at least 4 draws, got shape "
                         f"{x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("split R-hat needs finite draws")
    h = x.shape[1] // 2
    halves = np.concatenate([x[:, :h], x[:, -h:]], axis=0)
    w = halves.var(axis=1, ddof=1).mean()
    b_over_h = halves.mean(axis=1).var(ddof=1)
    var_plus = (h - 1) / h * w + b_over_h
    if w == 0:
        return float("nan") if var_plus == 0 else float("inf")
    return float(np.sqrt(var_plus / w))
