"""Learning a prior on a source task: pre-training, then SWAG over SGD iterates.

Two objectives: `supervised` (cross-entropy on the source labels) and `simclr` (the paper's main,
self-supervised prior: SimCLR's NT-Xent contrastive loss between two augmented views, Chen et al.
2020). In both, the prior covers only the backbone: the supervised head and the SimCLR projector
are discarded. The SWAG phase runs SGD from the pre-trained weights with a constant or cyclical
learning rate and collects a snapshot of the backbone every `collect_every` steps; the returned
backbone weights are the SWA mean (the prior's mean) with BatchNorm statistics recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.subsets import infinite_batches
from ..data.tasks import TensorTask
from ..settings import PriorLearningSettings
from ..sgmcmc.schedules import CyclicalSchedule
from ..training.models import (
    Classifier,
    flat_parameters,
    load_flat_parameters,
    parameter_spec,
    refresh_batchnorm,
)
from .gaussian import GaussianPrior
from .swag import SWAG

OBJECTIVES = ("supervised", "simclr")


# ----------------------------------------------------------------------------- objectives


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random view of each image (batched): resized crop, flip, brightness/contrast, noise."""
    n = x.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=gen).to(x.device, x.dtype)  # noqa: E731
    scale = 0.6 + 0.4 * rand(n)
    shift = (1 - scale).unsqueeze(1) * (2 * rand(n, 2) - 1)
    flip = torch.where(rand(n) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    view = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = 0.6 + 0.8 * rand(n, 1, 1, 1)
    brightness = 0.8 * rand(n, 1, 1, 1) - 0.4
    noise = 0.1 * torch.randn(view.shape, generator=gen).to(x.device, x.dtype)
    return view * contrast + brightness + noise


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy between two batches of views."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, targets)


class SimCLRObjective(nn.Module):
    """Backbone + projector MLP; loss(x, y) ignores labels and contrasts two augmented views."""

    def __init__(self, backbone: nn.Module, feature_dim: int, temperature: float, gen):
        super().__init__()
        self.backbone = backbone
        self.projector = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.ReLU(), nn.Linear(feature_dim, 32)
        )
        self.temperature, self.gen = temperature, gen

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z1 = self.projector(self.backbone(augment(x, self.gen)))
        z2 = self.projector(self.backbone(augment(x, self.gen)))
        return nt_xent(z1, z2, self.temperature)


class SupervisedObjective(nn.Module):
    """Backbone + head trained with cross-entropy on the source labels."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model
        self.backbone = model.backbone

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.model(x), y)


# ----------------------------------------------------------------------------- training


def lr_schedule(total: int, lr0: float, schedule: str, cycles: int = 1) -> Callable[[int], float]:
    """Step -> learning rate: `constant`, or `cyclical` cosine with `cycles` cycles (one cycle is
    a single cosine decay), using the samplers' schedules."""
    if schedule == "constant":
        return lambda k: lr0
    cyclical = CyclicalSchedule(total, cycles, lr0, explore_fraction=0.0, samples_per_cycle=1)
    return lambda k: cyclical.at(k).lr


def sgd_steps(
    objective: nn.Module,
    batches: Iterator[tuple[Any, Any]],
    steps: int,
    lr_at: Callable[[int], float],
    settings: PriorLearningSettings,
    on_step: Callable[[int], None] | None = None,
    desc: str = "",
    progress: bool = True,
) -> list[float]:
    """Plain momentum SGD on `objective.loss` (a scalar, or one loss per run of a pack, whose
    sum is minimised: each run's parameters get their own loss's gradient); returns the last
    loss of each run. Raises on divergence."""
    from tqdm.auto import tqdm

    opt = torch.optim.SGD(
        objective.parameters(), lr=settings.pretrain_lr, momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )
    objective.train()
    values = [float("nan")]
    for k in tqdm(range(steps), desc=desc, leave=False, disable=not progress):
        for g in opt.param_groups:
            g["lr"] = lr_at(k)
        x, y = next(batches)
        loss = objective.loss(x, y)
        values = loss.detach().reshape(-1).tolist()
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"{desc}: loss became {bad[0]} at step {k}; lower the lr")
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if on_step is not None:
            on_step(k)
    return values


