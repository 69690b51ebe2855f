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
from collections.abc import Callable, Iterator
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from .data import TensorTask, infinite_batches
from .models import (
    Classifier,
    flat_parameters,
    load_flat_parameters,
    parameter_spec,
    refresh_batchnorm,
)
from .prior import GaussianPrior
from .samplers import CyclicalSchedule
from .settings import PriorLearningSettings
from .swag import SWAG

OBJECTIVES = ("supervised", "simclr")


# ----------------------------------------------------------------------------- objectives


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random view of each image (batched): resized crop, flip, brightness/contrast, noise."""
    n = x.shape[0]
    rand = lambda *shape: torch.rand(*shape, generator=gen).to(x.device)  # noqa: E731
    scale = 0.6 + 0.4 * rand(n)
    shift = (1 - scale).unsqueeze(1) * (2 * rand(n, 2) - 1)
    flip = torch.where(rand(n) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    view = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = 0.6 + 0.8 * rand(n, 1, 1, 1)
    brightness = 0.8 * rand(n, 1, 1, 1) - 0.4
    noise = 0.1 * torch.randn(view.shape, generator=gen).to(x.device)
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
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    lr_at: Callable[[int], float],
    settings: PriorLearningSettings,
    on_step: Callable[[int], None] | None = None,
    desc: str = "",
    progress: bool = True,
) -> float:
    """Plain momentum SGD on `objective.loss`; returns the last loss. Raises on divergence."""
    from tqdm.auto import tqdm

    opt = torch.optim.SGD(
        objective.parameters(), lr=settings.pretrain_lr, momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )
    objective.train()
    loss_value = float("nan")
    for k in tqdm(range(steps), desc=desc, leave=False, disable=not progress):
        for g in opt.param_groups:
            g["lr"] = lr_at(k)
        x, y = next(batches)
        loss = objective.loss(x, y)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"{desc}: loss became {loss_value} at step {k}; lower the lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(k)
    return loss_value


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
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
    torch.manual_seed(seed)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    # channels-last convolutions measured 0.75-0.8x the time of the default layout on CPU
    model.to(device, memory_format=torch.channels_last)
    if objective == "supervised":
        obj: nn.Module = SupervisedObjective(model)
    else:
        feature_dim = model.head.in_features
        obj = SimCLRObjective(model.backbone, feature_dim, settings.simclr_temperature, gen)
    obj.to(device, memory_format=torch.channels_last)
    batches = infinite_batches(source, settings.batch_size, gen, device)
    s = settings
    warm = s.pretrain_steps
    last_pretrain = sgd_steps(
        obj, batches, warm,
        lr_schedule(max(warm, 1), s.pretrain_lr, "cyclical"), s,
        desc=f"pre-train ({objective})", progress=progress,
    )
    swag = SWAG(s.max_rank)

    def collect(k: int) -> None:
        if (k + 1) % s.collect_every == 0:
            swag.collect(flat_parameters(model.backbone).detach())

    last_swag = sgd_steps(
        obj, batches, s.swag_steps,
        lr_schedule(s.swag_steps, s.swag_lr, s.swag_schedule, s.swag_cycles), s,
        on_step=collect, desc=f"SWAG ({objective})", progress=progress,
    )
    meta = {
        **parameter_spec(model.backbone),
        "learned_by": {
            "method": "swag",
            "objective": objective,
            "seed": seed,
            "snapshots": swag.n_collected,
            "final_pretrain_loss": last_pretrain,
            "final_swag_loss": last_swag,
            **asdict(settings),
        },
    }
    prior = swag.to_prior(meta=meta)
    load_flat_parameters(model.backbone, prior.mean.to(device))
    refresh_batchnorm(
        model.backbone, (next(batches)[0] for _ in range(s.bn_refresh_batches))
    )
    model.to(memory_format=torch.contiguous_format)
    state = {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items()}
    return prior.to("cpu"), state


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
                     desc="task directions", progress=progress)
    model.backbone.load_state_dict(state)
    model.to(memory_format=torch.contiguous_format)
    factor = torch.stack(directions) / math.sqrt(len(directions))
    meta = {**parameter_spec(model.backbone),
            "learned_by": {"method": "task_directions", "objective": "supervised", "seed": seed,
                           "snapshots": len(directions), "final_loss": last, **asdict(s)}}
    return GaussianPrior(start.cpu(), torch.ones_like(start).cpu(), factor.cpu(), meta)
