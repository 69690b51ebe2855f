"""R Gaussian priors evaluated together on the runs' parameter matrix (R, D), gradient included.

Run r's prior is N(mu_r, Sigma_r), Sigma_r = diag(d_r) + F_r^T F_r (F_r is K x D). With
theta_r row r of the parameter matrix (the engine's master weights, one row per run; the prior
reads that matrix in place and copies nothing):

    r = theta - mu,   rd = r / d,   u = F rd,   w = L^{-1} u,   a = L^{-T} w = C^{-1} u,
    quad = r . rd - |w|^2,   log p = -(D log 2 pi + log det Sigma + quad) / 2,
    -grad_theta log p = Sigma^{-1} r = rd - (F^T a) / d,

with L L^T = C = I + F diag(1/d) F^T (K x K, float64; Woodbury and the matrix determinant lemma, as
in :class:`~bprior_core.priors.gaussian.GaussianPrior`). The gradient is computed directly, not by
autograd, in a handful of (R, D) operations whatever the number of parameter tensors. Runs may have
different ranks: factors are padded with zero rows, which leave C, the determinant and the gradient
unchanged. Tensors that runs share are stored once: a mean or variance common to every run is
broadcast, and consecutive runs with the same factor (the same prior object, as a study passes for
the seeds of one arm) form a group whose factor is read once per step for the whole group, (R_g, D)
x (D, K) instead of R_g matrix-vector products.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .gaussian import GaussianPrior


def _stack(tensors: Sequence[torch.Tensor], device, dtype=None) -> torch.Tensor:
    """(R, ...) of the runs' tensors; one tensor shared by every run becomes (1, ...)."""
    if all(t is tensors[0] for t in tensors):
        return tensors[0].to(device, dtype).unsqueeze(0)
    return torch.stack([t.to(device, dtype) for t in tensors])


