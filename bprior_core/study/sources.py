"""Which images each part of a study may see: the labelled pool of the downstream classes, and
the images each learned prior is learned from.

Fashion-MNIST's training images of the downstream classes (5-9) are split ONCE (fixed seed,
class-balanced) into the labelled pool (`data.labelled_pool` images: the validation set and
every training subset come from it) and the rest. Only prior learning may use the rest:

- `ssl` (SimCLR, labels unused): the source classes' training images (`priors.ssl_source:
  source_classes`), or every training image outside the labelled pool (`outside_pool`: the
  source classes and the downstream rest, as ImageNet covers CIFAR-10's classes for the
  paper's SimCLR prior);
- `supervised`: the source classes with their labels;
- `oracle` (the positive control): the downstream rest WITH its labels, a prior that knows the
  downstream task from images no training subset, validation or test image comes from;
- `task` (the covariance control): the same images and labels, fine-tuning the SimCLR draw's
  weights; only the directions it moves them in are kept.

No test image reaches prior learning (it reads training images only), and no pool image
either (`outside_pool_indices` is the pool's complement).

An image folder (`data.dataset: imagefolder`) takes the same roles from its own folders: the
source classes are `priors.learning.source_root`'s class folders (labels as their sorted names),
the downstream rest is `train/` outside the labelled pool.
"""

from __future__ import annotations

import torch

from ..config.profile import Profile
from ..data.pool import outside_pool_indices
from ..data.tasks import TensorTask
from ..vocabulary import DOWNSTREAM_PRIORS
from .datasets import SOURCES, DataKey

OBJECTIVES = {"ssl": "simclr", "supervised": "supervised", "oracle": "supervised",
              "task": "supervised"}


def source_kind(profile: Profile, name: str) -> str:
    """Which images prior `name` is learned from: `source_classes`, `outside_pool` or
    `downstream_rest`."""
    if name in DOWNSTREAM_PRIORS:
        return "downstream_rest"
    if name == "ssl":
        return profile.priors.ssl_source
    return "source_classes"


def _prior_images(profile: Profile, part: str) -> TensorTask:
    """The data set's images prior learning may draw on (`part`: `source_classes` or
    `downstream_train`; see `datasets.DataSource`)."""
    key = DataKey.of(profile)
    read = getattr(SOURCES[key.dataset], part)
    if read is None:
        raise ValueError(f"priors cannot be learned on {key.dataset} here")
    return read(key)


def source_task(profile: Profile, name: str) -> TensorTask:
    """The images (and labels) prior `name` is learned from, optionally cut to
    `priors.learning.source_train_size` random images (fixed seed)."""
    data = profile.data
    kind = source_kind(profile, name)
    parts = []
    if kind in ("source_classes", "outside_pool"):
        parts.append(_prior_images(profile, "source_classes"))
    if kind in ("outside_pool", "downstream_rest"):
        downstream = _prior_images(profile, "downstream_train")
        parts.append(downstream.subset(outside_pool_indices(downstream.labels,
                                                            data.labelled_pool)))
    if kind == "downstream_rest" and not len(parts[0]):
        raise ValueError("the oracle prior is learned from the downstream training images "
                         "outside the labelled pool, and there are none: lower "
                         "data.labelled_pool")
    task = parts[0] if len(parts) == 1 else TensorTask(
        torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
        parts[0].num_classes)  # SimCLR ignores the labels of the mixed set
    n = profile.priors.learning.source_train_size
    if 0 < n < len(task):
        gen = torch.Generator().manual_seed(0)
        task = task.subset(torch.randperm(len(task), generator=gen)[:n])
    return task


def source_text(profile: Profile, kind: str) -> str:
    """What `kind` of source images is, in words, for the report."""
    folder = profile.priors.learning.source_root
    if profile.data.dataset == "imagefolder":
        source = f"the source folder {folder}'s images"
        rest = "train/"
    else:
        source, rest = "the source classes' training images (classes 0-4)", "the downstream classes"
    return {
        "source_classes": source,
        "outside_pool": f"{source} and {rest}'s images outside the labelled pool, without labels",
        "downstream_rest": f"{rest}'s training images outside the labelled pool, with their "
                           "labels (the positive control's oracle)",
    }[kind]
