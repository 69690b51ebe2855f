"""Your own data: image folders decoded, cached and checked; bad folders refused in one line."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from bprior_core.cli import main
from bprior_core.config import load_profile
from bprior_core.data.imagefolder import (
    AUGMENTATIONS,
    FolderError,
    augment,
    decoded,
    list_classes,
    scan_root,
    write_example,
)
from bprior_core.data.tasks import cache_dir

EXAMPLE = Path(__file__).parents[1] / "params" / "imagefolder-example.yaml"


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return write_example(tmp_path_factory.mktemp("example") / "folder", per_class=8)


def _profile_file(tmp_path: Path, folder: Path, **changes) -> Path:
    """The example profile reading `folder`, with `changes` ("a.b": value) applied."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["data"]["root"] = str(folder / "downstream")
    raw["priors"]["learning"]["source_root"] = str(folder / "source")
    raw["data"]["val_size"], raw["data"]["labelled_pool"] = 6, 18
    raw["experiments"]["inference"]["sizes"] = [3, 6]
    raw["experiments"]["scale"]["n_train"] = 6
    for key, value in changes.items():
        node = raw
        *parents, last = key.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_folders_decode_to_the_models_channels_and_are_cached(example) -> None:
    """RGB PNGs decode to 3 channels (or 1, averaged, for small_resnet), square, labels from the
    sorted class names; the second read comes from the cache file beside the data."""
    listing = scan_root(example / "downstream")["train"]
    assert listing.classes == ("disc", "square", "triangle")
    rgb = decoded(listing, 16, 3, progress=False)
    gray = decoded(listing, 16, 1, progress=False)
    assert rgb["images"].shape == (24, 3, 16, 16) and rgb["images"].dtype == torch.uint8
    assert gray["images"].shape == (24, 1, 16, 16)
    assert rgb["labels"].tolist() == [0] * 8 + [1] * 8 + [2] * 8
    cached = list((cache_dir() / "imagefolder").glob("*/train-*.pt"))
    assert len(cached) >= 2
    # nothing is written into the user's folder (a cache folder there looked like a class)
    assert {p.name for p in (example / "downstream" / "train").iterdir()} == {
        "disc", "square", "triangle"}
    again = decoded(listing, 16, 3, progress=False)
    assert torch.equal(again["images"], rgb["images"])


