"""The downstream data of a study on its device: training pool, validation set and test set
(cached per process).

The labelled pool (`data.labelled_pool`, `pool.labelled_pool_indices`; all downstream
training images when 0) holds every labelled image the downstream task may use. The validation
set is drawn once (fixed seed, `val_size` images, the same number of every class) from it and
removed from it, so no training subset can contain a validation image;
Flowers-102 uses a class-balanced subset of its official validation split instead, an image
folder its `val/` folder when it has one (all of it, or a class-balanced `val_size` of it).
Validation data only ever selects hyper-parameters; the test set only ever measures the selected
runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..config.profile import Profile
from ..data.device import DeviceTask
from ..data.fashion_mnist import FMNIST_FILES, fashion_mnist_task, locate_fashion_mnist
from ..data.pool import labelled_pool_indices
from ..data.subsets import balanced_subset
from ..data.tasks import DataUnavailableError, TensorTask, cache_dir
from ..digests import files_digest

# training pool, validation set (None without one), test set
Splits = tuple[DeviceTask, DeviceTask | None, DeviceTask]
TEST_SUBSET_SEED = 12345
VAL_SEED = 54321


@dataclass(frozen=True)
class DataKey:
    """What determines the downstream data (a hashable cache key)."""

    dataset: str
    root: str | None
    download: bool
    test_size: int
    val_size: int = 0
    env_data: str | None = None  # $BPRIOR_DATA when the key was made: it moves the data too
    labelled_pool: int = 0
    # image folders: decoded size and channels, training augmentations, normalisation
    image_size: int = 32
    channels: int = 1
    augment: tuple[str, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source_root: str | None = None  # an image folder's prior-learning source

    @classmethod
    def of(cls, profile: Profile) -> DataKey:
        from ..training.models import input_channels

        d = profile.data
        return cls(d.dataset, d.root, d.download, d.test_size, d.val_size,
                   os.environ.get("BPRIOR_DATA"), d.labelled_pool, d.image_size,
                   input_channels(profile.model), tuple(d.augment or ()),
                   None if d.mean is None else tuple(d.mean),
                   None if d.std is None else tuple(d.std),
                   profile.priors.learning.source_root)


def _test_subset(n_total: int, n_test: int) -> torch.Tensor | None:
    """The fixed random test subset (sorted), or None for the whole test set."""
    if not 0 < n_test < n_total:
        return None
    gen = torch.Generator().manual_seed(TEST_SUBSET_SEED)
    return torch.sort(torch.randperm(n_total, generator=gen)[:n_test]).values


def validation_indices(labels: torch.Tensor, val_size: int) -> torch.Tensor:
    """A fixed class-balanced sample of `val_size` indices (val_size / classes of each class)."""
    classes = len(torch.unique(labels))
    if val_size % classes:
        raise ValueError(f"a class-balanced validation set of {val_size} needs a multiple of the "
                         f"{classes} classes")
    return balanced_subset(labels, val_size // classes, VAL_SEED)


def split_validation(pool: DeviceTask, val_size: int) -> tuple[DeviceTask, DeviceTask | None]:
    """(pool without the validation images, validation set); (pool, None) for val_size 0."""
    if not val_size:
        return pool, None
    labels = pool.labels.cpu()
    val = validation_indices(labels, val_size)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    rest = keep.nonzero().flatten()
    return pool.subset(rest.to(pool.device)), pool.subset(val.to(pool.device))


def _fmnist_data(key: DataKey, device: str) -> Splits:
    train = fashion_mnist_task("downstream", "train", key.root, key.download)
    train = train.subset(labelled_pool_indices(train.labels, key.labelled_pool))
    test = fashion_mnist_task("downstream", "test", key.root, key.download)
    keep = _test_subset(len(test), key.test_size)
    if keep is not None:
        test = test.subset(keep)
    pool, val = split_validation(DeviceTask.from_task(train, device), key.val_size)
    return pool, val, DeviceTask.from_task(test, device)


def _flowers_data(key: DataKey, device: str) -> Splits:
    from ..data.flowers import flowers_device_task

    root = flowers_root(key)
    train = flowers_device_task("train", root, device, key.download)
    test = flowers_device_task("test", root, device, key.download)
    keep = _test_subset(len(test), key.test_size)
    if keep is not None:
        test = test.subset(keep.to(test.device))
    val = None
    if key.val_size:
        official = flowers_device_task("val", root, device, key.download)
        val = official.subset(validation_indices(official.labels.cpu(), key.val_size)
                              .to(official.device))
    return train, val, test


@lru_cache(maxsize=4)
def folder_normalisation(key: DataKey) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """An image folder's per-channel mean and std: given, else those of its training images."""
    from ..data.imagefolder import channel_stats, decoded, scan_root

    if key.mean is not None and key.std is not None:
        return key.mean, key.std
    mean, std = channel_stats(decoded(scan_root(key.root)["train"], key.image_size,
                                      key.channels)["images"])
    return key.mean or mean, key.std or std


