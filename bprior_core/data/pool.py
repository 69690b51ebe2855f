"""The labelled pool: the downstream training images that training subsets and the validation
set are drawn from, split once with a fixed seed, class-balanced. Everything outside it is what
prior learning may see of the downstream classes (`sources`)."""

from __future__ import annotations

import torch

POOL_SEED = 24680


def labelled_pool_indices(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Sorted indices of the labelled pool: `size` images, the same number of every class, drawn
    with a fixed seed; every image when size is 0."""
    if not size:
        return torch.arange(len(labels))
    classes = torch.unique(labels)
    per_class = size // len(classes)
    gen = torch.Generator().manual_seed(POOL_SEED)
    chosen = []
    for c in classes.tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than the {per_class} a "
                             f"labelled pool of {size} takes from each class")
        chosen.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return torch.sort(torch.cat(chosen)).values


def outside_pool_indices(labels: torch.Tensor, size: int) -> torch.Tensor:
    """Sorted indices of the downstream training images outside the labelled pool."""
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[labelled_pool_indices(labels, size)] = False
    return keep.nonzero().flatten()
