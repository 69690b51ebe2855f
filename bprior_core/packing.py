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
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .models import Classifier, prior_parameters

_CHANNELWISE = (nn.ReLU, nn.Identity, nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AvgPool2d,
                nn.Sequential)


def _packed_conv(m: nn.Conv2d, runs: int) -> nn.Conv2d:
    return nn.Conv2d(
        runs * m.in_channels, runs * m.out_channels, m.kernel_size, m.stride, m.padding,
        m.dilation, groups=runs * m.groups, bias=m.bias is not None, padding_mode=m.padding_mode,
    )


def _packed_bn(m: nn.BatchNorm2d, runs: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(runs * m.num_features, m.eps, m.momentum, m.affine,
                          m.track_running_stats)


def pack_module(module: nn.Module, runs: int) -> nn.Module:
    """A copy of `module` with every Conv2d / BatchNorm2d widened to `runs` independent groups.

    Only channel-wise layers may remain (activations, pooling, containers, custom modules made of
    them); a Linear or other mixing layer inside the backbone raises, since it would mix runs.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    packed = copy.deepcopy(module)
    _replace_layers(packed, runs)
    return packed


def _replace_layers(module: nn.Module, runs: int) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            setattr(module, name, _packed_conv(child, runs))
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _packed_bn(child, runs))
        elif isinstance(child, (nn.Linear, nn.Conv1d, nn.Conv3d, nn.LayerNorm, nn.GroupNorm)):
            raise ValueError(
                f"cannot pack layer {name!r} ({type(child).__name__}): it mixes channels; "
                "packable backbones hold Conv2d, BatchNorm2d and channel-wise layers"
            )
        else:
            _replace_layers(child, runs)


class PackedClassifier(nn.Module):
    """R classifiers in one module: a packed backbone and a per-run linear head."""

    def __init__(self, model: Classifier, runs: int, channels_last: bool = False):
        super().__init__()
        self.runs = runs
        self.channels_last = channels_last
        self.backbone = pack_module(model.backbone, runs)
        out_features, in_features = model.head.weight.shape
        self.head_weight = nn.Parameter(torch.zeros(runs, out_features, in_features))
        self.head_bias = nn.Parameter(torch.zeros(runs, out_features))
        self.to(model.head.weight.device, model.head.weight.dtype)

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """(R, B, C, H, W) -> (B, R C, H, W): run r's images into run r's channel group
        (laid out channels-last when the pack was built with `channels_last`)."""
        runs, batch = x.shape[:2]
        if runs != self.runs:
            raise ValueError(f"expected inputs for {self.runs} runs, got {runs}")
        folded = x.transpose(0, 1).reshape(batch, runs * x.shape[2], *x.shape[3:])
        if self.channels_last and folded.ndim == 4:
            folded = folded.contiguous(memory_format=torch.channels_last)
        return folded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (R, B, classes) of inputs (R, B, C, H, W)."""
        return self.head_logits(self.backbone(self.fold(x)))

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (R, B, classes) of packed backbone features (B, R F): each run's own head."""
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

