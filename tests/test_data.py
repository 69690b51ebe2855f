"""Tests for bprior_core.data: IDX reading, class splits, few-shot subsets, batching."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from bprior_core.data import fashion_mnist, subsets, tasks

# ----------------------------------------------------------------------------- IDX files


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array in the IDX format (magic 0x00 0x00 0x08 ndim, big-endian dims)."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_fake_fmnist(folder: Path, n_train: int = 12, n_test: int = 10) -> dict[str, np.ndarray]:
    """Four tiny IDX .gz files with Fashion-MNIST's names, every class in both splits (labels
    0, 1, ..., 9, 0, ...); returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        img_name, lab_name = fashion_mnist._FMNIST_FILES[split]
        write_idx(folder / img_name, images)
        write_idx(folder / lab_name, labels)
        arrays[split + "_images"], arrays[split + "_labels"] = images, labels
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_hand_written_file(tmp_path, compress) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("images.idx.gz" if compress else "images.idx")
    write_idx(path, images, compress)
    out = fashion_mnist._read_idx(path)
    assert out.shape == (2, 3, 4)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)

    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "labels.gz", labels)
    np.testing.assert_array_equal(fashion_mnist._read_idx(tmp_path / "labels.gz"), labels)


@pytest.fixture
def no_system_fmnist(tmp_path, monkeypatch):
    """Hide every real Fashion-MNIST location (Debian folder, $BPRIOR_DATA, ~/.cache)."""
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FMNIST_DIR", tmp_path / "no-debian")
    monkeypatch.delenv("BPRIOR_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_load_fashion_mnist_from_bprior_data(no_system_fmnist, monkeypatch) -> None:
    tmp_path = no_system_fmnist
    arrays = write_fake_fmnist(tmp_path / "mydata" / "fashion-mnist")
    monkeypatch.setenv("BPRIOR_DATA", str(tmp_path / "mydata"))
    task = fashion_mnist.load_fashion_mnist("train")
    assert task.images.shape == (12, 1, 28, 28)
    assert task.images.dtype == torch.float32
    assert task.num_classes == 10
    assert torch.equal(task.labels, torch.from_numpy(arrays["train_labels"].astype(np.int64)))
    mean, std = fashion_mnist.FASHION_MNIST_MEAN, fashion_mnist.FASHION_MNIST_STD
    expected = (arrays["train_images"] / 255.0 - mean) / std
    assert torch.allclose(task.images[:, 0].double(), torch.from_numpy(expected), atol=1e-5)
    assert len(fashion_mnist.load_fashion_mnist("test")) == 10


def test_load_fashion_mnist_from_root_and_torchvision_layout(no_system_fmnist) -> None:
    tmp_path = no_system_fmnist
    write_fake_fmnist(tmp_path / "flat", n_train=14)
    assert len(fashion_mnist.load_fashion_mnist("train", root=tmp_path / "flat")) == 14
    write_fake_fmnist(tmp_path / "tv" / "FashionMNIST" / "raw", n_train=16)
    assert len(fashion_mnist.load_fashion_mnist("train", root=tmp_path / "tv")) == 16


def test_bad_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="split"):
        fashion_mnist.load_fashion_mnist("validation")


def test_missing_data_without_download_says_how_to_install(no_system_fmnist, monkeypatch) -> None:
    import torchvision.datasets

    calls = []

    def offline(*args, **kwargs):
        calls.append((args, kwargs))
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(tasks.DataUnavailableError) as info:
        fashion_mnist.load_fashion_mnist("train")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "BPRIOR_DATA" in message
    assert "network is unreachable" in message
    assert calls, "the downloader was tried (and failed) instead of the network"
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(tasks.DataUnavailableError):
        fashion_mnist.fashion_mnist_task("downstream", "test")


