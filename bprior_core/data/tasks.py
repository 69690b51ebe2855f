"""A labelled image task as tensors, the data errors, the cache folder, and selecting classes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


class DataUnavailableError(RuntimeError):
    """The data set is not on this machine and could not be downloaded."""


class DataFileError(ValueError):
    """A data file exists but is corrupt or truncated; the message names it."""


@dataclass
class TensorTask:
    """A classification task held in memory as tensors (images N x C x H x W, labels N)."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> TensorTask:
        return TensorTask(self.images[indices], self.labels[indices], self.num_classes)


CACHE_ENV = "BPRIOR_CACHE"


def cache_dir() -> Path:
    """$BPRIOR_CACHE, else ~/.cache/bprior: downloads when no data location is given, decoded
    image folders."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bprior")


def select_classes(task: TensorTask, classes: Sequence[int]) -> TensorTask:
    """Keep only the given classes, re-labelled 0..len(classes)-1 in the given order."""
    mapping = torch.full((task.num_classes,), -1, dtype=torch.long)
    mapping[torch.tensor(list(classes))] = torch.arange(len(classes))
    keep = mapping[task.labels] >= 0
    return TensorTask(task.images[keep], mapping[task.labels[keep]], num_classes=len(classes))
