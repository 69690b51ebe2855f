"""Datasets for the study and few-shot subsets.

The embedded default is Fashion-MNIST split by class: the source task (prior learning) is classes
0-4, the downstream task classes 5-9, re-labelled 0-4. Oxford Flowers-102, the full-scale GPU
setting, lives in `flowers`.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from .tasks import DataFileError, DataUnavailableError, TensorTask, cache_dir, select_classes

FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
FASHION_MNIST_SIZE = (28, 28)  # pixels of one image
FASHION_MNIST_CLASSES = 10
SOURCE_CLASSES = (0, 1, 2, 3, 4)
DOWNSTREAM_CLASSES = (5, 6, 7, 8, 9)
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# how to fix a data file that is not Fashion-MNIST's
_REPLACE = ("replace it with a good copy (e.g. reinstall `dataset-fashion-mnist`, or download "
            "the four IDX .gz files again)")


# ----------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file into a numpy array; a corrupt or truncated file raises
    DataFileError naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    fix = f"the file is corrupt or truncated; {_REPLACE}"
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataFileError(f"{path} cannot be read ({type(exc).__name__}: {exc}); {fix}") from exc
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataFileError(f"{path} is not an IDX file of unsigned bytes (type 0x08); {fix}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + math.prod(shape)  # exact: numpy's int64 product could wrap
    if len(data) != expected:
        raise DataFileError(f"{path} holds {len(data)} bytes but its header {shape} needs "
                            f"{expected}; {fix}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


FMNIST_FILES = tuple(name for pair in _FMNIST_FILES.values() for name in pair)


def _layouts(folder: Path) -> list[Path]:
    """Where under `folder` the four IDX files may lie: in it, in `fashion-mnist/`, or in
    torchvision's download layout `FashionMNIST/raw/`."""
    return [folder, folder / "fashion-mnist", folder / "FashionMNIST" / "raw"]


def _holds_fmnist(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FMNIST_FILES)


def _given_location(root: str | os.PathLike | None) -> tuple[str, Path] | None:
    """The location the user named: `data.root` (the profile), else $BPRIOR_DATA; None if
    neither is set."""
    if root:
        return "data.root", Path(root)
    if os.environ.get("BPRIOR_DATA"):
        return "$BPRIOR_DATA", Path(os.environ["BPRIOR_DATA"])
    return None


def _system_locations() -> list[Path]:
    """Copies looked for only when no location is given: Debian's package, the user cache."""
    cache = cache_dir()
    return [DEBIAN_FMNIST_DIR, cache / "fashion-mnist", cache / "FashionMNIST" / "raw"]


def _not_there(label: str, folder: Path) -> DataUnavailableError:
    """The error for a named location without the data: what is there, what is expected."""
    partial = [(d, [n for n in FMNIST_FILES if not (d / n).is_file()]) for d in _layouts(folder)
               if any((d / n).is_file() for n in FMNIST_FILES)]
    found = "".join(f"; {d} lacks {', '.join(missing)}" for d, missing in partial)
    state = "does not exist" if not folder.exists() else "does not hold Fashion-MNIST"
    return DataUnavailableError(
        f"{label} is {folder}, which {state}{found}: expected the four IDX files "
        f"{', '.join(FMNIST_FILES)} in it, in its fashion-mnist/ or in its FashionMNIST/raw/ "
        f"subfolder; fix {label} (or unset it to use the system copy, e.g. Debian's "
        "`dataset-fashion-mnist`)")


def locate_fashion_mnist(root: str | os.PathLike | None = None, download: bool = False) -> Path:
    """The folder holding Fashion-MNIST's four IDX files.

    A location the user gave (`root`, else $BPRIOR_DATA) must hold them: nothing else is looked
    at, and a missing or partial copy there is an error naming the folder and the files (with
    `download` and `root`, torchvision's downloader fills that folder first). Only without a
    given location are the system copies tried (Debian's package, ~/.cache/bprior), then a
    download into ~/.cache/bprior."""
    given = _given_location(root)
    if given is not None:
        label, folder = given
        found = next((d for d in _layouts(folder) if _holds_fmnist(d)), None)
        if found is None and download and label == "data.root":
            _download_fmnist(folder, f"{label} {folder}")
            found = next((d for d in _layouts(folder) if _holds_fmnist(d)), None)
        if found is None:
            raise _not_there(label, folder)
        return found
    found = next((d for d in _system_locations() if _holds_fmnist(d)), None)
    if found is not None:
        return found
    _download_fmnist(cache_dir(), ", ".join(str(d) for d in _system_locations()))
    return cache_dir() / "FashionMNIST" / "raw"


