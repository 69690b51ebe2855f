"""R Gaussian priors evaluated together on the runs' parameter matrix (R, D), gradient included.

Run r's prior is N(mu_r, Sigma_r), Sigma_r = diag(d_r) + F_r^T F_r (F_r is K x D). With
theta_r row r of the parameter matrix (the engine's master weights, one row per run; the prior
reads that matrix in place and copies nothing):

    r = theta - mu,   rd = r / d,   u = F rd,   w = L^{-1} u,   a = L^{-T} w = C^{-1} u,
    quad = r . rd - |w|^2,   log p = -(D log 2 pi + log det Sigma + quad) / 2,
    -grad_theta log p = Sigma^{-1} r = rd - (F^T a) / d,

with L L^T = C = I + F diag(1/d) F^T (K x K, float64; Woodbury and the matrix determinant lemma,
as in :class:`~bprior_core.prior.GaussianPrior`). The gradient is computed directly, not by
autograd, in a handful of (R, D) operations whatever the number of parameter tensors. Runs may
have different ranks: factors are padded with zero rows, which leave C, the determinant and the
gradient unchanged. Tensors that runs share are stored once: a mean or variance common to every
run is broadcast, and consecutive runs with the same factor (the same prior object, as a study
passes for the seeds of one arm) form a group whose factor is read once per step for the whole
group, (R_g, D) x (D, K) instead of R_g matrix-vector products.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .prior import GaussianPrior
from .updates import stiffness_preconditioner


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

    @torch.no_grad()
    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """log p_r(theta_r) for every run, float64 (R,); theta is (R, D)."""
        return -0.5 * (self._const + self.logdet + self._terms(theta)[1])

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
        return -0.5 * (self._const + self.logdet + quad)

    def preconditioner(self, lr: torch.Tensor, num_data: torch.Tensor, cap: float
                       ) -> torch.Tensor:
        """Diagonal preconditioner m (R, D) that keeps every step on the prior stable.

        On the mean loss L = NLL - log p / N an explicit step of size lr sees the prior's
        curvature lr / (N d_i) along coordinate i (at most; Sigma^{-1} <= D^{-1}); a tight prior
        (small scale, SWAG variances ~1e-6) makes that 1e2 .. 1e6, where SGD, SGLD and SGHMC
        diverge. With m_i = min(1, cap N d_i / lr) every step sees at most `cap`:

            theta <- theta - lr m * grad L + sqrt(2 lr T / N) sqrt(m) * xi      (SGLD; SGHMC alike)

        A constant positive preconditioner leaves the stationary density exp(-U / T) unchanged
        (Langevin dynamics d theta = -M grad U dt + sqrt(2 T M) dW), and gradient descent keeps
        its fixed point, the MAP. For the prior alone the discretised chain's stationary
        variance is T Sigma / (1 - c / 2) for SGLD at step curvature c, and less inflated for
        SGHMC: cap = 0.1 keeps it within 5.3 % (SGLD) and 2.7 % (SGHMC, momentum 0.9; both
        solved exactly from the chains' linear recursions). Coordinates the prior does not pin
        (m_i = 1) keep plain steps, so the likelihood is never made stiffer; pinned coordinates
        move at the prior's own pace.
        """
        m = stiffness_preconditioner(self.variance, lr.view(-1, 1), num_data.view(-1, 1), cap)
        return m.expand(self.runs, self.dim)

    def mahalanobis_rms(self, theta: torch.Tensor) -> torch.Tensor:
        """sqrt((theta - mu)^T Sigma^{-1} (theta - mu) / D) per run (R,): 1 for a typical draw
        from the prior, much larger for a chain far outside it."""
        return (self._terms(theta)[1] / self.dim).clamp(min=0).sqrt()