def folder_split(key: DataKey, split: str):
    """One split of an image folder, decoded (cached): (uint8 images and labels, classes)."""
    from ..data.imagefolder import decoded, scan_root

    listing = scan_root(key.root)[split]
    return decoded(listing, key.image_size, key.channels), len(listing.classes)


def _folder_source(key: DataKey) -> TensorTask:
    """`priors.learning.source_root`'s images with their labels, model-ready."""
    from ..data.imagefolder import decoded, list_classes, tensor_task

    listing = list_classes(key.source_root, "priors.learning.source_root")
    cache = decoded(listing, key.image_size, key.channels)
    return tensor_task(cache, len(listing.classes), folder_normalisation(key))


def _folder_train(key: DataKey) -> TensorTask:
    """Every image of train/ with its label, model-ready."""
    from ..data.imagefolder import tensor_task

    cache, classes = folder_split(key, "train")
    return tensor_task(cache, classes, folder_normalisation(key))


def _folder_data(key: DataKey, device: str) -> Splits:
    """An image folder's pool (its labelled part of train/), validation and test sets."""
    from ..data.imagefolder import device_task, scan_root

    norm = folder_normalisation(key)
    train, classes = folder_split(key, "train")
    keep = labelled_pool_indices(train["labels"], key.labelled_pool)
    train = {"images": train["images"][keep], "labels": train["labels"][keep]}
    pool = device_task(train, classes, device, norm, key.augment)
    test_cache, _ = folder_split(key, "test")
    test = device_task(test_cache, classes, device, norm)
    subset = _test_subset(len(test), key.test_size)
    if subset is not None:
        test = test.subset(subset.to(test.device))
    if "val" not in scan_root(key.root):
        pool, val = split_validation(pool, key.val_size)
        return pool, val, test
    val_cache, _ = folder_split(key, "val")
    val = device_task(val_cache, classes, device, norm)
    if 0 < key.val_size < len(val):
        val = val.subset(validation_indices(val.labels.cpu(), key.val_size).to(val.device))
    return pool, val, test


def flowers_root(key: DataKey) -> str:
    """Where Flowers-102 lives: `data.root`, else ~/.cache/bprior."""
    return key.root or str(cache_dir())


def _fmnist_locate(key: DataKey) -> Path:
    return locate_fashion_mnist(key.root, key.download)


def _folder_locate(key: DataKey) -> Path:
    from ..data.imagefolder import scan_root

    scan_root(key.root)
    return Path(key.root)


def _flowers_locate(key: DataKey) -> Path:
    folder = Path(flowers_root(key))
    if not folder.is_dir() and not key.download:
        raise DataUnavailableError(
            f"Oxford Flowers-102 folder {folder} does not exist: set data.root to the folder "
            "holding torchvision's flowers-102/, or data.download: true (needs network access)")
    return folder / "flowers-102"