def test_crop_and_flip_are_exact_pixel_moves() -> None:
    """A flip mirrors the columns; a shift moves whole pixels with zero fill; no augmentation
    leaves the images as they are."""
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    flip = torch.tensor([[0.5, 0.5, 0.5, 0.0], [0.5, 0.5, 0.5, 0.9]])  # image 0 flipped only
    out = augment(x, flip, ("flip",))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    shift = torch.tensor([[0.5, 1.0, 0.5, 0.9]])  # x shift +1/8 of 8 px: reads 1 px to the right
    moved = augment(x[:1], shift, ("crop",))
    assert torch.equal(moved[0, :, :, :-1], x[0, :, :, 1:])
    assert torch.equal(moved[0, :, :, -1], torch.zeros(3, 8))
    assert set(AUGMENTATIONS) == {"crop", "flip", "rotation"}


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: shutil.rmtree(d / "downstream" / "test"), "has no test/ folder"),
    (lambda d: [p.unlink() for p in (d / "downstream" / "train" / "disc").glob("*.png")],
     r"class folder .*train/disc holds no images"),
    (lambda d: (d / "downstream" / "train" / "square" / "0000.png").write_bytes(b"not a png"),
     r"cannot read image .*train/square/0000.png"),
    (lambda d: shutil.move(d / "downstream" / "test" / "disc", d / "downstream" / "test" / "disk"),
     r"test/ and train/ hold different classes \(only in train/: disc; only in test/: disk\)"),
    (lambda d: [p.unlink() for p in (d / "source").rglob("*.png")],
     r"class folder .*source/\w+ holds no images"),
])
def test_bad_folders_stop_in_one_line_before_anything_trains(
        example, tmp_path, capsys, damage, message) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(example, folder)
    damage(folder)
    outputs = tmp_path / "outputs"
    code = main(["run", "--profile", str(_profile_file(tmp_path, folder)),
                 "--outputs", str(outputs)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert not (outputs / "imagefolder-example" / "runs").exists()
    assert not list(outputs.rglob("*.pt"))


@pytest.mark.parametrize(("changes", "message"), [
    ({"model": "torchvision:resnet81"}, "closest: torchvision:resnet18"),
    ({"model_weights": "missing.pt"}, "missing.pt is not a file"),
    ({"data.mean": [0.5]}, "has 1 values; model torchvision:shufflenet_v2_x0_5 takes 3-channel"),
    ({"priors.learning.source_root": None}, "need a source folder"),
])
def test_bad_profile_keys_are_named(example, tmp_path, capsys, changes, message) -> None:
    code = main(["plan", "--profile", str(_profile_file(tmp_path, example, **changes))])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_weights_that_do_not_fit_name_the_keys(example, tmp_path, capsys) -> None:
    from bprior_core.training.models import build_model

    torch.save(build_model("torchvision:resnet34", 2).backbone.state_dict(), tmp_path / "w.pt")
    path = _profile_file(tmp_path, example, model_weights=str(tmp_path / "w.pt"))
    assert main(["plan", "--profile", str(path)]) == 2
    assert "does not fit ShuffleNetV2 (missing: conv1.0.weight" in capsys.readouterr().err


def test_list_classes_refuses_a_file(tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(FolderError, match="is not a folder"):
        list_classes(tmp_path / "f", "source")


def test_example_profile_loads_with_its_folder(example, tmp_path) -> None:
    profile = load_profile(_profile_file(tmp_path, example))
    assert profile.model == "torchvision:shufflenet_v2_x0_5"
    assert profile.data.augment == ["crop", "flip"]


@pytest.mark.slow
def test_example_profile_runs_the_whole_report(example, tmp_path) -> None:
    """The example profile, budgets cut further, end to end on the CPU: a torchvision backbone
    (stacked), both priors learned from the source folder (supervised with its 3 labels, SimCLR
    without), the oracle from train/ outside the pool, every claim judged, the report written."""
    from bprior_core.cli import main
    from bprior_core.priors.files import load_prior

    path = _profile_file(
        tmp_path, example, pack=8,
        **{"train.steps": 12, "priors.learning.pretrain_steps": 8,
           "priors.learning.swag_steps": 6, "priors.learning.collect_every": 2,
           "experiments.inference.arms": ["sgd+learned", "sghmc+learned", "sgd+zero"]})
    root = tmp_path / "outputs"
    assert main(["report", "--profile", str(path), "--outputs", str(root)]) == 0
    out = root / "imagefolder-example"
    assert (out / "report.html").is_file()
    claims = json.loads((out / "claims.json").read_text())
    assert {c["id"] for c in claims} >= {"PC", "C3", "C4"}
    for name, images in (("supervised", 24), ("ssl", 24), ("oracle", 6)):
        prior = load_prior(out / "priors" / f"{name}.pt")
        assert prior.meta["source"]["size"] == images
    supervised = load_prior(out / "priors" / "supervised.pt")
    assert supervised.meta["learned_by"]["objective"] == "supervised"
    records = [json.loads(f.read_text()) for f in (out / "runs").rglob("*.json")]
    assert records and {r["config"]["model"] for r in records} == {
        "torchvision:shufflenet_v2_x0_5"}
    statuses = Counter(r["status"] for r in records)
    assert set(statuses) <= {"ok", "diverged"} and statuses["ok"] > 0.9 * len(records), statuses
    assert {r["data_source"]["dataset"] for r in records} == {"imagefolder"}


def test_a_torchvision_backbone_without_weights_is_named_as_a_random_start(example, tmp_path):
    """`torchvision:<name>` without `model_weights` learns its priors from random weights: a
    one-line warning before anything trains, and the report's methods say so."""
    import warnings

    from bprior_core import report
    from bprior_core.study.preflight import random_start, warn_random_start

    profile = load_profile(_profile_file(tmp_path, example))
    assert random_start(profile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_random_start(profile)
    assert len(caught) == 1 and "no model_weights" in str(caught[0].message)
    assert "starting from randomly initialised weights (no `model_weights`)" in \
        report.methods_markdown(profile, [])
