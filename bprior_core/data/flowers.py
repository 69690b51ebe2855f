"""Oxford Flowers-102 decoded once, cached as tensors, and augmented on the training device.

The reproduction's transforms are Resize(230) -> RandomRotation(30) -> RandomCrop(224) -> random
horizontal and vertical flips for training, and Resize(224) (plus a centre crop to 224 x 224 so
that batches have one size) for evaluation; ImageNet normalisation for both. Decoding a JPEG and
transforming it on the host costs about 5.7 ms per image, more than a GPU training step, so here:

- each split is decoded and resized ONCE (training images to short side 230, kept whole and
  zero-padded to one size with their true sizes stored; evaluation images resized and
  centre-cropped to 224) and cached as uint8 tensors in `<root>/flowers-102/bprior-cache/`;
- the random rotation, crop and flips of a whole batch are one `grid_sample` on the device,
  from per-image parameters drawn on the host by each run's generator. Nearest-neighbour sampling
  and zero fill match RandomRotation's defaults; with angle 0 the crop and flips are exact copies.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F

from .device import DeviceTask
from .tasks import DataUnavailableError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TRAIN_RESIZE, CROP, MAX_ROTATION = 230, 224, 30.0
CACHE_VERSION = 1


def _dataset(split: str, root: str | os.PathLike, download: bool):
    from torchvision.datasets import Flowers102

    try:
        return Flowers102(str(root), split=split, download=download)
    except RuntimeError as exc:
        raise DataUnavailableError(
            f"Oxford Flowers-102 not found under {root}: set `data.download: true` in the profile "
            "(needs network access) or place torchvision's flowers-102 folder there."
        ) from exc


def _decode(path: Path, train: bool) -> torch.Tensor:
    """One image as uint8 (3, H, W): short side 230 (training) or 224 x 224 centre (evaluation)."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as img:
        img = TF.resize(img.convert("RGB"), TRAIN_RESIZE if train else CROP)
        if not train:
            img = TF.center_crop(img, CROP)
        return TF.pil_to_tensor(img)


def _build_cache(dataset, train: bool) -> dict[str, torch.Tensor]:
    from tqdm.auto import tqdm

    images = [_decode(Path(f), train) for f in tqdm(dataset._image_files, desc="decoding",
                                                    unit="img", leave=False)]
    sizes = torch.tensor([img.shape[1:] for img in images], dtype=torch.long).view(-1, 2)
    height, width = (int(v) for v in sizes.amax(0))
    stacked = torch.zeros(len(images), 3, height, width, dtype=torch.uint8)
    for i, img in enumerate(images):
        stacked[i, :, : img.shape[1], : img.shape[2]] = img
    return {"images": stacked, "sizes": sizes,
            "labels": torch.as_tensor(dataset._labels, dtype=torch.long),
            "version": torch.tensor(CACHE_VERSION)}


def cached_split(split: str, root: str | os.PathLike, download: bool = False
                 ) -> dict[str, torch.Tensor]:
    """The decoded split (uint8 images, true sizes, labels), from the cache or built into it."""
    from ..atomic import atomic_torch_save

    dataset = _dataset(split, root, download)
    train = split == "train"
    name = f"{split}-{'train' if train else 'eval'}.pt"
    path = Path(root) / "flowers-102" / "bprior-cache" / name
    if path.exists():
        try:
            cache = torch.load(path, map_location="cpu", weights_only=True)
            if (int(cache["version"]) == CACHE_VERSION
                    and len(cache["labels"]) == len(dataset._labels)):
                return cache
        except (RuntimeError, KeyError, EOFError, pickle.UnpicklingError):
            pass  # unreadable or stale: rebuilt below
    cache = _build_cache(dataset, train)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(cache, path)
    return cache


def draw_augment(gen: torch.Generator, n: int) -> torch.Tensor:
    """Per image: rotation angle (degrees), crop position fractions (top, left), flips (h, v)."""
    u = torch.rand(n, 5, generator=gen)
    angle = (2 * u[:, 0] - 1) * MAX_ROTATION
    return torch.stack([angle, u[:, 1], u[:, 2], (u[:, 3] < 0.5).float(),
                        (u[:, 4] < 0.5).float()], dim=1)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def augment(images: torch.Tensor, sizes: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Rotate about each image's centre, crop 224 x 224 inside its true size, flip; normalise.

    `images` (n, 3, H, W) uint8 zero-padded, `sizes` (n, 2) true heights and widths, `params`
    (n, 5) from `draw_augment`. One nearest-neighbour `grid_sample` for the whole batch.
    """
    n, _, height, width = images.shape
    dev = images.device
    params, sizes = params.to(dev), sizes.to(dev).float()
    h, w = sizes[:, 0:1, None], sizes[:, 1:2, None]
    top = torch.floor(params[:, 1, None, None] * (h - CROP + 1))
    left = torch.floor(params[:, 2, None, None] * (w - CROP + 1))
    grid = torch.arange(CROP, device=dev, dtype=torch.float32)
    i, j = grid.view(1, -1, 1), grid.view(1, 1, -1)
    i = torch.where(params[:, 4, None, None] > 0, CROP - 1 - i, i)
    j = torch.where(params[:, 3, None, None] > 0, CROP - 1 - j, j)
    y, x = top + i, left + j  # pixel in the rotated image
    cy, cx = (h - 1) / 2, (w - 1) / 2
    theta = params[:, 0, None, None] * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    src_x = cos * (x - cx) - sin * (y - cy) + cx
    src_y = sin * (x - cx) + cos * (y - cy) + cy
    gx = (2 * src_x + 1) / width - 1
    gy = (2 * src_y + 1) / height - 1
    coords = torch.stack([gx.expand(n, CROP, CROP), gy.expand(n, CROP, CROP)], dim=-1)
    out = F.grid_sample(images.float(), coords, mode="nearest", padding_mode="zeros",
                        align_corners=False)
    return _normalise(out)


def flowers_device_task(split: str, root: str | os.PathLike, device, download: bool = False
                        ) -> DeviceTask:
    """A Flowers-102 split on `device`: training with on-device augmentation, else evaluation."""
    cache = cached_split(split, root, download)
    images, labels = cache["images"].to(device), cache["labels"].to(device)
    if split != "train":
        return DeviceTask(images, labels, 102, eval_transform=_normalise)
    sizes = cache["sizes"].to(device)

    def train_transform(x, params, idx):
        return augment(x, sizes[idx], params)

    return DeviceTask(images, labels, 102, train_transform=train_transform,
                      eval_transform=lambda x: _normalise(x[..., :CROP, :CROP]),
                      draw_params=draw_augment)
