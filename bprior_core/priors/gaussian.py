"""Gaussian priors over a backbone's flat parameter vector: diagonal plus low-rank covariance.

A prior is N(mean, Sigma) with Sigma = diag(variance) + F^T F, where mean and variance have D
entries (D = number of trainable backbone parameters, 23.5M for a ResNet-50) and F is K x D with
K small (~10). No D x D matrix is ever formed: densities use the Woodbury identity and the matrix
determinant lemma, so time is O(D K + K^3) and memory O(D K).

Two rescaling rules exist (see ``rescale``):

* ``"same"`` (the paper's text): Sigma' = s * diag(variance) + s * F^T F + eps * I.
* ``"authors"`` (the authors' code): Sigma' = s^2 * F^T F + diag(s * variance + eps).

Files (this library's format and the authors' four files) are read and written by
`files`; this module is the mathematics only.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

_SCAN_CHUNK = 1 << 22  # entries per chunk when scanning for NaN/inf (few, cheap temporaries)
_COL_CHUNK = 1 << 18  # columns per chunk when building the K x K matrix (float64 temporaries)


# ----------------------------------------------------------------------------- validation helpers


def _check_finite(name: str, t: torch.Tensor) -> None:
    """Raise ValueError naming `name` if `t` has NaN or infinite entries.

    Scans in chunks so a 235M-entry factor needs no full-size boolean temporary.
    """
    if all(bool(torch.isfinite(c).all()) for c in t.reshape(-1).split(_SCAN_CHUNK)):
        return
    n_nan = int(torch.isnan(t).sum())
    if n_nan:
        raise ValueError(f"{name} has NaN entries ({n_nan} of {t.numel()})")
    n_inf = int(torch.isinf(t).sum())
    raise ValueError(f"{name} has infinite entries ({n_inf} of {t.numel()})")


def _check_positive_variance(variance: torch.Tensor) -> None:
    """Raise ValueError if any variance entry is not strictly positive, saying how many and why."""
    n_neg = int((variance < 0).sum())
    if n_neg:
        vmin = float(variance.min())
        raise ValueError(
            f"variance has {n_neg} negative entries (min {vmin:g}); variances must be > 0"
        )
    n_zero = int((variance == 0).sum())
    if n_zero:
        raise ValueError(f"variance has {n_zero} zero entries; variances must be > 0")


def _check_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a deep copy of `meta` as a dict, checking it is JSON-serializable."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must be JSON-serializable: {err}") from err
    return copy.deepcopy(dict(meta))


def check_scale(name: str, value: float, allow_zero: bool = False) -> float:
    """Return `value` as float if finite and > 0 (>= 0 when `allow_zero`), else raise."""
    value = float(value)
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def check_covers(prior: GaussianPrior, dim: int, name: str = "the prior") -> None:
    """Raise ValueError unless `prior` covers exactly the `dim` parameters of a model's backbone
    (a prior learned for another model, or another part of it, does not fit)."""
    if prior.dim != dim:
        raise ValueError(f"{name} has D={prior.dim} parameters but the model's backbone has "
                         f"{dim}; a prior fits only the model (and backbone) it was learned for")


def _with_transform(meta: dict[str, Any], **op: Any) -> dict[str, Any]:
    """Return a copy of `meta` with `op` appended to its "transforms" provenance list."""
    out = copy.deepcopy(meta)
    out["transforms"] = [*out.get("transforms", []), op]
    return out


# ----------------------------------------------------------------------------- the prior


class GaussianPrior:
    """N(mean, diag(variance) + F^T F) over a flat parameter vector of length D; F is K x D.

    Treat instances as immutable: every transform returns a new prior, and the K x K Cholesky
    factor used by ``log_prob`` is cached on first use. Tensors stay on their device and dtype;
    D-length reductions run in that dtype (use float64 tensors for reference-grade accuracy), the
    K x K algebra always in float64.
    """

    def __init__(
        self,
        mean: torch.Tensor,
        variance: torch.Tensor,
        cov_factor: torch.Tensor | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Validate and store the prior's tensors (detached) and its JSON-serializable meta."""
        mean, variance = self._validated_moments(mean, variance)
        self._mean = mean
        self._variance = variance
        self._cov_factor = self._validated_factor(cov_factor, mean)
        self._meta = _check_meta(meta)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def _validated_moments(
        mean: torch.Tensor, variance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Check mean/variance are matching finite 1-D float tensors with variance > 0."""
        for name, t in (("mean", mean), ("variance", variance)):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.ndim != 1:
                raise ValueError(f"{name} must be 1-D (D,), got shape {tuple(t.shape)}")
            if not t.is_floating_point():
                raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        if mean.shape != variance.shape:
            raise ValueError(
                f"mean has {mean.numel()} entries but variance has {variance.numel()}"
            )
        if mean.dtype != variance.dtype or mean.device != variance.device:
            raise ValueError(
                f"mean ({mean.dtype}, {mean.device}) and variance ({variance.dtype}, "
                f"{variance.device}) must share dtype and device"
            )
        _check_finite("mean", mean)
        _check_finite("variance", variance)
        _check_positive_variance(variance)
        return mean.detach(), variance.detach()

    @staticmethod
    def _validated_factor(cov_factor: torch.Tensor | None, mean: torch.Tensor) -> torch.Tensor:
        """Check the low-rank factor is K x D, finite, same dtype/device; None -> 0 x D."""
        if cov_factor is None:
            return mean.new_zeros((0, mean.numel()))
        if not isinstance(cov_factor, torch.Tensor):
            raise ValueError(f"cov_factor must be a torch.Tensor, got {type(cov_factor).__name__}")
        if cov_factor.ndim != 2 or cov_factor.shape[1] != mean.numel():
            raise ValueError(
                f"cov_factor must be 2-D (K, D) with D={mean.numel()} columns, "
                f"got shape {tuple(cov_factor.shape)}"
            )
        if cov_factor.dtype != mean.dtype or cov_factor.device != mean.device:
            raise ValueError(
                f"cov_factor ({cov_factor.dtype}, {cov_factor.device}) must share dtype and "
                f"device with mean ({mean.dtype}, {mean.device})"
            )
        _check_finite("cov_factor", cov_factor)
        return cov_factor.detach()

    # ------------------------------------------------------------------------- basic properties

    @property
    def mean(self) -> torch.Tensor:
        """Mean vector (D,)."""
        return self._mean

    @property
    def variance(self) -> torch.Tensor:
        """Diagonal part of the covariance (D,), all entries > 0."""
        return self._variance

    @property
    def cov_factor(self) -> torch.Tensor:
        """Low-rank factor F (K, D); the low-rank covariance part is F^T F. 0 x D for rank 0."""
        return self._cov_factor

    @property
    def dim(self) -> int:
        """Number of parameters D."""
        return self._mean.numel()

    @property
    def rank(self) -> int:
        """Number of low-rank rows K."""
        return self._cov_factor.shape[0]

    @property
    def meta(self) -> dict[str, Any]:
        """JSON-serializable provenance info (param names/shapes, how the prior was learned...)."""
        return self._meta

    @property
    def dtype(self) -> torch.dtype:
        """Dtype shared by all tensors."""
        return self._mean.dtype

    @property
    def device(self) -> torch.device:
        """Device shared by all tensors."""
        return self._mean.device

    def __repr__(self) -> str:
        """Short summary (no tensor contents)."""
        return (
            f"GaussianPrior(dim={self.dim}, rank={self.rank}, dtype={self.dtype}, "
            f"device={self.device})"
        )

    # ------------------------------------------------------------------------- constructors

    @classmethod
    def isotropic(
        cls, mean: torch.Tensor, variance: float, meta: Mapping[str, Any] | None = None
    ) -> GaussianPrior:
        """N(mean, variance * I), rank 0.

        With ``mean`` = pretrained weights this is the L2-SP style baseline of Harvey et al.; with
        ``torch.zeros(D)`` it is the authors' zero-mean "non-learned" prior.
        """
        variance = check_scale("isotropic variance", variance)
        if not isinstance(mean, torch.Tensor):
            raise ValueError(f"mean must be a torch.Tensor, got {type(mean).__name__}")
        return cls(mean, torch.full_like(mean, variance), None, meta)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> GaussianPrior:
        """Return a new prior with all tensors moved to `device` and/or cast to `dtype`."""
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype)

        return GaussianPrior(
            move(self._mean), move(self._variance), move(self._cov_factor), self._meta
        )

    # ------------------------------------------------------------------------- transforms

    def truncated(self, rank: int) -> GaussianPrior:
        """Keep the first `rank` rows of F (rank 0 = diagonal only); rows are not copied."""
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise ValueError(f"rank must be an int, got {rank!r}")
        if rank < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        if rank > self.rank:
            raise ValueError(
                f"requested rank {rank} but this prior stores only {self.rank} low-rank rows"
            )
        meta = _with_transform(self._meta, op="truncated", rank=rank)
        return GaussianPrior(self._mean, self._variance, self._cov_factor[:rank], meta)

    def principal(self, rank: int) -> GaussianPrior:
        """Keep the top-`rank` principal directions of the low-rank part: F' = U_r^T F, with
        F F^T = U diag(s^2) U^T (K x K, so no D x D matrix). F'^T F' = V_r diag(s_r^2) V_r^T is
        the best rank-r approximation of F^T F: the rows are the deviations' principal
        directions, scaled by their singular values, whatever order they were collected in."""
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= self.rank:
            raise ValueError(f"rank must be an int in [0, {self.rank}], got {rank!r}")
        gram = (self._cov_factor.double() @ self._cov_factor.double().T)
        eigenvalues, vectors = torch.linalg.eigh(gram)  # ascending
        top = vectors[:, eigenvalues.argsort(descending=True)[:rank]]
        factor = (top.T @ self._cov_factor.double()).to(self.dtype)
        meta = _with_transform(self._meta, op="principal", rank=rank)
        return GaussianPrior(self._mean, self._variance, factor, meta)

    def with_trace(self, trace: float) -> GaussianPrior:
        """The same prior with a constant added to the diagonal so that trace(Sigma) = `trace`
        (to compare ranks at a fixed total variance). Raises if that would need a negative
        addition."""
        current = float(self.diag_of_covariance().double().sum())
        if trace < current * (1 - 1e-6):
            raise ValueError(f"trace {trace:g} is below this prior's {current:g}")
        extra = max(trace - current, 0.0) / self.dim  # a prior at the target within rounding: 0
        meta = _with_transform(self._meta, op="with_trace", trace=trace)
        return GaussianPrior(self._mean, self._variance + extra, self._cov_factor, meta)

    def _scaled(self, var_scale: float, factor_mult: float, eps: float, op: dict) -> GaussianPrior:
        """New prior with variance' = var_scale*variance + eps and F' = factor_mult*F."""
        variance = self._variance * var_scale + eps
        factor = self._cov_factor * factor_mult
        meta = _with_transform(self._meta, **op)
        return GaussianPrior(self._mean, variance, factor, meta)

    def rescaled(
        self, variance_scale: float, cov_scale: float | None = None, eps: float = 0.0
    ) -> GaussianPrior:
        """Sigma' = variance_scale*diag(variance) + cov_scale*F^T F + eps*I ("same" rule).

        ``cov_scale`` defaults to ``variance_scale``: the paper's text scales "the variance and
        covariance" by one factor. Implemented as F' = sqrt(cov_scale) * F.
        """
        variance_scale = check_scale("variance_scale", variance_scale)
        cov_scale = variance_scale if cov_scale is None else cov_scale
        cov_scale = check_scale("cov_scale", cov_scale, allow_zero=True)
        eps = check_scale("eps", eps, allow_zero=True)
        op = {"op": "rescaled", "variance_scale": variance_scale, "cov_scale": cov_scale,
              "eps": eps}
        return self._scaled(variance_scale, math.sqrt(cov_scale), eps, op)

    def rescaled_authors(self, s: float, eps: float = 0.1) -> GaussianPrior:
        """Sigma' = s^2 * F^T F + diag(s * variance + eps): the rule in the authors' code.

        The low-rank part grows with s^2 while the diagonal grows with s (their loader multiplies
        F by s, not sqrt(s)); defaults there are s = 1e10, eps = 0.1.
        """
        s = check_scale("s", s)
        eps = check_scale("eps", eps, allow_zero=True)
        return self._scaled(s, s, eps, {"op": "rescaled_authors", "s": s, "eps": eps})

    def diag_of_covariance(self) -> torch.Tensor:
        """Diagonal of Sigma, variance + sum_k F_k^2, in O(D K) time and O(D) extra memory."""
        out = self._variance.clone()
        for row in self._cov_factor:
            out.addcmul_(row, row)
        return out

    def trace_matched_isotropic(self, mean: torch.Tensor | None = None) -> GaussianPrior:
        """Isotropic prior with this prior's trace, centred at `mean` (default: own mean)."""
        diag = self.diag_of_covariance()
        variance = float(diag.double().mean())
        centre = self._mean if mean is None else mean
        meta = _with_transform(self._meta, op="trace_matched_isotropic", variance=variance)
        return GaussianPrior.isotropic(centre, variance, meta)

    def shaped(self, variance: float, share: float) -> GaussianPrior:
        """N(mean, v [(1 - share) I + share D F^T F / ||F||_F^2]): this prior's mean and the
        directions of its low-rank factor, at the total variance of N(mean, v I) (trace D v,
        `share` of it along the directions). At every v it has the isotropic prior's mean and
        trace and differs only in the shape of its covariance: the covariance control's prior."""
        variance = check_scale("variance", variance)
        if not 0 < share < 1:
            raise ValueError(f"share must lie in (0, 1), got {share!r}")
        if self.rank == 0:
            raise ValueError("a shaped prior needs low-rank directions; this prior has rank 0")
        norm2 = float(self._cov_factor.double().pow(2).sum())
        if not norm2 > 0:
            raise ValueError("a shaped prior's directions must not all be zero")
        factor = self._cov_factor * math.sqrt(share * self.dim * variance / norm2)
        meta = _with_transform(self._meta, op="shaped", variance=variance, share=share)
        return GaussianPrior(self._mean, torch.full_like(self._variance, (1 - share) * variance),
                             factor, meta)

    # ------------------------------------------------------------------------- density

    def _capacitance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached (Cholesky L of C = I + F diag(1/d) F^T, logdet Sigma), both float64.

        Built in column chunks so the float64 temporaries stay O(K * chunk).
        """
        if self._cache is None:
            k = self.rank
            cap = torch.eye(k, dtype=torch.float64, device=self.device)
            logdet_diag = torch.zeros((), dtype=torch.float64, device=self.device)
            for start in range(0, self.dim, _COL_CHUNK):
                d = self._variance[start:start + _COL_CHUNK].double()
                g = self._cov_factor[:, start:start + _COL_CHUNK].double() / d.sqrt()
                cap += g @ g.T
                logdet_diag += d.log().sum()
            chol = torch.linalg.cholesky(cap)
            logdet = logdet_diag + 2.0 * chol.diagonal().log().sum()
            self._cache = (chol, logdet)
        return self._cache

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """Log-density log N(theta; mean, Sigma) with all constants; differentiable in theta.

        ``theta`` has shape (D,) (or (..., D) for a batch, giving shape (...)). Woodbury: with
        r = theta - mean, u = F (r / d), C = I + F diag(1/d) F^T,
        quad = r^T (r / d) - u^T C^{-1} u and logdet Sigma = sum log d + logdet C.
        The result has the prior's dtype; theta is cast to it (differentiably).
        """
        theta = self._checked_theta(theta)
        chol, logdet = self._capacitance()
        r = theta - self._mean
        rd = r / self._variance
        quad = (r * rd).sum(-1).double()
        if self.rank:
            u = (rd @ self._cov_factor.T).double()
            w = torch.linalg.solve_triangular(chol, u.unsqueeze(-1), upper=False).squeeze(-1)
            quad = quad - (w * w).sum(-1)
        const = self.dim * math.log(2.0 * math.pi)
        return (-0.5 * (const + logdet + quad)).to(self.dtype)

    def _checked_theta(self, theta: torch.Tensor) -> torch.Tensor:
        """Check theta's last dimension is D and its device matches; cast to the prior's dtype."""
        if not isinstance(theta, torch.Tensor) or theta.ndim < 1 or theta.shape[-1] != self.dim:
            shape = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta)
            raise ValueError(f"theta must have shape (D,) = ({self.dim},), got {shape}")
        if theta.device != self.device:
            raise ValueError(
                f"theta is on {theta.device} but the prior is on {self.device}; "
                "move the prior once with prior.to(device)"
            )
        return theta.to(self.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw (n, D) samples: mean + sqrt(variance) * z1 + z2 @ F, z1 ~ N(0, I_D), z2 ~ N(0, I_K).

        Uses the standard deviation sqrt(variance) (the SWAG bug used variance * randn). The
        generator must live on the prior's device.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        kw = {"dtype": self.dtype, "device": self.device, "generator": generator}
        z1 = torch.randn((n, self.dim), **kw)
        out = self._mean + self._variance.sqrt() * z1
        if self.rank:
            z2 = torch.randn((n, self.rank), **kw)
            out = out + z2 @ self._cov_factor
        return out


# ----------------------------------------------------------------------------- rescaling by name


def _rescale_same(prior: GaussianPrior, scale: float, eps: float) -> GaussianPrior:
    """Paper's text: scale diagonal and low-rank covariance by the same factor."""
    return prior.rescaled(scale, eps=eps)


def _rescale_authors(prior: GaussianPrior, scale: float, eps: float) -> GaussianPrior:
    """Authors' code: low-rank part times scale^2, diagonal times scale."""
    return prior.rescaled_authors(scale, eps=eps)


RESCALING_RULES: dict[str, Callable[[GaussianPrior, float, float], GaussianPrior]] = {
    "same": _rescale_same,
    "authors": _rescale_authors,
}


def rescale(
    prior: GaussianPrior, scale: float, rule: str = "same", eps: float = 0.0
) -> GaussianPrior:
    """Rescale `prior` by `scale` under a named rule ("same" or "authors"), adding eps * I.

    Note ``eps`` defaults to 0 here for both rules (the authors' code used 0.1; pass it).
    """
    try:
        fn = RESCALING_RULES[rule]
    except KeyError:
        valid = ", ".join(repr(k) for k in RESCALING_RULES)
        raise ValueError(f"unknown rescaling rule {rule!r}; valid rules: {valid}") from None
    return fn(prior, scale, eps)
