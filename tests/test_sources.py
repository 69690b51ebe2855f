"""Issue 15: the labelled pool and the images each prior is learned from. No image of a training
subset, the validation set or the test set reaches prior learning."""

from __future__ import annotations

import copy

import pytest
import torch

from bprior_core.data import fashion_mnist
from bprior_core.data import pool as labelled_pool
from bprior_core.data.subsets import few_shot_indices
from bprior_core.study import sources
from bprior_core.study.datasets import DataKey, downstream_data


def images_of(images: torch.Tensor) -> set[bytes]:
    """The images as a set of their bytes (order-free, for comparing image sets)."""
    return {image.numpy().tobytes() for image in images}


@pytest.fixture(scope="module")
def downstream_labels() -> torch.Tensor:
    return fashion_mnist.fashion_mnist_task("downstream", "train").labels


def test_the_pool_and_the_rest_split_the_downstream_images(downstream_labels) -> None:
    pool = labelled_pool.labelled_pool_indices(downstream_labels, 2500)
    rest = labelled_pool.outside_pool_indices(downstream_labels, 2500)
    assert len(pool) == 2500 and len(rest) == len(downstream_labels) - 2500
    assert not set(pool.tolist()) & set(rest.tolist())
    assert torch.bincount(downstream_labels[pool]).tolist() == [500] * 5  # class-balanced
    assert torch.equal(pool, labelled_pool.labelled_pool_indices(downstream_labels, 2500))  # fixed
    assert len(labelled_pool.labelled_pool_indices(downstream_labels, 0)) == len(downstream_labels)


def test_no_subset_validation_or_test_image_reaches_prior_learning(smoke, monkeypatch) -> None:
    """The study's downstream pool and validation set are the labelled pool's images; every
    training subset comes from the pool; the SimCLR and oracle priors' downstream images are
    exactly the rest (compared image by image); prior learning reads training images only."""
    profile = copy.deepcopy(smoke)
    # every image, to compare them all
    profile = profile.replace("priors.learning.source_train_size", 0)
    train = fashion_mnist.fashion_mnist_task("downstream", "train")
    size = profile.data.labelled_pool
    pool_images = train.images[labelled_pool.labelled_pool_indices(train.labels, size)]
    rest_images = train.images[labelled_pool.outside_pool_indices(train.labels, size)]
    study_pool, val, _ = downstream_data(DataKey.of(profile), "cpu")
    used = torch.cat([study_pool.images, val.images])
    assert len(used) == size and images_of(used) == images_of(pool_images)
    assert not images_of(used) & images_of(rest_images)
    for n in (5, 10):  # every subset is drawn from the pool (indices into it)
        for seed in range(3):
            idx = few_shot_indices(study_pool.labels, n, "balanced", seed)
            assert int(idx.max()) < len(study_pool)
    splits = []
    real = fashion_mnist.load_fashion_mnist

    def recording(split, *args, **kwargs):
        splits.append(split)
        return real(split, *args, **kwargs)

    monkeypatch.setattr(fashion_mnist, "load_fashion_mnist", recording)
    for name in ("ssl", "oracle"):
        task = sources.source_task(profile, name)
        downstream_part = task.images[-len(rest_images):]
        assert torch.equal(downstream_part, rest_images), name
    ssl = sources.source_task(profile, "ssl")
    assert len(ssl) == 30000 + len(rest_images)  # the source classes and the rest
    assert set(splits) == {"train"}  # never the test split
    supervised = sources.source_task(profile, "supervised")
    assert len(supervised) == 30000 and int(supervised.labels.max()) == 4


def test_source_kinds_follow_the_profile(smoke) -> None:
    profile = copy.deepcopy(smoke)
    assert sources.source_kind(profile, "ssl") == "outside_pool"
    assert sources.source_kind(profile, "oracle") == "downstream_rest"
    assert sources.source_kind(profile, "supervised") == "source_classes"
    profile = profile.replace("priors.ssl_source", "source_classes")
    assert sources.source_kind(profile, "ssl") == "source_classes"
