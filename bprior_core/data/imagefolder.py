"""Your own images: folders of class subfolders, decoded once, cached as uint8 tensors, augmented
on the training device.

Layout (torchvision's ImageFolder, one per split): `<root>/train/<class>/*`, `<root>/test/<class>/*`
and optionally `<root>/val/<class>/*`; a prior's source folder is `<source_root>/<class>/*`.
Classes are the subfolder names in sorted order (label i = i-th name). Every image is decoded
(PIL), converted to the model's channels (grayscale `L` for `small_resnet`, else RGB: a
grayscale image is repeated into three channels, an RGB one converted by luminance), resized so its
short side is `image_size` and centre-cropped to a square, then cached in
`~/.cache/bprior/imagefolder/` (never in your folders), keyed by the folder, the file listing
(names and sizes), size and channels: a changed folder is decoded again.

Normalisation: per-channel mean and std of the downstream training images (or given). Training
augmentation (`augment`: any of `crop`, `flip`, `rotation`) is one `grid_sample` per batch on
the device, from per-image parameters drawn by each run's generator: `crop` shifts by up to an
eighth of the side (zero fill, as padding by that much and cropping), `flip` mirrors left-right
with probability 1/2, `rotation` turns by up to 15 degrees.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from .device import DeviceTask
from .tasks import DataFileError, DataUnavailableError, TensorTask, cache_dir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")
AUGMENTATIONS = ("crop", "flip", "rotation")
SPLITS = ("train", "test", "val")
MAX_SHIFT, MAX_ROTATION = 1 / 8, 15.0
CACHE_VERSION = 1


class FolderError(DataFileError):
    """An image folder that cannot be used as given; the message says what and where."""


@dataclass(frozen=True)
class Listing:
    """The images of one folder of class subfolders: class names and (file, label) pairs."""

    folder: Path
    classes: tuple[str, ...]
    files: tuple[tuple[Path, int], ...]

    def digest(self) -> str:
        """A digest of the names and sizes of the images (what the cache is keyed by)."""
        entries = [(str(p.relative_to(self.folder)), p.stat().st_size) for p, _ in self.files]
        return hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def list_classes(folder: str | Path, what: str) -> Listing:
    """The class subfolders of `folder` and their images; FolderError for a missing folder, no
    class subfolders, or a class subfolder without images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{what}: {folder} is not a folder (expected {folder}/<class>/<image>)")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name != "bprior-cache")
    if not classes:
        raise FolderError(f"{what}: {folder} holds no class subfolders (expected "
                          f"{folder}/<class>/<image>)")
    files = []
    for label, name in enumerate(classes):
        images = sorted(p for p in (folder / name).rglob("*")
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FolderError(f"{what}: class folder {folder / name} holds no images (suffixes "
                              f"{', '.join(IMAGE_SUFFIXES)})")
        files.extend((p, label) for p in images)
    return Listing(folder, tuple(classes), tuple(files))


def scan_root(root: str | Path) -> dict[str, Listing]:
    """The splits of a downstream image folder (`train`, `test`, optional `val`), checked: the
    splits exist and hold the same classes. Cached while the folders' modification times stay
    the same (a file added or removed changes its class folder's)."""
    root = Path(root)
    stamp = tuple((str(d), d.stat().st_mtime_ns) for d in [root, *sorted(root.glob("*")),
                                                          *sorted(root.glob("*/*"))]
                  if d.is_dir()) if root.is_dir() else ()
    return _scan_root(root, stamp)


@lru_cache(maxsize=8)
def _scan_root(root: Path, stamp: tuple) -> dict[str, Listing]:
    if not root.is_dir():
        raise DataUnavailableError(f"data.root {root} is not a folder; an image folder needs "
                                   f"{root}/train/<class>/* and {root}/test/<class>/*")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise FolderError(f"data.root {root} has no {split}/ folder; an image folder needs "
                              f"{root}/train/<class>/* and {root}/test/<class>/* "
                              f"(and optionally {root}/val/<class>/*)")
    splits = {s: list_classes(root / s, f"data.root {s}/") for s in SPLITS
              if (root / s).is_dir()}
    train = set(splits["train"].classes)
    for split, listing in splits.items():
        if set(listing.classes) != train:
            only_train = sorted(train - set(listing.classes))
            only_here = sorted(set(listing.classes) - train)
            raise FolderError(
                f"data.root: {split}/ and train/ hold different classes (only in train/: "
                f"{', '.join(only_train) or 'none'}; only in {split}/: "
                f"{', '.join(only_here) or 'none'}); every split needs the same class folders")
    return splits


def _decode(path: Path, size: int, channels: int) -> torch.Tensor:
    """One image as uint8 (channels, size, size): short side resized to `size`, centre crop."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as TF

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = TF.center_crop(TF.resize(img, size), size)
            return TF.pil_to_tensor(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise FolderError(f"cannot read image {path} ({type(exc).__name__}: {exc}); remove or "
                          "replace it") from None


def _cache_path(listing: Listing, size: int, channels: int) -> Path:
    """Where a listing's decoded images are cached: in ~/.cache/bprior/imagefolder/, never in the
    user's folders (a `bprior-cache/` inside `train/` made torchvision's ImageFolder see a class
    without images)."""
    name = f"{listing.folder.name}-{size}px-{channels}ch-{listing.digest()}.pt"
    key = hashlib.sha256(str(listing.folder.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "imagefolder" / key / name


def decoded(listing: Listing, size: int, channels: int, progress: bool = True
            ) -> dict[str, torch.Tensor]:
    """A listing's images (uint8 N x C x size x size) and labels, from the cache or decoded into
    it (any unreadable image is named before anything is written)."""
    from tqdm.auto import tqdm

    from ..atomic import atomic_torch_save

    path = _cache_path(listing, size, channels)
    if path.exists():
        try:
            cache = torch.load(path, map_location="cpu", weights_only=True)
            if int(cache["version"]) == CACHE_VERSION and len(cache["labels"]) == len(
                    listing.files):
                return cache
        except (RuntimeError, KeyError, EOFError, pickle.UnpicklingError):
            pass  # unreadable or stale: decoded again below
    images = [_decode(p, size, channels) for p, _ in tqdm(
        listing.files, desc=f"decoding {listing.folder}", unit="img", leave=False,
        disable=not progress)]
    cache = {"images": torch.stack(images),
             "labels": torch.tensor([label for _, label in listing.files], dtype=torch.long),
             "version": torch.tensor(CACHE_VERSION)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(cache, path)
    return cache


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1]."""
    x = images.double().div(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-6).tolist())