def _download_fmnist(target: Path, looked_in: str) -> None:
    """torchvision's downloader into `target`; without a network, an error saying how to get
    the files."""
    try:
        from torchvision.datasets import FashionMNIST

        for train in (True, False):
            FashionMNIST(str(target), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "no data"
        raise DataUnavailableError(
            f"Fashion-MNIST was not found in {looked_in} and downloading it failed "
            f"({type(exc).__name__}: {exc}). Install it with `apt-get install "
            "dataset-fashion-mnist` (Debian), or put the four IDX .gz files in a folder and set "
            "BPRIOR_DATA to its parent (files in $BPRIOR_DATA/fashion-mnist) or `data.root` to it."
        ) from exc


def _check_fmnist_images(path: Path, images: np.ndarray) -> None:
    """Images must be N x 28 x 28."""
    if images.ndim != 3 or images.shape[1:] != FASHION_MNIST_SIZE:
        pixels = " x ".join(str(n) for n in images.shape[1:]) or "no"
        raise DataFileError(
            f"{path} holds images of {pixels} pixels (shape {images.shape}); Fashion-MNIST's are "
            f"28 x 28 (shape N x 28 x 28): this is not a Fashion-MNIST images file; {_REPLACE}")


def _check_fmnist_labels(path: Path, labels: np.ndarray, n_images: int, images: Path) -> None:
    """One label per image, each in 0-9, and every class with at least one image (the source
    and downstream tasks each need all of their five classes)."""
    if labels.ndim != 1:
        raise DataFileError(f"{path} holds labels of shape {labels.shape}; expected one label per "
                            f"image (shape N); {_REPLACE}")
    if len(labels) != n_images:
        raise DataFileError(
            f"{path} holds {len(labels)} labels but {images} holds {n_images} images; expected "
            f"one label per image ({n_images} labels): the two files are not a pair; {_REPLACE}")
    if labels.max(initial=0) >= FASHION_MNIST_CLASSES:
        first = int(np.argmax(labels >= FASHION_MNIST_CLASSES))
        raise DataFileError(
            f"{path} holds label {labels[first]} (image {first}); Fashion-MNIST's labels are the "
            f"classes 0-{FASHION_MNIST_CLASSES - 1}; {_REPLACE}")
    counts = np.bincount(labels, minlength=FASHION_MNIST_CLASSES)
    empty = [c for c in range(FASHION_MNIST_CLASSES) if counts[c] == 0]
    if empty:
        raise DataFileError(
            f"{path} holds no image of class {', '.join(map(str, empty))}; expected images of "
            f"every class 0-{FASHION_MNIST_CLASSES - 1} (classes {SOURCE_CLASSES[0]}-"
            f"{SOURCE_CLASSES[-1]} are the source task, {DOWNSTREAM_CLASSES[0]}-"
            f"{DOWNSTREAM_CLASSES[-1]} the downstream one); {_REPLACE}")


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None,
                       download: bool = False) -> TensorTask:
    """Fashion-MNIST `train` (60k) or `test` (10k) as normalised float tensors (N x 1 x 28 x 28),
    read from `locate_fashion_mnist(root, download)`. Files that are not Fashion-MNIST's (other
    image sizes, labels outside 0-9, counts that differ, a class without images) raise
    DataFileError naming the file, before anything trains on them."""
    if split not in _FMNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = locate_fashion_mnist(root, download)
    img_path, lab_path = (folder / name for name in _FMNIST_FILES[split])
    raw_images = _read_idx(img_path)
    _check_fmnist_images(img_path, raw_images)
    raw_labels = _read_idx(lab_path)
    _check_fmnist_labels(lab_path, raw_labels, len(raw_images), img_path)
    images = torch.from_numpy(raw_images.copy()).float().div_(255.0)
    images = images.sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD).unsqueeze(1)
    labels = torch.from_numpy(raw_labels.astype(np.int64))
    return TensorTask(images, labels, num_classes=FASHION_MNIST_CLASSES)


def fashion_mnist_task(
    role: str, split: str, root: str | os.PathLike | None = None, download: bool = False
) -> TensorTask:
    """The source (classes 0-4) or downstream (classes 5-9, re-labelled 0-4) task."""
    classes = {"source": SOURCE_CLASSES, "downstream": DOWNSTREAM_CLASSES}
    if role not in classes:
        raise ValueError(f"role must be 'source' or 'downstream', got {role!r}")
    return select_classes(load_fashion_mnist(split, root, download), classes[role])