def learn_prior(
    model: Classifier,
    source: TensorTask,
    objective: str,
    settings: PriorLearningSettings,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[GaussianPrior, dict[str, torch.Tensor]]:
    """Pre-train `model`'s backbone on the source task, then learn a SWAG prior over it.

    Returns the prior (mean = SWA mean of the backbone's trainable parameters) and the backbone
    state dict holding that mean with BatchNorm statistics recomputed on the source data.
    """
    _check_objective(objective)
    device = torch.device(device)
    obj, gen = _objective(model, objective, settings, seed, device)
    batches = infinite_batches(source, settings.batch_size, gen, device)
    swags, losses = _swag_phases(
        obj, batches, lambda: [flat_parameters(model.backbone).detach()], 1, settings,
        objective, progress)
    return _finish(model, swags[0], losses[0], batches, objective, seed, settings, device)


def learn_priors_packed(
    models: Sequence[Classifier],
    source: TensorTask,
    objective: str,
    settings: PriorLearningSettings,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[tuple[GaussianPrior, dict[str, torch.Tensor]]]:
    """`learn_prior` for several draws of one source at once: model r with seed r, all trained
    together as one packed network (`packing`: grouped convolutions, per-run heads and
    projectors), each with its own batches, augmentations, losses and SWAG moments.

    Draw r's prior is `learn_prior(models[r], ..., seed=seeds[r])`'s up to floating-point
    rounding (equal in float64); the pack only shares the passes over the layers. `models`
    hold the draws' initial weights and receive their priors' means (as `learn_prior` does).
    """
    _check_objective(objective)
    if len(models) != len(seeds) or not models:
        raise ValueError(f"one seed per model: got {len(models)} models, {len(seeds)} seeds")
    device = torch.device(device)
    built = [_objective(m, objective, settings, seed, device)
             for m, seed in zip(models, seeds, strict=True)]
    packed = PackedObjective([obj for obj, _ in built], objective).to(device)
    streams = [infinite_batches(source, settings.batch_size, gen, device) for _, gen in built]
    # one batch per draw and step, each from the draw's own stream: ((x_r), (y_r))
    batches = (tuple(zip(*(next(b) for b in streams), strict=True)) for _ in iter(int, 1))
    swags, losses = _swag_phases(packed, batches, packed.backbone_rows, len(models), settings,
                                 objective, progress)
    return [_finish(m, swag, loss, stream, objective, seed, settings, device)
            for m, swag, loss, stream, seed
            in zip(models, swags, losses, streams, seeds, strict=True)]


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")


def _objective(model: Classifier, objective: str, settings: PriorLearningSettings, seed: int,
               device: torch.device) -> tuple[nn.Module, torch.Generator]:
    """The training objective of one draw and its generator (batches and augmentations); the
    global seed is set first, so a SimCLR projector's initial weights depend on `seed` only."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # channels-last convolutions measured 0.75-0.8x the time of the default layout on CPU
    model.to(device, memory_format=torch.channels_last)
    if objective == "supervised":
        obj: nn.Module = SupervisedObjective(model)
    else:
        feature_dim = model.head.in_features
        obj = SimCLRObjective(model.backbone, feature_dim, settings.simclr_temperature, gen)
    return obj.to(device, model.head.weight.dtype, memory_format=torch.channels_last), gen


def _swag_phases(obj: nn.Module, batches: Iterator, rows: Callable[[], list[torch.Tensor]],
                 runs: int, s: PriorLearningSettings, objective: str, progress: bool
                 ) -> tuple[list[SWAG], list[tuple[float, float]]]:
    """Pre-training, then the SWAG phase collecting every run's flat backbone (`rows()`) every
    `collect_every` steps; returns each run's SWAG moments and (last pre-training loss, last
    SWAG loss)."""
    warm = s.pretrain_steps
    pretrain = sgd_steps(obj, batches, warm, lr_schedule(max(warm, 1), s.pretrain_lr, "cyclical"),
                         s, desc=f"pre-train ({objective})", progress=progress)
    if warm == 0:
        pretrain = [float("nan")] * runs
    swags = [SWAG(s.max_rank) for _ in range(runs)]

    def collect(k: int) -> None:
        if (k + 1) % s.collect_every == 0:
            for swag, flat in zip(swags, rows(), strict=True):
                swag.collect(flat)

    final = sgd_steps(obj, batches, s.swag_steps,
                      lr_schedule(s.swag_steps, s.swag_lr, s.swag_schedule, s.swag_cycles), s,
                      on_step=collect, desc=f"SWAG ({objective})", progress=progress)
    return swags, list(zip(pretrain, final, strict=True))


def _finish(model: Classifier, swag: SWAG, losses: tuple[float, float], batches: Iterator,
            objective: str, seed: int, s: PriorLearningSettings, device: torch.device
            ) -> tuple[GaussianPrior, dict[str, torch.Tensor]]:
    """One draw's prior from its SWAG moments, and its backbone state: the SWA mean with
    BatchNorm statistics recomputed on the draw's next source batches."""
    meta = {
        **parameter_spec(model.backbone),
        "learned_by": {
            "method": "swag",
            "objective": objective,
            "seed": seed,
            "snapshots": swag.n_collected,
            "final_pretrain_loss": losses[0],
            "final_swag_loss": losses[1],
            **asdict(s),
        },
    }
    prior = swag.to_prior(meta=meta)
    load_flat_parameters(model.backbone, prior.mean.to(device))
    refresh_batchnorm(model.backbone, (next(batches)[0] for _ in range(s.bn_refresh_batches)))
    model.to(memory_format=torch.contiguous_format)
    state = {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items()}
    return prior.to("cpu"), state


class PackedObjective(nn.Module):
    """R objectives of one kind (`SupervisedObjective` or `SimCLRObjective`) as one packed
    network: `loss(xs, ys)` takes one batch per run and returns the R losses (R,)."""

    def __init__(self, objectives: Sequence[nn.Module], kind: str) -> None:
        super().__init__()
        from ..training.packing import PackedClassifier, load_run

        self.runs, self.kind = len(objectives), kind
        if kind == "supervised":
            models = [o.model for o in objectives]
        else:  # the projector's first layer is the packed classifier's per-run head
            models = [Classifier(o.backbone, o.projector[0]) for o in objectives]
            out = [o.projector[2] for o in objectives]
            self.out_weight = nn.Parameter(torch.stack([m.weight.detach() for m in out]))
            self.out_bias = nn.Parameter(torch.stack([m.bias.detach() for m in out]))
            self.gens = [o.gen for o in objectives]
            self.temperature = objectives[0].temperature
        self.net = PackedClassifier(models[0], self.runs, channels_last=True)
        for r, model in enumerate(models):
            load_run(self.net, r, model)

    def loss(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.kind == "supervised":
            logits = self.net(torch.stack(xs))
            runs, batch, classes = logits.shape
            return F.cross_entropy(logits.reshape(runs * batch, classes), torch.stack(ys).view(-1),
                                   reduction="none").view(runs, batch).mean(1)
        first = [augment(x, gen) for x, gen in zip(xs, self.gens, strict=True)]
        second = [augment(x, gen) for x, gen in zip(xs, self.gens, strict=True)]
        z1, z2 = self._project(torch.stack(first)), self._project(torch.stack(second))
        return torch.stack([nt_xent(a, b, self.temperature) for a, b in zip(z1, z2, strict=True)])

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """Every run's projector output (R, B, out) for its images x[r]."""
        hidden = torch.relu(self.net(x))
        return torch.einsum("rbf,rof->rbo", hidden, self.out_weight) + self.out_bias[:, None]

    def backbone_rows(self) -> list[torch.Tensor]:
        """Each run's flat backbone weights (the prior's order)."""
        from ..training.packing import run_view

        params = self.net.backbone_parameters()
        flat = torch.cat([run_view(p.detach(), self.runs) for p in params], dim=1)
        return list(flat)


def learn_task_directions(
    model: Classifier,
    source: TensorTask,
    settings: PriorLearningSettings,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> GaussianPrior:
    """The directions fine-tuning takes from `model`'s backbone weights theta_0 (a pretrained
    backbone, e.g. a SimCLR prior's mean) on a labelled task: `swag_steps` steps of supervised
    SGD at `swag_lr` (a fresh head), snapshots theta_k at `max_rank` evenly spaced steps.

    Returns N(theta_0, I + F^T F) with rows F_k = (theta_k - theta_0) / sqrt(K): its mean is the
    starting point, its low-rank factor spans where the task moves the weights (the covariance
    control's information; `GaussianPrior.shaped` sets its trace and share). `model` ends at
    theta_0 again."""
    s = settings
    if s.max_rank < 1:
        raise ValueError("task directions need max_rank >= 1")
    torch.manual_seed(seed)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    model.to(device, memory_format=torch.channels_last)
    start = flat_parameters(model.backbone).detach().clone()
    state = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    every = max(1, s.swag_steps // s.max_rank)
    directions: list[torch.Tensor] = []

    def collect(k: int) -> None:
        if (k + 1) % every == 0 and len(directions) < s.max_rank:
            directions.append(flat_parameters(model.backbone).detach() - start)

    batches = infinite_batches(source, s.batch_size, gen, device)
    last = sgd_steps(SupervisedObjective(model), batches, s.swag_steps,
                     lr_schedule(s.swag_steps, s.swag_lr, "constant"), s, on_step=collect,
                     desc="task directions", progress=progress)[0]
    model.backbone.load_state_dict(state)
    model.to(memory_format=torch.contiguous_format)
    factor = torch.stack(directions) / math.sqrt(len(directions))
    meta = {**parameter_spec(model.backbone),
            "learned_by": {"method": "task_directions", "objective": "supervised", "seed": seed,
                           "snapshots": len(directions), "final_loss": last, **asdict(s)}}
    return GaussianPrior(start.cpu(), torch.ones_like(start).cpu(), factor.cpu(), meta)
