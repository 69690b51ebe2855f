"""R Gaussian priors evaluated block by block over packed parameters, never concatenating them.

Run r's prior is N(mu_r, Sigma_r), Sigma_r = diag(d_r) + F_r^T F_r (F_r is K_r x D). The flat
parameter vector theta_r is the concatenation of the parameter blocks (tensors) b, and every term
is a sum over blocks:

    r_b  = theta_b - mu_b,   rd_b = r_b / d_b,
    quad = sum_b r_b . rd_b - |w|^2,    u = sum_b F_b rd_b,    w = L^{-1} u,
    log p = -(D log 2 pi + log det Sigma + quad) / 2,

with L L^T = C = I + F diag(1/d) F^T (K x K, float64; Woodbury and the matrix determinant lemma,
as in :class:`~bprior_core.prior.GaussianPrior`). The gradient is computed directly, not by
autograd: with a = C^{-1} u = L^{-T} w,

    -grad_theta log p = Sigma^{-1} r = rd - D^{-1} F^T a,   block by block: rd_b - (a . F_b) / d_b.

Runs of a pack may have different ranks: factors are padded with zero rows, which leave C, the
determinant and the gradient unchanged. Tensors that every run shares (the learned prior's mean,
typically) are stored once and broadcast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .prior import GaussianPrior


def _blocks(t: torch.Tensor, numels: Sequence[int]) -> list[torch.Tensor]:
    return list(torch.split(t, list(numels), dim=-1))


def _stacked_blocks(tensors: Sequence[torch.Tensor], numels: Sequence[int], device) -> list:
    """Per block, the runs' slices stacked to (R, ...); one shared tensor is broadcast instead."""
    if all(t is tensors[0] for t in tensors):
        shared = tensors[0].to(device)
        return [b.unsqueeze(0).expand(len(tensors), *b.shape) for b in _blocks(shared, numels)]
    per_run = [_blocks(t.to(device), numels) for t in tensors]
    return [torch.stack(parts) for parts in zip(*per_run, strict=True)]


class PackedPrior:
    """The priors of R runs, laid out in the blocks of a packed model's parameters."""

    def __init__(self, priors: Sequence[GaussianPrior], numels: Sequence[int], device) -> None:
        if not priors:
            raise ValueError("a packed prior needs at least one prior")
        dim = sum(numels)
        for i, p in enumerate(priors):
            if p.dim != dim:
                raise ValueError(f"prior {i} has D={p.dim} parameters but the model has {dim}")
        self.runs, self.dim, self.numels = len(priors), dim, list(numels)
        rank = max(p.rank for p in priors)
        self.rank = rank
        self.mean = _stacked_blocks([p.mean for p in priors], numels, device)
        self.variance = _stacked_blocks([p.variance for p in priors], numels, device)
        factors = [p.cov_factor for p in priors]
        if rank and not all(f is factors[0] for f in factors):
            factors = [torch.cat([f, f.new_zeros(rank - f.shape[0], dim)]) for f in factors]
        self.factor = _stacked_blocks(factors, numels, device) if rank else []
        chol = torch.eye(rank, dtype=torch.float64).repeat(self.runs, 1, 1)
        logdet = torch.zeros(self.runs, dtype=torch.float64)
        for i, p in enumerate(priors):
            c, ld = p._capacitance()
            chol[i, : p.rank, : p.rank] = c.cpu()
            logdet[i] = ld.cpu()
        self.chol, self.logdet = chol.to(device), logdet.to(device)
        self._const = dim * math.log(2.0 * math.pi)

    def _residuals(self, params: Sequence[torch.Tensor]) -> tuple[list, list, torch.Tensor, torch.Tensor]:
        """Per block r_b and rd_b; the diagonal quadratic term and u, both float64 (R,), (R, K)."""
        runs = self.runs
        quad = torch.zeros(runs, dtype=torch.float64, device=self.chol.device)
        u = torch.zeros(runs, self.rank, dtype=torch.float64, device=self.chol.device)
        res, res_d = [], []
        for b, p in enumerate(params):
            r = p.detach().view(runs, -1) - self.mean[b]
            rd = r / self.variance[b]
            quad += (r * rd).sum(1, dtype=torch.float64)
            if self.rank:
                u += torch.einsum("rn,rkn->rk", rd, self.factor[b]).double()
            res.append(r)
            res_d.append(rd)
        return res, res_d, quad, u

    def _solve(self, u: torch.Tensor) -> torch.Tensor:
        """w = L^{-1} u per run, (R, K) float64."""
        return torch.linalg.solve_triangular(self.chol, u.unsqueeze(-1), upper=False).squeeze(-1)

    def _log_prob(self, quad: torch.Tensor) -> torch.Tensor:
        return -0.5 * (self._const + self.logdet + quad)

    @torch.no_grad()
    def log_prob(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """log p_r(theta_r) for every run, float64 (R,)."""
        _, _, quad, u = self._residuals(params)
        if self.rank:
            quad = quad - self._solve(u).square().sum(-1)
        return self._log_prob(quad)

    @torch.no_grad()
    def add_neg_log_prob_grad_(
        self, params: Sequence[torch.Tensor], weight: torch.Tensor
    ) -> torch.Tensor:
        """Add weight_r * (-grad log p_r) to each parameter's .grad; return log p_r, float64 (R,).

        `weight` has one entry per run (typically 1 / N_r: the loss is mean NLL - log p / N).
        """
        _, res_d, quad, u = self._residuals(params)
        a = None
        if self.rank:
            w = self._solve(u)
            quad = quad - w.square().sum(-1)
            a = torch.linalg.solve_triangular(
                self.chol.transpose(-1, -2), w.unsqueeze(-1), upper=True
            ).squeeze(-1)
        weight = weight.view(self.runs, 1)
        for b, p in enumerate(params):
            g = res_d[b]
            if a is not None:
                g = g - torch.einsum("rk,rkn->rn", a.to(g.dtype), self.factor[b]) / self.variance[b]
            g = g * weight
            if p.grad is None:
                p.grad = g.view_as(p).clone()
            else:
                p.grad.view(self.runs, -1).add_(g)
        return self._log_prob(quad)

    def max_curvature(self) -> torch.Tensor:
        """Largest 1 / d of each run's prior (R,): an upper bound on the largest eigenvalue of
        Sigma^{-1} (the low-rank part only widens the prior), reached closely in high D."""
        inv = [(1.0 / v).amax(dim=1) for v in self.variance]
        return torch.stack(inv).amax(dim=0)