@pytest.fixture
def system_fmnist(tmp_path, monkeypatch):
    """A complete 'system' copy (the Debian folder) and no $BPRIOR_DATA: a fallback that a
    named location must never silently use."""
    write_fake_fmnist(tmp_path / "debian", n_train=20)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FMNIST_DIR", tmp_path / "debian")
    monkeypatch.delenv("BPRIOR_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_without_a_location_the_system_copy_is_used(system_fmnist) -> None:
    assert fashion_mnist.locate_fashion_mnist() == system_fmnist / "debian"
    assert len(fashion_mnist.load_fashion_mnist("train")) == 20


@pytest.mark.parametrize("how", ["root", "env"])
def test_a_named_folder_without_the_data_is_an_error_not_the_system_copy(
        system_fmnist, monkeypatch, how) -> None:
    empty = system_fmnist / "empty"
    empty.mkdir()
    if how == "env":
        monkeypatch.setenv("BPRIOR_DATA", str(empty))
    with pytest.raises(tasks.DataUnavailableError) as info:
        fashion_mnist.load_fashion_mnist("train", root=empty if how == "root" else None)
    message = str(info.value)
    label = "data.root" if how == "root" else "$BPRIOR_DATA"
    assert f"{label} is {empty}" in message and "does not hold Fashion-MNIST" in message
    assert all(name in message for name in fashion_mnist.FMNIST_FILES)


def test_a_missing_folder_and_a_partial_copy_name_what_is_missing(system_fmnist) -> None:
    with pytest.raises(tasks.DataUnavailableError, match="does not exist"):
        fashion_mnist.locate_fashion_mnist(system_fmnist / "nowhere")
    partial = system_fmnist / "partial"
    write_fake_fmnist(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(tasks.DataUnavailableError) as info:
        fashion_mnist.locate_fashion_mnist(partial)
    assert f"{partial} lacks t10k-labels-idx1-ubyte.gz" in str(info.value)


def test_root_takes_precedence_over_bprior_data(system_fmnist, monkeypatch) -> None:
    write_fake_fmnist(system_fmnist / "env" / "fashion-mnist", n_train=11)
    write_fake_fmnist(system_fmnist / "mine", n_train=13)
    monkeypatch.setenv("BPRIOR_DATA", str(system_fmnist / "env"))
    assert len(fashion_mnist.load_fashion_mnist("train")) == 11
    assert len(fashion_mnist.load_fashion_mnist("train", root=system_fmnist / "mine")) == 13


def damaged_fmnist(folder: Path, damage: str) -> tuple[Path, Path, str]:
    """A fake Fashion-MNIST (20 training images) with one defect in its training split:
    (folder, the file at fault, text its error must contain)."""
    arrays = write_fake_fmnist(folder, n_train=20)
    images, labels = arrays["train_images"], arrays["train_labels"].copy()
    img_path, lab_path = (folder / name for name in fashion_mnist._FMNIST_FILES["train"])
    if damage == "label 12":
        labels[3] = 12
        write_idx(lab_path, labels)
        return folder, lab_path, "label 12"
    if damage == "count":
        write_idx(lab_path, labels[:-1])
        return folder, lab_path, "19 labels"
    if damage == "shape":
        write_idx(img_path, images.reshape(20, 14, 56))
        return folder, img_path, "28 x 28"
    if damage == "empty class":
        labels[labels == 7] = 8  # downstream class 7 (re-labelled 2) loses its images
        write_idx(lab_path, labels)
        return folder, lab_path, "class 7"
    raise ValueError(damage)


@pytest.mark.parametrize("damage", ["label 12", "count", "shape", "empty class"])
def test_damaged_data_files_are_refused_when_read(no_system_fmnist, damage) -> None:
    """Issue 14: these were read without complaint (and trained on, or ended in an IndexError
    or ZeroDivisionError far from the file)."""
    folder, bad_file, needle = damaged_fmnist(no_system_fmnist / "fmnist", damage)
    with pytest.raises(tasks.DataFileError) as info:
        fashion_mnist.load_fashion_mnist("train", root=folder)
    message = str(info.value)
    assert str(bad_file) in message and needle in message, message
    # the other split is fine
    assert len(fashion_mnist.load_fashion_mnist("test", root=folder)) == 10


def test_the_data_error_says_what_was_expected(no_system_fmnist) -> None:
    folder = no_system_fmnist / "fmnist"
    for damage, expected in [("label 12", "0-9"), ("count", "20 images"),
                             ("shape", "14 x 56"), ("empty class", "every class 0-9")]:
        damaged_fmnist(folder, damage)
        with pytest.raises(tasks.DataFileError, match=expected):
            fashion_mnist.load_fashion_mnist("train", root=folder)


def test_labels_that_are_not_one_dimensional_are_refused(no_system_fmnist) -> None:
    folder = no_system_fmnist / "fmnist"
    write_fake_fmnist(folder)
    labels = folder / fashion_mnist._FMNIST_FILES["test"][1]
    write_idx(labels, (np.arange(10) % 10).astype(np.uint8).reshape(10, 1))
    with pytest.raises(tasks.DataFileError, match="one label per image"):
        fashion_mnist.load_fashion_mnist("test", root=folder)


# ----------------------------------------------------------------------------- class split


def test_select_classes_relabels_in_given_order() -> None:
    images = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1)
    labels = torch.tensor([0, 3, 1, 3, 2, 0, 1, 2])
    task = tasks.TensorTask(images, labels, num_classes=4)
    out = tasks.select_classes(task, [3, 1])
    assert out.num_classes == 2
    assert out.labels.tolist() == [0, 1, 0, 1]  # 3 -> 0, 1 -> 1, in the original order
    assert out.images.flatten().tolist() == [1.0, 2.0, 3.0, 6.0]


def test_fashion_mnist_source_and_downstream_split(
    fmnist_raw_train, downstream_train
) -> None:
    raw = fmnist_raw_train
    source = tasks.select_classes(raw, fashion_mnist.SOURCE_CLASSES)
    is_source = raw.labels < 5
    assert source.num_classes == 5 and downstream_train.num_classes == 5
    assert len(source) == int(is_source.sum())
    assert len(downstream_train) == int((~is_source).sum())
    assert len(source) + len(downstream_train) == len(raw)
    assert torch.equal(source.labels, raw.labels[is_source])
    assert torch.equal(downstream_train.labels, raw.labels[~is_source] - 5)
    assert torch.equal(downstream_train.images, raw.images[~is_source])
    assert sorted(torch.unique(downstream_train.labels).tolist()) == [0, 1, 2, 3, 4]


def test_fashion_mnist_task_source_role_and_bad_role(fmnist_raw_train) -> None:
    test_raw = fashion_mnist.load_fashion_mnist("test")
    source = fashion_mnist.fashion_mnist_task("source", "test")
    keep = test_raw.labels < 5
    assert torch.equal(source.labels, test_raw.labels[keep])
    assert torch.equal(source.images, test_raw.images[keep])
    with pytest.raises(ValueError, match="role"):
        fashion_mnist.fashion_mnist_task("target", "train")


# ----------------------------------------------------------------------------- subsets

LABELS = torch.arange(200) % 5  # 40 examples of each of 5 classes


def test_balanced_subset_k_per_class_deterministic_and_seed_dependent() -> None:
    idx = subsets.balanced_subset(LABELS, 3, seed=7)
    assert len(idx) == 15 and len(set(idx.tolist())) == 15
    assert torch.bincount(LABELS[idx], minlength=5).tolist() == [3] * 5
    assert torch.equal(idx, subsets.balanced_subset(LABELS, 3, seed=7))
    assert not torch.equal(idx, subsets.balanced_subset(LABELS, 3, seed=8))
    with pytest.raises(ValueError, match="fewer than k"):
        subsets.balanced_subset(LABELS, 41, seed=0)


def test_reproduction_subset_one_per_first_classes() -> None:
    labels = torch.arange(300) % 10
    for n in (1, 4, 10):
        idx = subsets.reproduction_subset(labels, n, seed=3)
        assert sorted(labels[idx].tolist()) == list(range(n))
    first = subsets.reproduction_subset(labels, 4, seed=3)
    assert torch.equal(first, subsets.reproduction_subset(labels, 4, seed=3))


def test_reproduction_subset_larger_n_is_uniform_without_duplicates() -> None:
    labels = torch.arange(300) % 10
    idx = subsets.reproduction_subset(labels, 50, seed=1)
    assert len(idx) == 50 and len(set(idx.tolist())) == 50
    assert idx.min() >= 0 and idx.max() < 300
    assert not torch.equal(idx, subsets.reproduction_subset(labels, 50, seed=2))
    with pytest.raises(ValueError):
        subsets.reproduction_subset(torch.arange(20) % 10, 30, seed=0)


def test_few_shot_indices_full_set_and_protocols() -> None:
    assert torch.equal(subsets.few_shot_indices(LABELS, 0, "balanced", 0), torch.arange(200))
    assert torch.equal(subsets.few_shot_indices(LABELS, 500, "balanced", 0), torch.arange(200))
    assert torch.equal(
        subsets.few_shot_indices(LABELS, 10, "balanced", 4), subsets.balanced_subset(LABELS, 2, 4)
    )
    assert torch.equal(
        subsets.few_shot_indices(LABELS, 3, "reproduction", 4),
        subsets.reproduction_subset(LABELS, 3, 4),
    )
    with pytest.raises(ValueError, match="divisible"):
        subsets.few_shot_indices(LABELS, 12, "balanced", 0)
    with pytest.raises(ValueError, match="protocol"):
        subsets.few_shot_indices(LABELS, 10, "stratified", 0)


# ----------------------------------------------------------------------------- batching


def small_task(n: int = 10) -> tasks.TensorTask:
    return tasks.TensorTask(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1),
                           torch.arange(n) % 3, 3)


