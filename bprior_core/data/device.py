"""Data kept on the training device: a labelled image pool, and per-run mini-batch streams.

The downstream sets are small (few-shot subsets of Fashion-MNIST, Flowers-102's 1,020 training
images), so the whole pool and the test set live on the device as tensors. Each run of a pack owns
a subset of the pool (its indices) and a generator; batch indices (and augmentation parameters)
are drawn on the host for a chunk of steps at once and moved to the device in one copy, so the
training loop never waits on the host and a run's batches depend only on its own generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .tasks import TensorTask

# (images of one batch on the device, augmentation parameters or None, their pool indices)
# -> model inputs
Transform = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]
# (generator, batch size) -> augmentation parameters of one batch (on the host), or None
ParamDraw = Callable[[torch.Generator, int], torch.Tensor | None]


def _no_params(gen: torch.Generator, n: int) -> None:
    return None


def _identity(x: torch.Tensor, params: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class DeviceTask:
    """Images (N, C, H, W, any dtype) and labels on one device, with the transforms that turn
    stored images into model inputs: `train_transform` (random, from per-image parameters drawn
    by `draw_params`) and `eval_transform` (deterministic)."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    train_transform: Transform = _identity
    eval_transform: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    draw_params: ParamDraw = _no_params

    @classmethod
    def from_task(cls, task: TensorTask, device) -> DeviceTask:
        """An in-memory TensorTask (already model-ready) moved to `device`, no augmentation."""
        return cls(task.images.to(device), task.labels.to(device), task.num_classes)

    def subset(self, indices: torch.Tensor) -> DeviceTask:
        """The same task restricted to `indices` (same transforms)."""
        return DeviceTask(self.images[indices], self.labels[indices], self.num_classes,
                          self.train_transform, self.eval_transform, self.draw_params)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.labels)

    def train_batch(
        self, idx: torch.Tensor, params: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (R, B, ...) and labels (R, B) of pool indices idx (R, B)."""
        flat = idx.reshape(-1)
        x = self.train_transform(self.images[flat], None if params is None
                                 else params.reshape(flat.numel(), -1), flat)
        return x.reshape(*idx.shape, *x.shape[1:]), self.labels[flat].view(idx.shape)

    def eval_chunks(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One ordered pass over the pool in chunks of `size`, with the evaluation transform."""
        for i in range(0, len(self), size):
            yield self.eval_transform(self.images[i:i + size]), self.labels[i:i + size]


def _epoch_batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Positions 0..n-1 reshuffled every epoch, cut into whole batches (the remainder dropped)."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            yield perm[i:i + batch_size]


class BatchStream:
    """Endless mini-batches for R runs: run r draws from its own `subsets[r]` (pool indices) with
    its own generator, reshuffling every epoch, exactly as one run alone would.

    Batches never exceed the subset size (a 5-image subset gives batches of 5); every run of a
    stream must have the same subset size.
    """

    def __init__(
        self, pool: DeviceTask, subsets: Sequence[torch.Tensor], batch_size: int,
        generators: Sequence[torch.Generator], chunk: int = 64,
    ) -> None:
        sizes = {len(s) for s in subsets}
        if len(sizes) != 1:
            raise ValueError(f"every run of a pack needs the same training-set size, got {sizes}")
        self.pool, self.chunk = pool, chunk
        self.subsets = [s.cpu() for s in subsets]
        self.batch_size = min(batch_size, sizes.pop())
        self.generators = list(generators)
        self._positions = [_epoch_batches(len(s), self.batch_size, g)
                           for s, g in zip(self.subsets, self.generators, strict=True)]
        self._queue: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def _refill(self) -> None:
        steps = []
        for _ in range(self.chunk):
            idx, params = [], []
            for subset, positions, gen in zip(self.subsets, self._positions, self.generators,
                                              strict=True):
                idx.append(subset[next(positions)])
                params.append(self.pool.draw_params(gen, self.batch_size))
            steps.append((torch.stack(idx), None if params[0] is None else torch.stack(params)))
        device = self.pool.device
        idx = torch.stack([s[0] for s in steps]).to(device, non_blocking=True)
        par = (None if steps[0][1] is None
               else torch.stack([s[1] for s in steps]).to(device, non_blocking=True))
        self._queue = [(idx[k], None if par is None else par[k]) for k in range(self.chunk)][::-1]

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._queue:
            self._refill()
        idx, params = self._queue.pop()
        return self.pool.train_batch(idx, params)
