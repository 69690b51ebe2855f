"""Backbones with a separate linear head, and the flat-vector view of a backbone's parameters.

The prior covers exactly the backbone's trainable parameters, flattened in
`backbone.parameters()` order (the authors' order). BatchNorm running statistics (buffers) and the
classifier head are not covered: the head is a fresh linear layer with no prior term.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

TORCHVISION_PREFIX = "torchvision:"


class ModelError(ValueError):
    """A model name or weights file that cannot be used; the message says what would work."""


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
        # in-place ReLUs (on tensors nothing else reads): the same values, less memory traffic
        out = torch.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu_(out + self.shortcut(x))


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
            nn.ReLU(inplace=True),
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


def _small_resnet_backbone() -> tuple[nn.Module, int]:
    backbone = SmallResNet()
    return backbone, backbone.feature_dim


# the built-in backbones by name (besides `torchvision:<name>`): a new one is one more entry
BACKBONES = {"small_resnet": _small_resnet_backbone, "resnet50": _resnet50_backbone}
MODEL_NAMES = tuple(BACKBONES)


def torchvision_names() -> list[str]:
    """The classification models torchvision can build."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_model_name(name: str) -> None:
    """ModelError unless `name` is a model `build_model` knows (closest names suggested)."""
    if name in MODEL_NAMES:
        return
    if name.startswith(TORCHVISION_PREFIX):
        arch, known = name.removeprefix(TORCHVISION_PREFIX), torchvision_names()
        if arch in known:
            return
        import difflib

        close = difflib.get_close_matches(arch, known, n=3) or known[:3]
        raise ModelError(f"unknown torchvision model {arch!r}; closest: "
                         f"{', '.join(TORCHVISION_PREFIX + c for c in close)}")
    raise ModelError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)} or "
                     f"{TORCHVISION_PREFIX}<name> (a torchvision classification model, e.g. "
                     f"{TORCHVISION_PREFIX}resnet18)")


def input_channels(name: str) -> int:
    """Image channels the model takes: 1 for small_resnet (grayscale), else 3 (RGB)."""
    return 1 if name == "small_resnet" else 3


def _final_linear(net: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The model's last Linear layer (its classifier) with its parent and attribute name."""
    found = None
    for parent_name, parent in net.named_modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, name, child, f"{parent_name}.{name}".lstrip("."))
    if found is None:
        raise ModelError(f"{type(net).__name__} has no Linear classifier to replace by the run's "
                         "head; use a model whose last layer is a Linear")
    return found[0], found[3], found[2]


def _torchvision_backbone(arch: str, weights: str | None) -> tuple[nn.Module, int]:
    """torchvision's `arch`, untrained or with a local state dict, its last Linear removed."""
    import torchvision

    net = torchvision.models.get_model(arch, weights=None)
    parent, path, linear = _final_linear(net)
    if weights is not None:
        load_checked_weights(net, weights, skip=path)
    setattr(parent, path.rsplit(".", 1)[-1], nn.Identity())
    return net, linear.in_features


def load_checked_weights(net: nn.Module, path: str, skip: str = "") -> None:
    """Load a local state dict into `net` (read with weights_only=True); keys under `skip` (the
    classifier that the run's head replaces) are ignored. ModelError naming the first keys that
    are missing, unexpected or of the wrong shape."""
    from ..priors.files import PriorFileError, load_torch_file

    try:
        state = load_torch_file(path)
    except PriorFileError as exc:
        raise ModelError(f"model_weights: {exc}") from None
    except OSError as exc:
        raise ModelError(f"model_weights: cannot read {path} ({exc.strerror or exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"model_weights: {path} is not a state dict (a mapping of names to "
                         "tensors)")
    mine = {k: v for k, v in net.state_dict().items() if not k.startswith(skip + ".")}
    theirs = {k: v for k, v in state.items() if not k.startswith(skip + ".")}
    missing = [k for k in mine if k not in theirs]
    unexpected = [k for k in theirs if k not in mine]
    shapes = [f"{k} {tuple(theirs[k].shape)} vs {tuple(v.shape)}" for k, v in mine.items()
              if k in theirs and theirs[k].shape != v.shape]
    problems = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("wrong shape (file vs model)", shapes)) if keys]
    if problems:
        raise ModelError(f"model_weights: {path} does not fit {type(net).__name__} ("
                         + "; ".join(problems) + ")")
    net.load_state_dict(theirs, strict=False)


def build_model(name: str, num_classes: int, weights: str | None = None) -> Classifier:
    """A backbone + fresh linear head by name: `small_resnet`, `resnet50`, or
    `torchvision:<name>` (any torchvision classification model, its last Linear replaced by the
    head), optionally from a local state dict `weights` (torchvision models)."""
    check_model_name(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if name.startswith(TORCHVISION_PREFIX):
        backbone, feature_dim = _torchvision_backbone(name.removeprefix(TORCHVISION_PREFIX),
                                                      weights)
    elif weights is not None:
        raise ModelError(f"model_weights is for torchvision models; {name!r} takes none")
    else:
        backbone, feature_dim = BACKBONES[name]()
    return Classifier(backbone, nn.Linear(feature_dim, num_classes))


def build_backbone(name: str) -> nn.Module:
    """The named model's backbone alone (freshly initialised): what a prior covers and stored
    backbone weights are checked against."""
    return build_model(name, num_classes=2).backbone


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
