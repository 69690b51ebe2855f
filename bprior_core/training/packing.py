"""R independent networks as ONE network: grouped convolutions, per-channel BatchNorm, per-run head.

Packed-Ensembles idea (Laurent et al., ICLR 2023), used here for independent runs rather than an
ensemble. Every `Conv2d(c_in, c_out, groups=g)` becomes `Conv2d(R c_in, R c_out, groups=R g)` and
every `BatchNorm2d(c)` becomes `BatchNorm2d(R c)`. Run r owns channels `[r c, (r + 1) c)` of every
layer, so its weights are rows `[r c_out, (r + 1) c_out)` of each packed tensor: every packed
parameter viewed as `(R, -1)` has run r's parameter, flattened, in row r. Group g of the packed
convolution sees only its own input channels, BatchNorm normalises each channel over its own run's
batch, and the head is a per-run linear map, so run r's outputs depend on run r's weights and
inputs only: training the pack is training R networks, up to floating-point rounding.

Inputs are `(R, B, C, H, W)` (one batch per run, all runs the same batch size), folded to
`(B, R C, H, W)`. Outputs are logits `(R, B, classes)`.

Backbones with layers that mix channels (Linear, LayerNorm, GroupNorm, attention, channel
concatenation or shuffle: MLPs, transformers, MobileNet, DenseNet, ConvNeXt) are stacked instead
(`StackedBackbone`): every parameter and buffer gets a leading run axis `(R, ...)` and the
forward pass is `torch.func.vmap` of the one-run network over it, which batches each layer per
run (a grouped convolution, a batched matmul, per-run normalisation statistics). The layout seen
by the engine is the same: every parameter viewed as `(R, -1)` has run r's parameter in row r.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .models import Classifier, prior_parameters

_CHANNELWISE = (nn.ReLU, nn.Identity, nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AvgPool2d,
                nn.Sequential)


class Unpackable(ValueError):
    """A backbone that channel packing cannot train as R independent runs (it is stacked)."""


def _packed_conv(m: nn.Conv2d, runs: int) -> nn.Conv2d:
    return nn.Conv2d(
        runs * m.in_channels, runs * m.out_channels, m.kernel_size, m.stride, m.padding,
        m.dilation, groups=runs * m.groups, bias=m.bias is not None, padding_mode=m.padding_mode,
    )


def _packed_bn(m: nn.BatchNorm2d, runs: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(runs * m.num_features, m.eps, m.momentum, m.affine,
                          m.track_running_stats)


def _channel_safe_types() -> tuple[type, ...]:
    """Modules whose forward pass keeps every channel in its own run's group once their
    convolutions and BatchNorms are packed: the layers themselves, and the blocks of SmallResNet
    and torchvision's ResNets (convolutions, BatchNorm, ReLU, residual sums, pooling). Anything
    else (a custom block could concatenate or shuffle channels) is stacked instead."""
    from torchvision.models import resnet

    from .models import SmallResNet, _BasicBlock

    return (nn.Conv2d, nn.BatchNorm2d, *_CHANNELWISE, SmallResNet, _BasicBlock, resnet.ResNet,
            resnet.BasicBlock, resnet.Bottleneck)


def pack_module(module: nn.Module, runs: int) -> nn.Module:
    """A copy of `module` with every Conv2d / BatchNorm2d widened to `runs` independent groups.

    Only modules known to keep channels apart may be packed (`_channel_safe_types`); any other
    raises `Unpackable` (a Linear, a normalisation over channels, a concatenation or shuffle
    inside a custom forward would mix runs).
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    safe = _channel_safe_types()
    for name, child in module.named_modules():
        if type(child) not in safe:
            raise Unpackable(
                f"cannot pack {name or 'the backbone'!r} ({type(child).__name__}): only "
                "Conv2d, BatchNorm2d, channel-wise layers and ResNet blocks are packed by channel")
    packed = copy.deepcopy(module)
    _replace_layers(packed, runs)
    return packed


def _replace_layers(module: nn.Module, runs: int) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, _packed_conv(child, runs))
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _packed_bn(child, runs))
        else:
            _replace_layers(child, runs)


_SHARED_BUFFER = "num_batches_tracked"  # BatchNorm's step counter: equal for every run


