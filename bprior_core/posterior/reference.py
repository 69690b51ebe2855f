"""A reference posterior that converges on a CPU: the head of a network on fixed features,
sampled exactly by Metropolis-adjusted HMC (`hmc`), beside SGD and the paper's SGHMC recipe on
the same subspace.

The backbone is frozen at the pretrained weights (the prior's mean, BatchNorm statistics frozen
in eval mode), so a run's features are fixed and the posterior over the head's weights W (K x F)
and biases b (K) is that of a Bayesian softmax regression,

    log pi_T(W, b) = [sum_i log softmax(W f_i + b)_{y_i} - (|W|^2 + |b|^2) / (2 v)] / T,

with a proper Gaussian prior N(0, v) on every sampled parameter and T the temperature (T = 1:
the Bayes posterior; the samplers' convention exp(-U / T)). Its gradient is analytic. This is
the subspace the issue allows where the backbone's directions cost too much: a gradient over
the learned prior's low-rank directions is a forward and backward pass of the network over all
n images (about 5 ms at n = 10 on one thread), against microseconds here.

Three arms per training subset, all on the same features:
- `reference`: HMC, C chains from dispersed starting points (draws of the prior), their draws
  averaged (the model average); diagnostics: rank-normalised R-hat and bulk ESS of every
  validation point's probability of its true class, the Monte Carlo SE of the model-averaged
  test accuracy (batch means: the spread of the accuracies of the averages of consecutive
  blocks of each chain's draws, over the square root of their number; conservative, as a
  shorter average flips more predictions), accept rates, divergences;
- `head_sgd`: SGD on this subspace trained to convergence: the MAP of the same posterior (its
  loss is convex with a unique minimum; found by L-BFGS to a gradient norm below 1e-6), the
  point estimate the model average is compared with;
- `head_sghmc`: the paper's recipe on this subspace: cyclical SGHMC at the profile's temperature
  and schedule, its samples after burn-in averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis.convergence import bulk_ess, rank_rhat
from ..sgmcmc.schedules import CyclicalSchedule
from ..sgmcmc.sghmc import SGHMC
from . import hmc

ARMS = ("reference", "head_sgd", "head_sghmc")
KEPT_DRAWS = 200  # draws per chain whose predictions are averaged (thinned evenly)
BATCHES = 4  # blocks per chain of the batch-means Monte Carlo SE of the averaged accuracy


@dataclass(frozen=True)
class HeadTask:
    """Fixed features (float64) and labels of one training subset, the validation and the test
    set, and the number of classes."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int

    @property
    def dim(self) -> int:
        """Sampled parameters: weights and biases of the head."""
        return self.classes * (self.train_x.shape[1] + 1)


