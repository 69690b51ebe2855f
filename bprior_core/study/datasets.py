"""The downstream data of a study on its device: training pool and test set (cached per process)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..data import fashion_mnist_task
from ..device_data import DeviceTask

TEST_SUBSET_SEED = 12345


@dataclass(frozen=True)
class DataKey:
    """What determines the downstream data (a hashable cache key)."""

    dataset: str
    root: str | None
    download: bool
    test_size: int

    @classmethod
    def of(cls, profile: dict) -> DataKey:
        d = profile["data"]
        return cls(d["dataset"], d["root"], d["download"], d["test_size"])


def _test_subset(n_total: int, n_test: int) -> torch.Tensor | None:
    """The fixed random test subset (sorted), or None for the whole test set."""
    if not 0 < n_test < n_total:
        return None
    gen = torch.Generator().manual_seed(TEST_SUBSET_SEED)
    return torch.sort(torch.randperm(n_total, generator=gen)[:n_test]).values


@lru_cache(maxsize=2)
def downstream_data(key: DataKey, device: str) -> tuple[DeviceTask, DeviceTask]:
    """Training pool and test set of the downstream task, held on `device`."""
    if key.dataset == "fashion_mnist":
        train = fashion_mnist_task("downstream", "train", key.root)
        test = fashion_mnist_task("downstream", "test", key.root)
        keep = _test_subset(len(test), key.test_size)
        if keep is not None:
            test = test.subset(keep)
        return DeviceTask.from_task(train, device), DeviceTask.from_task(test, device)
    from ..flowers import flowers_device_task

    root = key.root or str(Path.home() / ".cache" / "bprior")
    train = flowers_device_task("train", root, device, key.download)
    test = flowers_device_task("test", root, device, key.download)
    keep = _test_subset(len(test), key.test_size)
    if keep is not None:
        test = test.subset(keep.to(test.device))
    return train, test
