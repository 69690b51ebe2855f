"""Flowers-102 on a small fake folder in torchvision's layout: decode once, cache, augment on the
device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bprior_core.data import flowers
from bprior_core.data.device import BatchStream
from bprior_core.study.datasets import DataKey, downstream_data

SIZES = [(240, 300), (320, 250), (230, 230), (260, 400), (300, 300), (250, 330)]


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    """Six JPEGs of different sizes: train = images 1-2, val = 3-4, test = 5-6."""
    import scipy.io
    from torchvision.datasets import Flowers102

    folder = tmp_path / "flowers-102"
    (folder / "jpg").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES, start=1):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "jpg" / f"image_{i:05d}.jpg", quality=95)
    scipy.io.savemat(folder / "imagelabels.mat", {"labels": np.array([[1, 2, 3, 4, 102, 7]])})
    scipy.io.savemat(folder / "setid.mat", {"trnid": np.array([[1, 2]]),
                                            "valid": np.array([[3, 4]]),
                                            "tstid": np.array([[5, 6]])})
    # the fake .mat files cannot match torchvision's MD5 sums
    monkeypatch.setattr(Flowers102, "_check_integrity", lambda self: True)
    return tmp_path


def reference_eval_image(path) -> torch.Tensor:
    from torchvision.transforms import functional as TF

    with Image.open(path) as img:
        return TF.pil_to_tensor(TF.center_crop(TF.resize(img.convert("RGB"), 224), 224))


def test_splits_are_decoded_once_and_cached(fake_root, monkeypatch) -> None:
    train = flowers.cached_split("train", fake_root)
    test = flowers.cached_split("test", fake_root)
    assert (fake_root / "flowers-102" / "bprior-cache" / "train-train.pt").exists()
    assert train["images"].dtype == torch.uint8
    # short side 230, aspect kept, padded to the largest image
    assert train["sizes"].tolist() == [[230, 287], [294, 230]]
    assert tuple(train["images"].shape) == (2, 3, 294, 287)
    assert train["labels"].tolist() == [0, 1] and test["labels"].tolist() == [101, 6]
    assert tuple(test["images"].shape) == (2, 3, 224, 224)
    assert torch.equal(test["images"][0], reference_eval_image(
        fake_root / "flowers-102" / "jpg" / "image_00005.jpg"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a JPEG again")

    monkeypatch.setattr(flowers, "_decode", no_decoding)
    again = flowers.cached_split("train", fake_root)
    assert torch.equal(again["images"], train["images"])


def test_a_corrupt_cache_is_rebuilt(fake_root) -> None:
    flowers.cached_split("test", fake_root)
    path = fake_root / "flowers-102" / "bprior-cache" / "test-eval.pt"
    path.write_bytes(b"not a torch file")
    rebuilt = flowers.cached_split("test", fake_root)
    assert tuple(rebuilt["images"].shape) == (2, 3, 224, 224)


def test_augmentation_without_rotation_is_an_exact_crop_and_flip(fake_root) -> None:
    cache = flowers.cached_split("train", fake_root)
    images, sizes = cache["images"], cache["sizes"]
    # angle 0; crop at the far corner of image 0 (fractions 0.999) and the origin of image 1
    params = torch.tensor([[0.0, 0.999, 0.999, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 1.0]])
    out = flowers.augment(images, sizes, params)
    assert tuple(out.shape) == (2, 3, 224, 224)
    h, w = sizes[0].tolist()
    expected0 = flowers._normalise(images[:1, :, h - 224:h, w - 224:w])[0]
    expected1 = flowers._normalise(images[1:, :, :224, :224]).flip(-1).flip(-2)[0]
    assert torch.allclose(out[0], expected0, atol=1e-6)
    assert torch.allclose(out[1], expected1, atol=1e-6)


def test_rotation_by_90_degrees_about_a_square_crop_centre(fake_root) -> None:
    square = torch.arange(3 * 230 * 230, dtype=torch.float32).view(1, 3, 230, 230) % 251
    images = square.to(torch.uint8)
    sizes = torch.tensor([[230, 230]])
    params = torch.tensor([[90.0, 0.5, 0.5, 0.0, 0.0]])
    out = flowers.augment(images, sizes, params)
    crop = images[:, :, 3:227, 3:227]
    rotated = flowers._normalise(torch.rot90(crop, k=1, dims=(-2, -1)))
    unrotated = flowers._normalise(crop)
    # one of the two rotation senses, exactly (nearest neighbour on the pixel grid)
    assert torch.allclose(out, rotated, atol=1e-5) or torch.allclose(
        out, flowers._normalise(torch.rot90(crop, k=-1, dims=(-2, -1))), atol=1e-5)
    assert not torch.allclose(out, unrotated)


def test_draws_cover_the_reproductions_ranges() -> None:
    p = flowers.draw_augment(torch.Generator().manual_seed(0), 4000)
    assert p[:, 0].abs().max() <= 30 and p[:, 0].abs().max() > 29
    assert 0 <= p[:, 1:3].min() and p[:, 1:3].max() < 1
    assert set(p[:, 3].unique().tolist()) == {0.0, 1.0}
    assert abs(p[:, 4].mean() - 0.5) < 0.05


def test_device_tasks_feed_batch_streams(fake_root) -> None:
    key = DataKey("flowers102", str(fake_root), False, 0)
    train, val, test = downstream_data(key, "cpu")
    assert val is None
    assert train.num_classes == test.num_classes == 102
    stream = BatchStream(train, [torch.tensor([0, 1]), torch.tensor([1, 0])], 16,
                         [torch.Generator().manual_seed(s) for s in (0, 1)])
    x, y = next(stream)
    assert tuple(x.shape) == (2, 2, 3, 224, 224) and x.dtype == torch.float32
    assert sorted(y[0].tolist()) == [0, 1]
    chunks = list(test.eval_chunks(1))
    assert [tuple(c[0].shape) for c in chunks] == [(1, 3, 224, 224)] * 2
    downstream_data.cache_clear()
