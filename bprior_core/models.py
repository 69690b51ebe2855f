"""Backbones with a separate linear head, and the flat-vector view of a backbone's parameters.

The prior covers exactly the backbone's trainable parameters, flattened in
`backbone.parameters()` order (the authors' order). BatchNorm running statistics (buffers) and the
classifier head are not covered: the head is a fresh linear layer with no prior term.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

MODEL_NAMES = ("small_resnet", "resnet50")


class Classifier(nn.Module):
    """A backbone producing features and a linear head producing logits."""

    def __init__(self, backbone: nn.Module, head: nn.Linear):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet-8 for 28x28 grayscale images (about 80k parameters): the CPU default backbone.

    Stem 3x3 conv (16 channels), then three basic blocks of 16/32/64 channels, each with stride 2
    (28 -> 14 -> 7 -> 4), global average pooling to a 64-dimensional feature.
    """

    feature_dim = 64

    def __init__(self, in_channels: int = 1, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks, c_in = [], widths[0]
        for width in widths:
            blocks.append(_BasicBlock(c_in, width, stride=2))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))


def _resnet50_backbone() -> tuple[nn.Module, int]:
    """torchvision's ResNet-50 with its `fc` removed (the paper's model), untrained."""
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feature_dim


def build_model(name: str, num_classes: int) -> Classifier:
    """Build a backbone + fresh linear head by name (`small_resnet` or `resnet50`)."""
    if name == "small_resnet":
        backbone: nn.Module = SmallResNet()
        feature_dim = backbone.feature_dim
    elif name == "resnet50":
        backbone, feature_dim = _resnet50_backbone()
    else:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return Classifier(backbone, nn.Linear(feature_dim, num_classes))


def prior_parameters(backbone: nn.Module) -> list[nn.Parameter]:
    """The parameters a prior covers: trainable backbone parameters in `parameters()` order."""
    return [p for p in backbone.parameters() if p.requires_grad]


def parameter_spec(backbone: nn.Module) -> dict[str, list]:
    """Names and shapes of the covered parameters, stored in a prior's metadata."""
    named = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    return {"param_names": [n for n, _ in named], "param_shapes": [list(p.shape) for _, p in named]}


def flat_parameters(backbone: nn.Module) -> torch.Tensor:
    """The covered parameters as one flat vector, differentiable w.r.t. the parameters."""
    return torch.cat([p.reshape(-1) for p in prior_parameters(backbone)])


def num_prior_parameters(backbone: nn.Module) -> int:
    """D: the number of scalar parameters the prior covers."""
    return sum(p.numel() for p in prior_parameters(backbone))


@torch.no_grad()
def load_flat_parameters(backbone: nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat vector into the covered parameters (inverse of `flat_parameters`)."""
    expected = num_prior_parameters(backbone)
    if flat.ndim != 1 or flat.numel() != expected:
        raise ValueError(
            f"flat vector has shape {tuple(flat.shape)} but the backbone has {expected} "
            "trainable parameters"
        )
    offset = 0
    for p in prior_parameters(backbone):
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def batchnorm_layers(module: nn.Module) -> Iterator[nn.modules.batchnorm._BatchNorm]:
    """All BatchNorm layers of a module."""
    return (m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


@torch.no_grad()
def refresh_batchnorm(model: nn.Module, batches: Iterator[torch.Tensor]) -> None:
    """Recompute BatchNorm running statistics as exact averages over the given input batches.

    Used for SWAG snapshots and for each collected posterior sample, whose weights differ from
    those the running statistics were accumulated with.
    """
    layers = list(batchnorm_layers(model))
    if not layers:
        return
    was_training = model.training
    saved_momentum = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over batches
    try:
        model.train()
        for x in batches:
            model(x)
    finally:
        for m, momentum in zip(layers, saved_momentum, strict=True):
            m.momentum = momentum
        model.train(was_training)