class StackedBackbone(nn.Module):
    """R copies of a backbone as one module: each parameter and buffer `(R, ...)`, the forward
    pass `vmap` of the one-run backbone (see the module docstring). Parameter and buffer names
    and order are the backbone's own, so state dicts line up with the one-run model's.

    BatchNorm's step counters stay shared scalars (they count steps, the same for every run).
    Random layers (dropout, stochastic depth) draw a different mask for each run, from the global
    generator: their masks depend on the pack, as they would on the order of runs one by one.
    A layer vmap cannot batch (e.g. torchvision's StochasticDepth, which draws its mask in place
    into an unbatched tensor) fails at the first step; `training.loop.train_pack` then trains the
    pack's runs one at a time (a pack of one calls the backbone without vmap).
    """

    def __init__(self, backbone: nn.Module, runs: int):
        super().__init__()
        self.runs = runs
        self.inner = copy.deepcopy(backbone)
        for module in self.inner.modules():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    module._parameters[name] = nn.Parameter(_stack(p.detach(), runs),
                                                            p.requires_grad)
            for name, b in list(module._buffers.items()):
                if b is not None and name != _SHARED_BUFFER:
                    module._buffers[name] = _stack(b, runs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (R, B, F) of inputs (R, B, ...)."""
        from torch.func import functional_call, vmap

        per_run = {**dict(self.inner.named_parameters()),
                   **{n: b for n, b in self.inner.named_buffers()
                      if not n.endswith(_SHARED_BUFFER)}}
        shared = {n: b for n, b in self.inner.named_buffers() if n.endswith(_SHARED_BUFFER)}

        def one_run(tensors: dict, xr: torch.Tensor) -> torch.Tensor:
            return functional_call(self.inner, {**tensors, **shared}, (xr,))

        if self.runs == 1:  # no vmap: any module a plain forward pass runs, runs here
            return one_run({n: t[0] for n, t in per_run.items()}, x[0]).unsqueeze(0)
        return vmap(one_run, randomness="different")(per_run, x)

    def state_dict(self, *args, **kwargs):
        """The inner backbone's state, keyed as the one-run backbone's."""
        return self.inner.state_dict(*args, **kwargs)


def _stack(t: torch.Tensor, runs: int) -> torch.Tensor:
    return t.unsqueeze(0).repeat(runs, *([1] * t.ndim)).clone()


def pack_backbone(backbone: nn.Module, runs: int) -> nn.Module:
    """The backbone packed by channels where it can be (`pack_module`), else stacked."""
    try:
        return pack_module(backbone, runs)
    except Unpackable:
        return StackedBackbone(backbone, runs)


class PackedClassifier(nn.Module):
    """R classifiers in one module: a packed (or stacked) backbone and a per-run linear head."""

    def __init__(self, model: Classifier, runs: int, channels_last: bool = False):
        super().__init__()
        self.runs = runs
        self.backbone = pack_backbone(model.backbone, runs)
        self.stacked = isinstance(self.backbone, StackedBackbone)
        self.channels_last = channels_last and not self.stacked
        out_features, in_features = model.head.weight.shape
        self.head_weight = nn.Parameter(torch.zeros(runs, out_features, in_features))
        self.head_bias = nn.Parameter(torch.zeros(runs, out_features))
        self.to(model.head.weight.device, model.head.weight.dtype)

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """(R, B, C, H, W) -> (B, R C, H, W): run r's images into run r's channel group
        (laid out channels-last when the pack was built with `channels_last`); a stacked
        backbone takes (R, B, ...) as it is."""
        runs, batch = x.shape[:2]
        if runs != self.runs:
            raise ValueError(f"expected inputs for {self.runs} runs, got {runs}")
        if self.stacked:
            return x
        folded = x.transpose(0, 1).reshape(batch, runs * x.shape[2], *x.shape[3:])
        if self.channels_last and folded.ndim == 4:
            folded = folded.contiguous(memory_format=torch.channels_last)
        return folded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (R, B, classes) of inputs (R, B, C, H, W)."""
        return self.head_logits(self.backbone(self.fold(x)))

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (R, B, classes) of packed backbone features (B, R F), or stacked ones
        (R, B, F): each run's own head."""
        if self.stacked:
            features = features.reshape(self.runs, features.shape[1], -1).transpose(0, 1)
        else:
            features = features.reshape(features.shape[0], self.runs, -1)
        return torch.einsum("brf,rcf->rbc", features, self.head_weight) + self.head_bias[:, None]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Packed backbone parameters in the unpacked `prior_parameters` order."""
        return prior_parameters(self.backbone)

    def head_parameters(self) -> list[nn.Parameter]:
        return [self.head_weight, self.head_bias]


def run_view(t: torch.Tensor, runs: int) -> torch.Tensor:
    """A packed tensor (R n0, ...) or (R, ...) as (R, -1): row r is run r's part, flattened."""
    return t.view(runs, -1)


@torch.no_grad()
def load_run(packed: PackedClassifier, r: int, model: Classifier) -> None:
    """Copy an unpacked model's weights and BatchNorm buffers into run r of the pack."""
    runs = packed.runs
    for dst, src in zip(packed.backbone.state_dict().values(),
                        model.backbone.state_dict().values(), strict=True):
        if dst.ndim == 0:  # num_batches_tracked: shared counter, identical for every run
            dst.copy_(src)
        else:
            run_view(dst, runs)[r].copy_(src.reshape(-1))
    packed.head_weight[r].copy_(model.head.weight)
    packed.head_bias[r].copy_(model.head.bias)


@torch.no_grad()
def extract_run(packed: PackedClassifier, r: int, model: Classifier) -> Classifier:
    """Copy run r's weights and buffers out of the pack into `model` (same architecture)."""
    runs = packed.runs
    for dst, src in zip(model.backbone.state_dict().values(),
                        packed.backbone.state_dict().values(), strict=True):
        if dst.ndim == 0:
            dst.copy_(src)
        else:
            dst.copy_(run_view(src, runs)[r].view_as(dst))
    model.head.weight.copy_(packed.head_weight[r])
    model.head.bias.copy_(packed.head_bias[r])
    return model

