"""Tests for bprior_core.training.models: backbones, the flat parameter view, BatchNorm refresh."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bprior_core.training import models


def test_small_resnet_backbone_size_and_output_shape(make_model) -> None:
    model = make_model(0, num_classes=7)
    d = models.num_prior_parameters(model.backbone)
    # "about 80k parameters" (77k in the profiles' comments)
    assert 70_000 <= d <= 85_000
    assert d == sum(p.numel() for p in model.backbone.parameters())
    model.eval()
    x = torch.randn(3, 1, 28, 28)
    assert model.backbone(x).shape == (3, model.head.in_features)
    assert model(x).shape == (3, 7)
    # the head is not part of the backbone
    head_ids = {id(p) for p in model.head.parameters()}
    assert not head_ids & {id(p) for p in models.prior_parameters(model.backbone)}


def test_resnet50_backbone_has_the_papers_parameter_count() -> None:
    with torch.device("meta"):
        model = models.build_model("resnet50", 102)
    # torchvision's ResNet-50 without fc: 25,557,032 - (2048 * 1000 + 1000)
    assert models.num_prior_parameters(model.backbone) == 23_508_032
    assert model.head.in_features == 2048 and model.head.out_features == 102
    assert not any(isinstance(m, nn.Linear) for m in model.backbone.modules())


def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="resnet18") as info:
        models.build_model("resnet18", 5)
    for name in models.MODEL_NAMES:
        assert name in str(info.value)


def test_too_few_classes_is_an_error() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        models.build_model("small_resnet", 1)


def test_flat_parameters_order_is_backbone_parameters_order(make_model) -> None:
    backbone = make_model(1).backbone
    d = models.num_prior_parameters(backbone)
    models.load_flat_parameters(backbone, torch.arange(d, dtype=torch.float32))
    offset = 0
    for p in backbone.parameters():
        expected = torch.arange(offset, offset + p.numel(), dtype=torch.float32).view_as(p)
        assert torch.equal(p.detach(), expected)
        offset += p.numel()
    assert offset == d
    assert torch.equal(models.flat_parameters(backbone), torch.arange(d, dtype=torch.float32))


def test_flat_round_trip_between_models(make_model) -> None:
    a, b = make_model(1).backbone, make_model(2).backbone
    flat_a = models.flat_parameters(a).detach().clone()
    assert flat_a.shape == (models.num_prior_parameters(a),)
    assert not torch.equal(flat_a, models.flat_parameters(b).detach())
    models.load_flat_parameters(b, flat_a)
    assert torch.equal(models.flat_parameters(b).detach(), flat_a)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_flat_parameters_is_differentiable(make_model) -> None:
    backbone = make_model(0).backbone
    (models.flat_parameters(backbone) ** 2).sum().backward()
    for p in backbone.parameters():
        assert p.grad is not None
        assert torch.allclose(p.grad, 2 * p.detach())


def test_load_flat_parameters_rejects_wrong_size(make_model) -> None:
    backbone = make_model(0).backbone
    d = models.num_prior_parameters(backbone)
    with pytest.raises(ValueError, match=str(d)):
        models.load_flat_parameters(backbone, torch.zeros(d + 1))
    with pytest.raises(ValueError, match=str(d)):
        models.load_flat_parameters(backbone, torch.zeros(1, d))


def test_batchnorm_buffers_and_head_are_not_covered(make_model) -> None:
    model = make_model(3)
    backbone = model.backbone
    flat = models.flat_parameters(backbone).detach().clone()
    bns = list(models.batchnorm_layers(backbone))
    assert bns, "the small ResNet has BatchNorm layers"
    buffers = {k: v.clone() for k, v in backbone.state_dict().items() if "running" in k}
    head = [p.detach().clone() for p in model.head.parameters()]

    # changing buffers does not change the flat vector
    with torch.no_grad():
        for bn in bns:
            bn.running_mean.add_(5.0)
            bn.running_var.mul_(3.0)
    assert torch.equal(models.flat_parameters(backbone).detach(), flat)

    # loading a flat vector touches neither buffers nor the head
    with torch.no_grad():
        for bn in bns:
            bn.running_mean.sub_(5.0)
            bn.running_var.div_(3.0)
    models.load_flat_parameters(backbone, torch.zeros_like(flat))
    for k, v in backbone.state_dict().items():
        if k in buffers:
            assert torch.allclose(v, buffers[k])
    for before, p in zip(head, model.head.parameters(), strict=True):
        assert torch.equal(before, p)
    n_buffer_values = sum(v.numel() for v in buffers.values())
    assert n_buffer_values > 0
    assert models.num_prior_parameters(backbone) == flat.numel()


def test_frozen_parameters_are_not_covered(make_model) -> None:
    backbone = make_model(0).backbone
    d = models.num_prior_parameters(backbone)
    stem_conv = backbone.stem[0].weight
    stem_conv.requires_grad_(False)
    assert models.num_prior_parameters(backbone) == d - stem_conv.numel()
    assert models.flat_parameters(backbone).numel() == d - stem_conv.numel()
    assert "stem.0.weight" not in models.parameter_spec(backbone)["param_names"]


def test_parameter_spec_names_and_shapes(make_model) -> None:
    backbone = make_model(0).backbone
    spec = models.parameter_spec(backbone)
    named = dict(backbone.named_parameters())
    assert spec["param_names"] == list(named)
    assert spec["param_shapes"] == [list(p.shape) for p in named.values()]
    assert sum(math.prod(s) for s in spec["param_shapes"]) == models.num_prior_parameters(backbone)
    assert "stem.0.weight" in spec["param_names"]
    assert not any("running" in n or n.startswith("head") for n in spec["param_names"])
    # JSON-friendly (stored in a prior's meta)
    assert all(isinstance(s, list) for s in spec["param_shapes"])


def test_refresh_batchnorm_gives_exact_batch_averages() -> None:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 3, 3, bias=True), nn.BatchNorm2d(3, momentum=0.3)
    model = nn.Sequential(conv, bn)
    model.eval()
    with torch.no_grad():  # stale statistics that must be forgotten
        bn.running_mean.fill_(100.0)
        bn.running_var.fill_(100.0)
    batches = [torch.randn(4, 2, 6, 6) * (i + 1) + i for i in range(3)]

    models.refresh_batchnorm(model, iter(batches))

    with torch.no_grad():
        acts = [conv(x) for x in batches]  # (4, 3, 4, 4) each
    all_acts = torch.cat(acts)
    # equal batch sizes: the average of batch means is the exact mean of all activations
    expected_mean = all_acts.transpose(0, 1).reshape(3, -1).mean(dim=1)
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-5, rtol=1e-5)
    # running_var: the plain average of the batches' (unbiased) per-channel variances
    batch_vars = torch.stack([a.transpose(0, 1).reshape(3, -1).var(dim=1) for a in acts])
    assert torch.allclose(bn.running_var, batch_vars.mean(dim=0), atol=1e-4, rtol=1e-5)
    assert int(bn.num_batches_tracked) == len(batches)
    # momentum and mode restored
    assert bn.momentum == 0.3
    assert not model.training


def test_refresh_batchnorm_keeps_training_mode_and_weights(make_model) -> None:
    model = make_model(0)
    model.train()
    flat = models.flat_parameters(model.backbone).detach().clone()
    momenta = [m.momentum for m in models.batchnorm_layers(model)]
    x = torch.randn(6, 1, 28, 28)
    models.refresh_batchnorm(model, iter([x]))
    assert model.training
    assert torch.equal(models.flat_parameters(model.backbone).detach(), flat)
    assert [m.momentum for m in models.batchnorm_layers(model)] == momenta
    # one batch: the stem BN's running mean is exactly that batch's activation mean
    with torch.no_grad():
        act = model.backbone.stem[0](x)
    stem_bn = model.backbone.stem[1]
    assert torch.allclose(stem_bn.running_mean, act.mean(dim=(0, 2, 3)), atol=1e-5)


def test_refresh_batchnorm_without_batchnorm_is_a_no_op() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    before = [p.detach().clone() for p in model.parameters()]
    models.refresh_batchnorm(model, iter([torch.randn(4, 3)]))
    for b, p in zip(before, model.parameters(), strict=True):
        assert torch.equal(b, p)