def take(iterator, k):
    return list(itertools.islice(iterator, k))


def test_infinite_batches_deterministic_given_generator() -> None:
    task = small_task(10)
    a = take(subsets.infinite_batches(task, 4, torch.Generator().manual_seed(5)), 7)
    b = take(subsets.infinite_batches(task, 4, torch.Generator().manual_seed(5)), 7)
    c = take(subsets.infinite_batches(task, 4, torch.Generator().manual_seed(6)), 7)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2)
               for (x1, y1), (x2, y2) in zip(a, b, strict=True))
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, c, strict=True))
    for x, y in a:
        assert x.shape == (4, 1, 1, 1)
        # labels travel with their images
        assert torch.equal(y, x.flatten().long() % 3)
    # an epoch of 10 with batch 4 gives two batches of distinct images (remainder dropped)
    first_epoch = torch.cat([x.flatten() for x, _ in a[:2]])
    assert len(set(first_epoch.tolist())) == 8


def test_infinite_batches_never_larger_than_data() -> None:
    task = small_task(5)
    batches = take(subsets.infinite_batches(task, 16, torch.Generator().manual_seed(0)), 3)
    for x, _ in batches:
        assert x.shape[0] == 5
        assert sorted(x.flatten().tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_every_dataset_a_profile_may_name_has_a_source() -> None:
    """`data.dataset`'s choices and the data sources are one vocabulary."""
    from bprior_core.config import DATASETS, SCHEMA
    from bprior_core.study.datasets import SOURCES

    assert set(DATASETS) == set(SOURCES) == set(SCHEMA["data"]["dataset"].choices)
