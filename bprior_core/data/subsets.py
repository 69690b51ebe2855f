"""Few-shot training subsets (balanced or the reproduction's protocol) and endless mini-batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .tasks import TensorTask

SUBSET_PROTOCOLS = ("balanced", "reproduction")


# ----------------------------------------------------------------------------- subsets


def balanced_subset(labels: torch.Tensor, k_per_class: int, seed: int) -> torch.Tensor:
    """Indices of k random examples of every class, deterministic given the seed."""
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < k_per_class:
            raise ValueError(f"class {c} has {len(idx)} examples, fewer than k={k_per_class}")
        chosen.append(idx[torch.randperm(len(idx), generator=gen)[:k_per_class]])
    return torch.sort(torch.cat(chosen)).values


def reproduction_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The reproduction's protocol: for n <= 100 (and at most the number of classes), one random
    image of each of the first n classes; larger n: a uniform random sample of n images."""
    gen = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    if n <= min(100, len(classes)):
        chosen = []
        for c in classes[:n].tolist():
            idx = torch.nonzero(labels == c).flatten()
            chosen.append(idx[torch.randint(len(idx), (1,), generator=gen)])
        return torch.sort(torch.cat(chosen)).values
    if n > len(labels):
        raise ValueError(f"requested {n} training examples but the set has only {len(labels)}")
    return torch.sort(torch.randperm(len(labels), generator=gen)[:n]).values


def few_shot_indices(labels: torch.Tensor, n: int, protocol: str, seed: int) -> torch.Tensor:
    """Indices of a training subset of size n (`balanced`: n/C per class; or `reproduction`).

    n = 0 or n >= len(labels) means the full set."""
    if n <= 0 or n >= len(labels):
        return torch.arange(len(labels))
    if protocol == "balanced":
        num_classes = len(torch.unique(labels))
        if n % num_classes:
            raise ValueError(f"balanced subsets need n divisible by {num_classes} classes, got {n}")
        return balanced_subset(labels, n // num_classes, seed)
    if protocol == "reproduction":
        return reproduction_subset(labels, n, seed)
    raise ValueError(f"unknown subset protocol {protocol!r}; expected one of {SUBSET_PROTOCOLS}")


# ----------------------------------------------------------------------------- batching


def infinite_batches(
    data: TensorTask, batch_size: int, generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled mini-batches (reshuffled every epoch), repeatable given the generator.

    Batches never exceed the data size, so a 5-image training set gives batches of 5."""
    batch_size = min(batch_size, len(data))
    while True:
        perm = torch.randperm(len(data), generator=generator)
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[i : i + batch_size]
            yield data.images[idx].to(device), data.labels[idx].to(device)