class PackedPrior:
    """The priors of R runs over the same D parameters."""

    def __init__(self, priors: Sequence[GaussianPrior], device,
                 dtype: torch.dtype | None = None) -> None:
        """`dtype` (default: the priors' own) is the dtype of the parameters they are evaluated
        on; the capacitance factors stay float64."""
        if not priors:
            raise ValueError("a packed prior needs at least one prior")
        dims = {p.dim for p in priors}
        if len(dims) != 1:
            raise ValueError(f"the priors of a pack must share D; got {sorted(dims)}")
        self.runs, self.dim = len(priors), dims.pop()
        self.rank = max(p.rank for p in priors)
        self.mean = _stack([p.mean for p in priors], device, dtype)
        self.variance = _stack([p.variance for p in priors], device, dtype)
        self.groups = self._factor_groups(priors, device, dtype)
        chol = torch.eye(self.rank, dtype=torch.float64).repeat(self.runs, 1, 1)
        logdet = torch.zeros(self.runs, dtype=torch.float64)
        for i, p in enumerate(priors):
            c, ld = p._capacitance()
            chol[i, : p.rank, : p.rank] = c.cpu()
            logdet[i] = ld.cpu()
        self.chol, self.logdet = chol.to(device), logdet.to(device)
        self._const = self.dim * math.log(2.0 * math.pi)

    @staticmethod
    def _factor_groups(priors: Sequence[GaussianPrior], device, dtype=None
                       ) -> list[tuple[slice, torch.Tensor]]:
        """(rows, F diag(1/d)) for each run of consecutive identical priors of rank > 0.

        F / d serves both directions: u = F (r / d) = (F / d) r and D^{-1} F^T a = (F / d)^T a.
        """
        groups: list[tuple[slice, torch.Tensor]] = []
        start = 0
        for i in range(1, len(priors) + 1):
            if i == len(priors) or priors[i] is not priors[start]:
                p = priors[start]
                if p.rank:
                    scaled = (p.cov_factor / p.variance).to(device, dtype)
                    groups.append((slice(start, i), scaled))
                start = i
        return groups

    def _terms(self, theta: torch.Tensor):
        """rd = (theta - mu) / d, the quadratic form (float64, R) and w (float64, R x K)."""
        r = theta - self.mean
        rd = r / self.variance
        quad = torch.linalg.vecdot(r, rd).double()
        w = None
        if self.rank:
            u = rd.new_zeros(self.runs, self.rank)
            for rows, scaled in self.groups:
                u[rows, : scaled.shape[0]] = r[rows] @ scaled.T
            w = torch.linalg.solve_triangular(self.chol, u.double().unsqueeze(-1), upper=False)
            quad = quad - w.square().sum((-2, -1))
        return rd, quad, w

    def log_density(self, quad: torch.Tensor) -> torch.Tensor:
        """log p_r from each run's quadratic form (theta - mu)^T Sigma^{-1} (theta - mu)."""
        return -0.5 * (self._const + self.logdet + quad)

    @torch.no_grad()
    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """log p_r(theta_r) for every run, float64 (R,); theta is (R, D)."""
        return self.log_density(self._terms(theta)[1])

    @torch.no_grad()
    def add_neg_log_prob_grad_(
        self, theta: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """grad_r += weight_r * (-grad log p_r(theta_r)); return log p_r, float64 (R,).

        `theta` and `grad` are (R, D) (views of the engine's matrices are fine); `weight` has one
        entry per run (typically 1 / N_r: the loss is mean NLL - log p / N).
        """
        rd, quad, w = self._terms(theta)
        g = rd
        if w is not None:
            a = torch.linalg.solve_triangular(self.chol.transpose(-1, -2), w, upper=True)
            a = a.squeeze(-1).to(rd.dtype)
            g = rd.clone()
            for rows, scaled in self.groups:
                g[rows] -= a[rows, : scaled.shape[0]] @ scaled
        grad.addcmul_(g, weight.view(-1, 1))
        return self.log_density(quad)

    def preconditioner(self, lr: torch.Tensor, num_data: torch.Tensor, cap: float
                       ) -> PriorPreconditioner:
        """The preconditioner by the whole prior covariance that keeps every step on the prior
        at lr x curvature <= `cap` (`PriorPreconditioner`), for runs with base learning rates
        `lr` and training-set sizes `num_data` (both (R,))."""
        return PriorPreconditioner(self, lr, num_data, cap)

    def mahalanobis_rms(self, theta: torch.Tensor) -> torch.Tensor:
        """sqrt((theta - mu)^T Sigma^{-1} (theta - mu) / D) per run (R,): 1 for a typical draw
        from the prior, much larger for a chain far outside it."""
        return (self._terms(theta)[1] / self.dim).clamp(min=0).sqrt()


class PriorPreconditioner:
    """A constant preconditioner M per run from the run's whole prior covariance
    Sigma = diag(d) + F^T F: every step on the prior is stable, and every direction of the prior,
    the low-rank ones included, relaxes at the same pace.

    On the mean loss L = NLL - log p / N, an explicit step of size lr sees the prior's curvature
    lr Sigma^{-1} / N; a tight prior (SWAG variances ~1e-7 at small scales) makes that 1e2-1e6,
    where SGD, SGLD and SGHMC diverge. With a = cap N / lr (per run),

        M = a Sigma (I + a Sigma)^{-1}        (a function of Sigma: symmetric, 0 < M < I)

    the preconditioned prior curvature lr M Sigma^{-1} / N has the eigenvalues
    cap / (1 + a sigma) <= cap (sigma the eigenvalues of Sigma): along every eigendirection the
    step is stable, and where the prior pins a direction (a sigma << 1) it relaxes in about
    1 / cap steps, whatever sigma is. A diagonal preconditioner (m_i = min(1, a d_i)) pins the
    low-rank directions too, where Sigma's variance is up to 1e4 times d: they relaxed 1e4 times
    slower. Where the prior does not pin a direction (a sigma >> 1), M ~ I: plain steps, so the
    likelihood is never made stiffer (M < I). A constant positive definite M leaves the
    stationary density exp(-U / T) of the Langevin dynamics d theta = -M grad U dt +
    sqrt(2 T M) dW unchanged (and of SGHMC with mass M^{-1}), and gradient descent keeps its
    fixed point, the MAP.

    Everything is O(D K) per step, no D x D matrix. With A = I + a Sigma = E + a F^T F,
    E = diag(1 + a d), Woodbury gives A^{-1} v = E^{-1} v - E^{-1} F^T K^{-1} F E^{-1} v with the
    K x K capacitance K = I / a + F E^{-1} F^T (Cholesky once, float64); then

        M v = v - A^{-1} v,
        xi = A^{-1} (x + y) - y ~ N(0, M),  x ~ N(0, a Sigma), y ~ N(0, I)

    (Matheron's rule: x - a Sigma A^{-1} (x + y) has covariance a Sigma - a Sigma A^{-1}
    a Sigma = M, and a Sigma A^{-1} = I - A^{-1}); x = sqrt(a) (sqrt(d) z1 + F^T z2) from
    standard normals z1 (D), z2 (K), y = z3 (D). F is read through the packed prior's
    F diag(1/d) (no second copy of the factor): F v = (F / d)(d v), F^T w = d (F / d)^T w.
    """

    def __init__(self, prior: PackedPrior, lr: torch.Tensor, num_data: torch.Tensor,
                 cap: float) -> None:
        self.prior, self.cap = prior, cap
        dtype, device = prior.variance.dtype, prior.variance.device
        self.a = (cap * num_data.double() / lr.double()).view(-1, 1).to(device)  # float64
        self.scale = self.a.to(dtype)
        self.e = 1.0 + self.scale * prior.variance  # (R, D)
        self.rank = prior.rank
        # constants of every step: E^{-1} and D E^{-1} (Woodbury's diagonal parts), and the
        # buffers the fused step writes into (rows of rank-0 runs stay 0 in `_back`)
        self.inv_e = 1.0 / self.e
        self.d_over_e = prior.variance * self.inv_e
        if self.rank:
            self.chol = torch.linalg.cholesky(self._capacitance())
            runs, dim = prior.runs, prior.dim
            self._pair = prior.variance.new_empty(2, runs, dim)
            self._back = prior.variance.new_zeros(runs, dim)

    def _capacitance(self) -> torch.Tensor:
        """K_r = I / a_r + F_r diag(1 / e_r) F_r^T, float64 (R, K, K), in column chunks."""
        k = self.rank
        cap = torch.diag_embed((1.0 / self.a).expand(-1, k)).clone()
        d2 = (self.prior.variance.double() ** 2).expand(self.prior.runs, -1)
        for rows, scaled in self.prior.groups:
            kr = scaled.shape[0]
            for start in range(0, self.prior.dim, 1 << 18):
                cols = slice(start, start + (1 << 18))
                g = scaled[:, cols].double()  # F / d
                w = d2[rows, cols] / self.e[rows, cols].double()  # d^2 / e
                cap[rows, :kr, :kr] += torch.einsum("kd,rd,ld->rkl", g, w, g)
        return cap

    def _solve(self, v: torch.Tensor) -> torch.Tensor:
        """A^{-1} v for every run (v is (R, D))."""
        ve = v / self.e
        if not self.rank:
            return ve
        d = self.prior.variance
        u = ve.new_zeros(self.prior.runs, self.rank)
        dve = d * ve
        for rows, scaled in self.prior.groups:
            u[rows, : scaled.shape[0]] = dve[rows] @ scaled.T  # F E^{-1} v
        w = torch.cholesky_solve(u.double().unsqueeze(-1), self.chol).squeeze(-1).to(v.dtype)
        back = torch.zeros_like(v)
        for rows, scaled in self.prior.groups:
            back[rows] = w[rows, : scaled.shape[0]] @ scaled  # (F / d)^T w
        return ve - d * back / self.e

    @torch.no_grad()
    def prior_step_(self, theta: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor
                    ) -> torch.Tensor:
        """grad_r <- M_r (grad_r + weight_r Sigma_r^{-1} (theta_r - mu_r)) in place; return
        log p_r(theta_r), float64 (R,): `PackedPrior.add_neg_log_prob_grad_` then `apply_`, in
        one Woodbury solve instead of two.

        M Sigma^{-1} = a Sigma A^{-1} Sigma^{-1} = a A^{-1} (Sigma and A = I + a Sigma commute),
        so with r = theta - mu and g the likelihood's gradient

            M (g + w Sigma^{-1} r) = g - A^{-1} (g - w a r),

        and A^{-1} v = E^{-1} v - D E^{-1} F^T K^{-1} F E^{-1} v (`_solve`). The two K-vectors
        the step needs, F (r / d) = (F / d) r for log p and F E^{-1} v = (F / d)(D E^{-1} v) for
        the solve, come from one product with the factor.
        """
        prior = self.prior
        r = (torch.sub(theta, prior.mean, out=self._pair[0]) if self.rank
             else theta - prior.mean)
        quad = torch.linalg.vecdot(r, r / prior.variance).double()
        coef = (weight.double().view(-1, 1) * self.a).to(grad.dtype)  # w a = cap / lr
        v = torch.addcmul(grad, r, coef, value=-1.0)
        grad.addcmul_(v, self.inv_e, value=-1.0)  # g - E^{-1} v
        if self.rank:
            pair, k = self._pair, self.rank
            torch.mul(v, self.d_over_e, out=pair[1])
            u = pair.new_zeros(2, prior.runs, k)
            for rows, scaled in prior.groups:
                u[:, rows, : scaled.shape[0]] = pair[:, rows] @ scaled.T
            u = u.double().unsqueeze(-1)
            w = torch.linalg.solve_triangular(prior.chol, u[0], upper=False)
            quad = quad - w.square().sum((-2, -1))
            c = torch.cholesky_solve(u[1], self.chol).squeeze(-1).to(grad.dtype)
            for rows, scaled in prior.groups:
                torch.matmul(c[rows, : scaled.shape[0]], scaled, out=self._back[rows])
            grad.addcmul_(self._back, self.d_over_e)  # + D E^{-1} F^T K^{-1} F E^{-1} v
        return prior.log_density(quad)

    @torch.no_grad()
    def apply_(self, grad: torch.Tensor) -> None:
        """grad <- M grad (R, D), in place."""
        grad.sub_(self._solve(grad))

    @torch.no_grad()
    def noise(self, z1: torch.Tensor, z2: torch.Tensor, z3: torch.Tensor) -> torch.Tensor:
        """N(0, M) draws (R, D) from standard normals z1 (R, D), z2 (R, K), z3 (R, D)."""
        d = self.prior.variance
        x = d.sqrt() * z1
        if self.rank:
            back = torch.zeros_like(x)
            for rows, scaled in self.prior.groups:
                back[rows] = z2[rows, : scaled.shape[0]] @ scaled
            x = x + d * back  # + F^T z2
        x = x * self.scale.sqrt()
        return self._solve(x + z3) - z3

    def max_step_curvature(self) -> torch.Tensor:
        """(R,) an upper bound of lr x the largest preconditioned prior curvature:
        cap / (1 + a sigma_min) with sigma_min >= min d."""
        return self.cap / (1.0 + self.a.view(-1) * self.prior.variance.double().amin(1))