def _fmnist_digest(key: DataKey, folder: Path) -> str:
    """Fashion-MNIST: its four IDX files."""
    return files_digest([folder / name for name in FMNIST_FILES])


def _flowers_cache_digest(key: DataKey, folder: Path) -> str:
    """Flowers-102 as trained on: its decoded caches."""
    return files_digest(sorted((folder / "bprior-cache").glob("*.pt")))


@dataclass(frozen=True)
class DataSource:
    """How one data set is read: its splits on a device, the folder it lives in (without
    loading it; DataUnavailableError when a named location lacks it), a digest of its content
    before anything ran (a run's identity), one of what runs trained on (their records), and
    the labelled source images and all downstream training images prior learning reads."""

    load: Callable[[DataKey, str], Splits]
    locate: Callable[[DataKey], Path]
    digest: Callable[[DataKey, Path], str | None]
    trained_digest: Callable[[DataKey, Path], str]
    # the images prior learning may use (`sources`), model-ready; None: not learned here
    source_classes: Callable[[DataKey], TensorTask] | None = None
    downstream_train: Callable[[DataKey], TensorTask] | None = None


def _folder_digest(key: DataKey, folder: Path | None = None) -> str:
    """An image folder's splits: the names and sizes of their images."""
    from ..data.imagefolder import scan_root

    listings = scan_root(key.root)
    return hashlib.sha256(repr(sorted((s, v.digest()) for s, v in listings.items()))
                          .encode()).hexdigest()[:16]


def _flowers_digest(folder: Path) -> str | None:
    marks = [folder / "imagelabels.mat", folder / "setid.mat"]
    if not all(p.is_file() for p in marks):
        return None
    images = sorted((p.name, p.stat().st_size) for p in (folder / "jpg").glob("*.jpg"))
    listing = hashlib.sha256(repr(images).encode()).hexdigest()[:16]
    return f"{files_digest(marks)}-{listing}"


# `data.dataset` -> its source; a new data set is one more entry (and its name in
# config.DATASETS, which tests/test_data.py keeps equal to these keys)
SOURCES: dict[str, DataSource] = {
    "fashion_mnist": DataSource(
        _fmnist_data, _fmnist_locate, _fmnist_digest, _fmnist_digest,
        lambda key: fashion_mnist_task("source", "train", key.root, key.download),
        lambda key: fashion_mnist_task("downstream", "train", key.root, key.download)),
    "flowers102": DataSource(_flowers_data, _flowers_locate,
                             lambda key, folder: _flowers_digest(folder), _flowers_cache_digest),
    "imagefolder": DataSource(_folder_data, _folder_locate, _folder_digest, _folder_digest,
                              _folder_source, _folder_train),
}


@lru_cache(maxsize=2)
def downstream_data(key: DataKey, device: str) -> Splits:
    """Training pool, validation set (None without one) and test set, held on `device`."""
    return SOURCES[key.dataset].load(key, device)


def locate_data(key: DataKey) -> Path:
    """The folder the downstream data is read from, without loading it (DataUnavailableError
    when a named location lacks it)."""
    return SOURCES[key.dataset].locate(key)


@lru_cache(maxsize=4)
def data_source(key: DataKey) -> dict[str, str]:
    """Where the downstream data was read from and a digest of the files trained and tested on
    (Fashion-MNIST: the four IDX files; Flowers-102: its decoded caches; an image folder: its
    images' names and sizes), for each run's record."""
    folder = locate_data(key)
    return {"dataset": key.dataset, "folder": str(folder),
            "digest": SOURCES[key.dataset].trained_digest(key, folder)}


def data_digest(key: DataKey) -> str | None:
    """The digest of the downstream data files (see `data_source`), None where the data is not
    there yet (nothing can train then; preflight says what is missing). Flowers-102: its split
    and label files and the names and sizes of its images (its decoded cache is made by the
    first run, so it cannot identify the data before it)."""
    try:
        folder = locate_data(key)
    except DataUnavailableError:
        return None
    return SOURCES[key.dataset].digest(key, folder)