def unpack(q: torch.Tensor, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of flat head parameters (C, K (F + 1)) -> weights (C, K, F) and biases (C, K)."""
    w = q.view(q.shape[0], classes, -1)
    return w[..., :-1], w[..., -1]


def logits(q: torch.Tensor, x: torch.Tensor, classes: int) -> torch.Tensor:
    """(C, m, K) logits of every chain's head on features x (m, F)."""
    w, b = unpack(q, classes)
    return torch.einsum("cki,mi->cmk", w, x) + b[:, None, :]


class HeadPosterior:
    """log pi_T of the head (module docstring) and its gradient, batched over rows of q."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: int, variance: float,
                 temperature: float) -> None:
        if not variance > 0 or not temperature > 0:
            raise ValueError(f"the head's prior variance and the temperature must be > 0, got "
                             f"{variance!r} and {temperature!r}")
        self.x, self.classes = x, classes
        self.onehot = F.one_hot(y, classes).to(x.dtype)
        self.variance, self.temperature = variance, temperature

    @property
    def dim(self) -> int:
        return self.classes * (self.x.shape[1] + 1)

    def __call__(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"the head's subspace has {self.dim} parameters ({self.classes} "
                             f"classes x {self.x.shape[1]} features + biases); got positions of "
                             f"shape {tuple(q.shape)}")
        z = logits(q, self.x, self.classes)
        log_probs = z.log_softmax(-1)
        loglik = (log_probs * self.onehot).sum((1, 2))
        residual = self.onehot - log_probs.exp()  # (C, n, K): d loglik / d logits
        grad_w = torch.einsum("cmk,mi->cki", residual, self.x)
        grad = torch.cat([grad_w, residual.sum(1)[..., None]], -1).reshape(q.shape)
        logp = loglik - 0.5 * q.square().sum(1) / self.variance
        return logp / self.temperature, (grad - q / self.variance) / self.temperature


def dispersed_starts(dim: int, chains: int, variance: float, generator: torch.Generator
                     ) -> torch.Tensor:
    """One starting point per chain, drawn from the prior: apart, so that chains that meet
    have found the posterior from different places."""
    return torch.randn(chains, dim, generator=generator, dtype=torch.float64) * math.sqrt(
        variance)


def check_starts(starts: torch.Tensor) -> None:
    """Chains must start apart: fewer than 2 chains, or two that coincide, cannot show that
    they found the same distribution."""
    if starts.shape[0] < 2:
        raise ValueError(f"a reference posterior needs at least 2 chains (4 advised), got "
                         f"{starts.shape[0]}")
    gaps = torch.cdist(starts, starts) + torch.eye(starts.shape[0], dtype=starts.dtype)
    if bool((gaps <= 1e-12).any()):
        raise ValueError("two chains start at the same point; start them apart (e.g. draws of "
                         "the prior)")


def average_probs(q: torch.Tensor, x: torch.Tensor, classes: int) -> torch.Tensor:
    """The mean over draws q (S, d) of each draw's softmax on x: (m, K)."""
    return torch.cat([logits(chunk, x, classes).softmax(-1)
                      for chunk in q.split(64)]).mean(0)


def sample_reference(task: HeadTask, variance: float, temperature: float, chains: int,
                     draws: int, warmup: int, leapfrog: int, seed: int) -> dict:
    """The reference posterior of one subset: its model-averaged test and validation
    probabilities and its diagnostics (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    starts = dispersed_starts(task.dim, chains, variance, gen)
    check_starts(starts)
    target = HeadPosterior(task.train_x, task.train_y, task.classes, variance, temperature)
    result = hmc.sample(target, starts, draws, warmup, leapfrog, generator=gen)
    keep = torch.linspace(0, draws - 1, min(KEPT_DRAWS, draws)).round().long().unique()
    kept = result.draws[:, keep]  # (C, S', d)
    flat = kept.reshape(-1, task.dim)
    test = average_probs(flat, task.test_x, task.classes)
    val = average_probs(flat, task.val_x, task.classes)
    # batch means: each chain's kept draws in BATCHES consecutive blocks, each block's model
    # average scored; the full average holds chains x BATCHES blocks' draws
    blocks = [b for c in range(chains) for b in kept[c].chunk(BATCHES)]
    per_block = [(average_probs(b, task.test_x, task.classes).argmax(-1)
                  == task.test_y).double().mean().item() for b in blocks]
    val_true = torch.stack([logits(kept[c], task.val_x, task.classes).softmax(-1)[
        :, torch.arange(len(task.val_y)), task.val_y] for c in range(chains)])  # (C, S', m)
    draws_np = val_true.numpy()
    varying = draws_np.std(axis=(0, 1)) > 1e-12
    rhat = rank_rhat(draws_np[..., varying]) if varying.any() else np.ones(1)
    ess = bulk_ess(draws_np[..., varying]) if varying.any() else np.full(1, np.inf)
    diagnostics = {
        "rhat_val_q95": float(np.quantile(rhat, 0.95)), "rhat_val_max": float(rhat.max()),
        "ess_val_median": float(np.median(ess)), "ess_val_min": float(ess.min()),
        "mc_se_accuracy": float(np.std(per_block, ddof=1) / math.sqrt(len(per_block))),
        "accept_rate": [round(float(a), 4) for a in result.accept_rate],
        "divergent": int(result.divergent.sum()), "chains": chains, "draws_per_chain": draws,
        "warmup": warmup, "leapfrog": leapfrog,
        "step_size": [float(s) for s in result.step_size],
    }
    return {"test": test, "val": val, "diagnostics": diagnostics}


def head_map(task: HeadTask, variance: float) -> torch.Tensor:
    """The head's MAP (flat, (1, d)): the unique maximum of the posterior (T does not move it),
    by L-BFGS from zero until the gradient's norm is below 1e-6."""
    target = HeadPosterior(task.train_x, task.train_y, task.classes, variance, 1.0)
    q = torch.zeros(1, task.dim, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([q], lr=1.0, max_iter=500, tolerance_grad=1e-6,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logp, grad = target(q.detach())
        q.grad = -grad
        return -logp.sum()

    for _ in range(20):  # restarts until converged (each runs up to max_iter iterations)
        opt.step(closure)
        if float(target(q.detach())[1].norm()) < 1e-6:
            break
    return q.detach()


def _train_head(task: HeadTask, variance: float, method: str, settings, seed: int,
                temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A head on the features: `sgd`, trained to convergence (`head_map`), or the cyclical
    `sghmc` recipe with the profile's settings (loss mean cross-entropy - log prior / n; its
    samples after burn-in averaged); returns test and validation probabilities."""
    if method == "sgd":
        q = head_map(task, variance)
        return (logits(q, task.test_x, task.classes)[0].softmax(-1),
                logits(q, task.val_x, task.classes)[0].softmax(-1))
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(task.train_x.shape[1], task.classes).double()
    with torch.no_grad():  # the engine's head initialisation, from this run's generator
        bound = 1 / math.sqrt(task.train_x.shape[1])
        head.weight.uniform_(-bound, bound, generator=gen)
        head.bias.uniform_(-bound, bound, generator=gen)
    n = len(task.train_y)
    s = settings
    opt = SGHMC(head.parameters(), lr=s.lr, num_data=n, momentum=s.momentum,
                temperature=temperature, generator=gen)
    schedule = CyclicalSchedule(s.steps, s.cycles, s.lr, s.explore_fraction,
                                s.samples_per_cycle, s.burn_in_cycles)
    sums, count = [torch.zeros(len(y), task.classes, dtype=torch.float64)
                   for y in (task.test_y, task.val_y)], 0
    for plan in schedule:
        batch = torch.randint(n, (min(s.batch_size, n),), generator=gen)
        for group in opt.param_groups:
            group["lr"] = plan.lr
        loss = F.cross_entropy(head(task.train_x[batch]), task.train_y[batch]) + sum(
            p.square().sum() for p in head.parameters()) / (2 * variance * n)
        opt.zero_grad()
        loss.backward()
        opt.step(noise=plan.noise)
        if plan.collect:
            with torch.no_grad():
                for total, x in zip(sums, (task.test_x, task.val_x), strict=True):
                    total += head(x).softmax(-1)
            count += 1
    with torch.no_grad():
        if count == 0:
            return head(task.test_x).softmax(-1), head(task.val_x).softmax(-1)
    return sums[0] / count, sums[1] / count


# ----------------------------------------------------------------------------- the study's runs


@torch.no_grad()
def features(backbone: torch.nn.Module, task, batch: int = 256) -> torch.Tensor:
    """The frozen backbone's features (float64) of every image of a DeviceTask, in order."""
    backbone.eval()
    return torch.cat([backbone(x).double().cpu() for x, _ in task.eval_chunks(batch)])


def head_task(backbone: torch.nn.Module, pool, val, test, indices: torch.Tensor) -> HeadTask:
    """A run's HeadTask: the features of its training subset (pool `indices`), the validation
    and the test set (the latter two shared by every run of a prior draw)."""
    train = pool.subset(indices.to(pool.labels.device))
    return HeadTask(features(backbone, train), train.labels.cpu(), features(backbone, val),
                    val.labels.cpu(), features(backbone, test), test.labels.cpu(),
                    pool.num_classes)


def run_arm(task: HeadTask, config: dict, settings) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """One reference-experiment run: (test probabilities, validation probabilities,
    diagnostics) of its arm (`reference`, `head_sgd` or `head_sghmc`) on the task."""
    variance = config["prior"]["variance"]
    seed = config["seed"] + 1_000_003 * config.get("chain", 0)
    if config["method"] == "hmc":
        h = config["hmc"]
        out = sample_reference(task, variance, config["train"]["temperature"], h["chains"],
                               h["draws"], h["warmup"], h["leapfrog"], seed)
        return out["test"], out["val"], out["diagnostics"]
    test, val = _train_head(task, variance, config["method"], settings, seed,
                            config["train"]["temperature"])
    return test, val, {}


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean over points of the total variation distance between two predictive distributions
    (m, K): half the L1 distance, 0 when they agree, 1 when disjoint."""
    return float(0.5 * (p - q).abs().sum(-1).mean())
