"""Any torchvision backbone trains as a pack: runs packed (by channels or stacked with vmap) equal
the same runs trained one by one, in float64 on small inputs."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from bprior_core.data.device import DeviceTask
from bprior_core.priors.gaussian import GaussianPrior
from bprior_core.training.models import Classifier, ModelError, build_model, num_prior_parameters
from bprior_core.training.pack import Pack
from bprior_core.training.packing import PackedClassifier, StackedBackbone, Unpackable, pack_module
from bprior_core.training.run import TrainSettings
from bprior_core.training.spec import RunSpec

CPU = torch.device("cpu")
SETTINGS = TrainSettings(steps=4, batch_size=4, lr=0.01, temperature=1e-3, cycles=2,
                         momentum=0.9, weight_decay=1e-3)


def _no_randomness(model: nn.Module) -> nn.Module:
    """Dropout and stochastic depth off: their masks come from one generator per pack."""
    for m in model.modules():
        if isinstance(m, nn.Dropout) or type(m).__name__ == "StochasticDepth":
            m.p = 0.0
    return model


def _vit() -> Classifier:
    from torchvision.models import VisionTransformer

    net = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2,
                            hidden_dim=16, mlp_dim=32)
    net.heads = nn.Identity()
    return Classifier(net, nn.Linear(16, 3))


MODELS = {
    "resnet18": lambda: build_model("torchvision:resnet18", 3),
    "mobilenet_v3_small": lambda: build_model("torchvision:mobilenet_v3_small", 3),
    "densenet121": lambda: build_model("torchvision:densenet121", 3),
    "convnext_tiny": lambda: build_model("torchvision:convnext_tiny", 3),
    "vit": _vit,
}


def _pool(size: int = 32, n: int = 24) -> DeviceTask:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64)
    return DeviceTask(images, torch.arange(n) % 3, 3)


# the prior's arithmetic does not depend on the architecture (test_engine covers it): the two
# largest backbones (ConvNeXt-T 28M, DenseNet-121 7M parameters, in float64) run SGD only
# largest backbones (about 40 s each on 2 cores) only in `make test-all`
CASES = [pytest.param("resnet18", "sghmc", marks=pytest.mark.slow),
         ("mobilenet_v3_small", "sghmc"), ("vit", "sghmc"), ("densenet121", "sgd"),
         pytest.param("convnext_tiny", "sgd", marks=pytest.mark.slow)]


@pytest.mark.parametrize(("name", "method"), CASES)
def test_packed_runs_equal_runs_one_by_one(name: str, method: str) -> None:
    """Runs with their own seeds, subsets, priors and learning rates as one pack and one by one:
    after 2 steps in float64 every run's weights agree to 1e-9 (and they did move). The step
    times of both are printed (`pytest -s`); benchmarks/stacking.py measures them properly."""
    torch.manual_seed(0)
    model = _no_randomness(MODELS[name]()).double()
    size = 16 if name == "vit" else 32
    pool = _pool(size)
    dim = num_prior_parameters(model.backbone)
    specs = []
    for r in range(2):
        prior = (None if method == "sgd" else
                 GaussianPrior.isotropic(torch.zeros(dim, dtype=torch.float64), 0.1 * (r + 1)))
        specs.append(RunSpec(torch.arange(r, 24, 3)[:6], seed=r, prior=prior, lr=0.01 * (r + 1)))
    packed = Pack(model, pool, None, method, SETTINGS, specs, CPU, "fp64", False)
    alone = [Pack(model, pool, None, method, SETTINGS, [s], CPU, "fp64", False) for s in specs]
    start = packed.weights.clone()
    t0 = time.perf_counter()
    for k in range(2):
        packed.step(k)
    t_packed = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(2):
        for single in alone:
            single.step(k)
    t_alone = time.perf_counter() - t0
    print(f"\n{name} {method}: packed {t_packed / 2:.3f} s/step, one by one "
          f"{t_alone / 2:.3f} s/step (2 runs, stacked={packed.net.stacked})")
    for r, single in enumerate(alone):
        assert (packed.weights[r] - start[r]).abs().max() > 1e-6
        assert torch.allclose(packed.weights[r], single.weights[0], rtol=1e-9, atol=1e-9)


def test_only_channel_safe_backbones_pack_by_channel() -> None:
    """ResNets pack by channel; a backbone that concatenates channels (DenseNet) or holds a
    Linear (MobileNet's SE-free classifier part) is stacked, never packed by channel."""
    assert not PackedClassifier(build_model("torchvision:resnet18", 2), 2).stacked
    assert not PackedClassifier(build_model("small_resnet", 2), 2).stacked
    dense = build_model("torchvision:densenet121", 2)
    with pytest.raises(Unpackable, match="DenseNet|_DenseBlock|_DenseLayer"):
        pack_module(dense.backbone, 2)
    assert isinstance(PackedClassifier(dense, 2).backbone, StackedBackbone)


def test_stacked_pack_round_trips_a_run() -> None:
    """load_run / extract_run move one run's weights and buffers in and out of a stacked pack."""
    from bprior_core.training.packing import extract_run, load_run

    models = [build_model("torchvision:mobilenet_v3_small", 3) for _ in range(2)]
    packed = PackedClassifier(models[0], 2)
    for r, m in enumerate(models):
        load_run(packed, r, m)
    back = extract_run(packed, 1, build_model("torchvision:mobilenet_v3_small", 3))
    for a, b in zip(back.state_dict().values(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_unknown_torchvision_model_names_the_closest() -> None:
    with pytest.raises(ModelError, match="closest: torchvision:resnet18"):
        build_model("torchvision:resnet81", 3)
    with pytest.raises(ModelError, match="torchvision:<name>"):
        build_model("vgg", 3)


def test_model_weights_load_and_mismatches_are_named(tmp_path) -> None:
    """A local state dict loads (its classifier ignored); one of another model is refused
    naming the first mismatching keys."""
    source = build_model("torchvision:resnet18", 3)
    full = {**{f"{k}": v for k, v in source.backbone.state_dict().items()},
            "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(full, tmp_path / "r18.pt")
    loaded = build_model("torchvision:resnet18", 3, weights=str(tmp_path / "r18.pt"))
    for a, b in zip(loaded.backbone.state_dict().values(),
                    source.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    torch.save(build_model("torchvision:resnet34", 3).backbone.state_dict(), tmp_path / "r34.pt")
    with pytest.raises(ModelError, match=r"does not fit ResNet \(unexpected: layer1.2"):
        build_model("torchvision:resnet18", 3, weights=str(tmp_path / "r34.pt"))
    with pytest.raises(ModelError, match="cannot read"):
        build_model("torchvision:resnet18", 3, weights=str(tmp_path / "missing.pt"))


class _Drop(nn.Module):
    """A backbone whose stochastic depth vmap cannot batch (its mask is drawn in place into an
    unbatched tensor, as torchvision's StochasticDepth does)."""

    def __init__(self):
        super().__init__()
        from torchvision.ops import StochasticDepth

        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6), nn.ReLU())
        self.drop = StochasticDepth(0.5, "row")

    def forward(self, x):
        return self.drop(self.body(x))


def test_a_backbone_vmap_cannot_batch_trains_one_run_per_pack() -> None:
    """A pack of such a model warns in one line and trains each run alone (a pack of one runs
    the backbone without vmap), instead of failing the sweep."""
    from bprior_core.training.loop import train_pack

    torch.manual_seed(0)
    model = Classifier(_Drop(), nn.Linear(6, 3))
    pool = DeviceTask(torch.randn(24, 3, 8, 8), torch.arange(24) % 3, 3)
    specs = [RunSpec(torch.arange(r, 24, 3)[:6], seed=r) for r in range(3)]
    packed = PackedClassifier(model, 3)
    with pytest.raises(RuntimeError, match="vmap"):
        packed(torch.randn(3, 2, 3, 8, 8))
    with pytest.warns(UserWarning, match="_Drop cannot be stacked .*; its 3 runs train one per"):
        outcomes = train_pack(model, pool, pool, "sgd", SETTINGS, specs)
    assert [o.status for o in outcomes] == ["ok"] * 3
    assert len({round(o.final["nll"], 12) for o in outcomes}) == 3  # each its own run