def normaliser(mean, std):
    """uint8 (or [0, 255] float) images -> normalised float32."""
    def normalise(x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
        return (x.float() / 255.0 - m) / s
    return normalise


def draw_augment(gen: torch.Generator, n: int) -> torch.Tensor:
    """Per image: rotation fraction, shifts (x, y) and flip draw, uniform in [0, 1)."""
    return torch.rand(n, 4, generator=gen)


def augment(images: torch.Tensor, params: torch.Tensor, kinds: tuple[str, ...]) -> torch.Tensor:
    """The `kinds` augmentations of a batch (float, [0, 255]) in one bilinear `grid_sample`
    (nearest when only crops and flips, which are then exact pixel copies)."""
    n, _, h, w = images.shape
    params = params.to(images.device, torch.float32)
    theta = torch.zeros(n, 2, 3, device=images.device)
    angle = ((2 * params[:, 0] - 1) * MAX_ROTATION * math.pi / 180 if "rotation" in kinds
             else torch.zeros(n, device=images.device))
    flip = torch.where((params[:, 3] < 0.5) & ("flip" in kinds), -1.0, 1.0)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) * flip, -torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) * flip, torch.cos(angle)
    if "crop" in kinds:  # whole-pixel shifts of up to MAX_SHIFT of the side
        for axis, size in ((0, w), (1, h)):
            pixels = torch.round((2 * params[:, 1 + axis] - 1) * MAX_SHIFT * size)
            theta[:, axis, 2] = 2 * pixels / size
    grid = F.affine_grid(theta, [n, images.shape[1], h, w], align_corners=False)
    mode = "bilinear" if "rotation" in kinds else "nearest"
    return F.grid_sample(images.float(), grid, mode=mode, padding_mode="zeros",
                         align_corners=False)


def device_task(cache: dict[str, torch.Tensor], num_classes: int, device, norm,
                kinds: tuple[str, ...] = ()) -> DeviceTask:
    """A decoded split on `device`: stored uint8, normalised (and augmented when `kinds`) as
    batches are drawn."""
    normalise = normaliser(*norm)
    images, labels = cache["images"].to(device), cache["labels"].to(device)
    if not kinds:
        return DeviceTask(images, labels, num_classes,
                          train_transform=lambda x, params, idx: normalise(x),
                          eval_transform=normalise)

    def train_transform(x, params, idx):
        return normalise(augment(x, params, kinds))

    return DeviceTask(images, labels, num_classes, train_transform=train_transform,
                      eval_transform=normalise, draw_params=draw_augment)


def tensor_task(cache: dict[str, torch.Tensor], num_classes: int, norm) -> TensorTask:
    """A decoded folder as a model-ready in-memory task (prior learning's source)."""
    return TensorTask(normaliser(*norm)(cache["images"]), cache["labels"], num_classes)


def write_example(target: str | Path, size: int = 32, per_class: int = 40, seed: int = 0) -> Path:
    """A tiny synthetic image folder to try the pipeline on: `downstream/{train,val,test}` with
    three shape classes (disc, square, triangle) and `source/` with three others (ring, cross,
    bar), coloured shapes at random places and sizes on noisy backgrounds, as PNG files."""
    import numpy as np
    from PIL import Image, ImageDraw

    target = Path(target)
    rng = np.random.default_rng(seed)

    def draw(kind: str) -> Image.Image:
        bg = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
        img = Image.fromarray(bg)
        pen = ImageDraw.Draw(img)
        r = rng.uniform(0.2, 0.38) * size
        cx, cy = rng.uniform(r, size - r, 2)
        box = [cx - r, cy - r, cx + r, cy + r]
        colour = tuple(int(c) for c in rng.integers(120, 256, 3))
        if kind == "disc":
            pen.ellipse(box, fill=colour)
        elif kind == "square":
            pen.rectangle(box, fill=colour)
        elif kind == "triangle":
            pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
        elif kind == "ring":
            pen.ellipse(box, outline=colour, width=max(2, size // 12))
        elif kind == "cross":
            pen.line([cx - r, cy, cx + r, cy], fill=colour, width=max(2, size // 10))
            pen.line([cx, cy - r, cx, cy + r], fill=colour, width=max(2, size // 10))
        else:
            pen.rectangle([cx - r, cy - r / 4, cx + r, cy + r / 4], fill=colour)
        return img

    parts = {"downstream/train": (("disc", "square", "triangle"), per_class),
             "downstream/val": (("disc", "square", "triangle"), per_class // 4),
             "downstream/test": (("disc", "square", "triangle"), per_class // 2),
             "source": (("ring", "cross", "bar"), per_class)}
    for part, (kinds, count) in parts.items():
        for kind in kinds:
            folder = target / part / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw(kind).save(folder / f"{i:04d}.png")
    return target
