"""SWAG statistics over a flat parameter vector: running moments plus the last K deviations.

Only the statistics live here; a training loop calls ``SWAG.collect(flat_params)`` at each
snapshot and ``SWAG.to_prior()`` at the end.

Numerics: the running mean and second central moment are kept in float64 with Welford's update
(for D = 23.5M that is 2 x 188 MB), because E[x^2] - E[x]^2 in float32 loses every variance below
about 1e-7 * x^2, i.e. most SGD-iterate variances. Deviations are stored in the snapshots' own
dtype (K x D, 940 MB for K = 10 in float32). Everything stays on the first snapshot's device.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import torch

from .gaussian import GaussianPrior

DEFAULT_VAR_FLOOR = 1e-30  # as in SWAG's var_clamp; raised to the dtype's smallest normal number


class SWAG:
    """Collect SWAG moments and a ring buffer of the last `max_rank` deviations.

    ``var_floor``: variances (population variance, ddof=0) are clamped up to
    max(var_floor, finfo(dtype).tiny) so they stay > 0 in the snapshots' dtype (parameters that
    never moved would otherwise get variance exactly 0, an invalid Gaussian prior).
    """

    def __init__(self, max_rank: int, var_floor: float = DEFAULT_VAR_FLOOR) -> None:
        """Set the number of deviations to keep and the variance floor (both validated)."""
        if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 0:
            raise ValueError(f"max_rank must be a non-negative int, got {max_rank!r}")
        var_floor = float(var_floor)
        if not (math.isfinite(var_floor) and var_floor > 0):
            raise ValueError(f"var_floor must be finite and > 0, got {var_floor!r}")
        self.max_rank = max_rank
        self.var_floor = var_floor
        self._reset()

    def _reset(self) -> None:
        """Forget all collected snapshots."""
        self._n = 0
        self._mean64: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None  # sum of squared deviations from the running mean
        self._devs: deque[torch.Tensor] = deque(maxlen=self.max_rank)
        self._dtype: torch.dtype | None = None

    # ------------------------------------------------------------------------- collecting

    def collect(self, flat_params: torch.Tensor) -> None:
        """Add one snapshot (1-D, D): update the moments, then store snapshot - updated mean."""
        x = self._checked_snapshot(flat_params)
        x64 = x.double()
        self._n += 1
        if self._mean64 is None:
            self._dtype = x.dtype
            self._mean64 = x64.clone()
            self._m2 = torch.zeros_like(x64)
        else:
            delta = x64 - self._mean64
            self._mean64.add_(delta, alpha=1.0 / self._n)
            self._m2.addcmul_(delta, x64 - self._mean64)
        if self.max_rank:
            self._devs.append((x64 - self._mean64).to(x.dtype))

    def _checked_snapshot(self, flat_params: torch.Tensor) -> torch.Tensor:
        """Detach and check a snapshot: 1-D float, finite, matching earlier shape/dtype/device."""
        if not isinstance(flat_params, torch.Tensor) or flat_params.ndim != 1:
            raise ValueError("flat_params must be a 1-D tensor (the flattened parameter vector)")
        if not flat_params.is_floating_point():
            raise ValueError(f"flat_params must be floating point, got {flat_params.dtype}")
        x = flat_params.detach()
        if self._mean64 is not None:
            ref = (self._mean64.numel(), self._dtype, self._mean64.device)
            got = (x.numel(), x.dtype, x.device)
            if got != ref:
                raise ValueError(f"snapshot (D, dtype, device) = {got} differs from first {ref}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("snapshot has NaN or infinite entries")
        return x

    # ------------------------------------------------------------------------- statistics

    @property
    def n_collected(self) -> int:
        """Number of snapshots collected."""
        return self._n

    def _require(self, n_min: int) -> None:
        """Raise ValueError unless at least `n_min` snapshots were collected."""
        if self._n < n_min:
            raise ValueError(f"needs at least {n_min} snapshot(s), collected {self._n}")

    @property
    def mean(self) -> torch.Tensor:
        """Average of the snapshots, in the snapshots' dtype."""
        self._require(1)
        return self._mean64.to(self._dtype)

    @property
    def sq_mean(self) -> torch.Tensor:
        """Average of squared snapshots (reconstructed from the float64 moments)."""
        self._require(1)
        return (self._m2 / self._n + self._mean64.square()).to(self._dtype)

    @property
    def effective_var_floor(self) -> float:
        """The floor actually applied: max(var_floor, smallest normal number of the dtype)."""
        self._require(1)
        return max(self.var_floor, torch.finfo(self._dtype).tiny)

    @property
    def variance(self) -> torch.Tensor:
        """Population variance E[x^2] - E[x]^2 (ddof=0), clamped at the floor, snapshot dtype."""
        self._require(1)
        var = (self._m2 / self._n).to(self._dtype)
        return var.clamp_min(self.effective_var_floor)

    @property
    def deviations(self) -> torch.Tensor:
        """Stored deviations (K, D), oldest first; row i = snapshot_i - mean after snapshot i."""
        self._require(1)
        if not self._devs:
            return self._mean64.new_zeros((0, self._mean64.numel()), dtype=self._dtype)
        return torch.stack(list(self._devs))

    def to_prior(self, meta: Mapping[str, Any] | None = None) -> GaussianPrior:
        """GaussianPrior(mean, variance, F = deviations / sqrt(K - 1)).

        K = number of stored deviations. No SWAG factor 1/2 is applied (the authors' file
        convention). With K < 2 the prior has rank 0 (one deviation gives no covariance
        estimate). Needs >= 2 snapshots. ``meta`` is merged with a "learned_by" record.
        """
        if self._n < 2:
            raise ValueError(
                f"SWAG needs at least 2 snapshots to estimate a variance; collected {self._n}"
            )
        devs = self.deviations
        k = devs.shape[0]
        factor = devs / math.sqrt(k - 1) if k >= 2 else devs[:0]
        return GaussianPrior(self.mean, self.variance, factor, self._prior_meta(meta, k))

    def _prior_meta(self, meta: Mapping[str, Any] | None, k: int) -> dict[str, Any]:
        """Merge the user's meta with a record of how SWAG produced the prior."""
        out = dict(meta or {})
        info = {
            "method": "SWAG",
            "n_snapshots": self._n,
            "max_rank": self.max_rank,
            "rank": k if k >= 2 else 0,
            "var_floor": self.effective_var_floor,
            "cov_factor": "deviations / sqrt(K - 1), no factor 1/2",
        }
        out["learned_by"] = {**info, **dict(out.get("learned_by", {}))}
        return out

    # ------------------------------------------------------------------------- checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Tensors and counters needed to resume collecting (loadable with weights_only=True)."""
        self._require(1)
        return {
            "max_rank": self.max_rank,
            "var_floor": self.var_floor,
            "n": self._n,
            "mean64": self._mean64.clone(),
            "m2": self._m2.clone(),
            "deviations": self.deviations.clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from ``state_dict()`` output (replaces max_rank and var_floor too)."""
        fresh = SWAG(int(state["max_rank"]), float(state["var_floor"]))
        self.max_rank, self.var_floor = fresh.max_rank, fresh.var_floor
        self._reset()
        devs = state["deviations"]
        self._n = int(state["n"])
        self._mean64 = state["mean64"].clone().double()
        self._m2 = state["m2"].clone().double()
        self._dtype = devs.dtype
        self._devs.extend(row.clone() for row in devs)
