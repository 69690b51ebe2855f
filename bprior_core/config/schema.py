"""The profile's schema: every key with its field, and the bounds of the profile's own numbers."""

from __future__ import annotations

from typing import Any

from ..settings import MAX_STEPS, PRECISIONS, PriorLearningSettings, PriorParameters, TrainSettings
from ..vocabulary import (
    ARMS,
    COVARIANCE_ARMS,
    PRIOR_NAMES,
    SGD_ISOTROPIC,
    SGD_LEARNED,
    SGD_TASK,
    SGD_ZERO,
    SGLD_LEARNED,
    SSL,
    SUPERVISED,
)
from .fields import Field, _choice, _int, _like, _list_like, _num, _section_from

# Bounds of the profile's own numbers (the settings' bounds live with them, in `settings`).
MAX_SEEDS = 100  # seeds, prior draws, chains: each multiplies the number of runs
# evaluation seeds per size: a power target can ask for ~100 at n = 10 (README, "Power")
MAX_EVAL_SEEDS = 1000
MAX_SEED_ID = 1_000_000  # the first evaluation seed: any offset that keeps seeds distinct
MIN_TUNING_SEEDS = 3  # a setting fixed from fewer seeds is the draw of those seeds
MAX_WORKERS = 64  # worker processes (about 1 GB of memory each); also <= this machine's cores
MAX_PACK = 4096  # runs trained together as one network
MAX_IMAGES = 10_000_000  # training, validation and test sizes: more than any data set read here
PROTOCOLS = ("fixed", "per_seed")
# where each learned prior's images come from (study/sources.py); `oracle` only for the control
SSL_SOURCES = ("source_classes", "outside_pool")
MIN_GRID = 5  # values per tuned arm: enough to reach both the strong and the weak side
MIN_CHAINS = 4  # chains behind every convergence-gated claim (rank-normalised R-hat, ESS)
DATASETS = ("fashion_mnist", "flowers102", "imagefolder")
CLASS_COUNTS = {"fashion_mnist": 5, "flowers102": 102}  # imagefolder: its class folders
SCHEMA: dict[str, Any] = {
    "name": Field(str, None),
    "description": Field(str, ""),
    "device": _choice("auto", "cpu", "cuda", "mps"),
    "seeds": _int(1, MAX_SEEDS, 5),
    "workers": _int(1, MAX_WORKERS, 1),
    # where packs run: processes of this machine, or Ray tasks (study/ray_backend.py)
    "backend": _choice("local", "ray"),
    "pack": Field(int, 1, lo=1, hi=MAX_PACK, auto=True),
    "precision": _choice(*PRECISIONS),
    # small_resnet, resnet50, or torchvision:<name> (any torchvision classification model)
    "model": Field(str, "small_resnet"),
    # a local state dict for a torchvision model (its classifier's keys ignored): where prior
    # learning starts (nothing is downloaded)
    "model_weights": Field(str, None, nullable=True),
    "data": {
        "dataset": _choice(*DATASETS),
        # fashion_mnist / flowers102: where the files are; imagefolder: the folder holding
        # train/<class>/*, test/<class>/* and optionally val/<class>/*
        "root": Field(str, None, nullable=True),
        # imagefolder: side of the square the images are resized and centre-cropped to
        "image_size": _int(8, 1024, 32),
        # imagefolder: training augmentations on the device (any of crop, flip, rotation);
        # null: none
        "augment": Field(list, None, items=str, nullable=True),
        # imagefolder: per-channel normalisation; null: the training images' own mean and std
        "mean": Field(list, None, items=float, nullable=True, lo=-10.0, hi=10.0),
        "std": Field(list, None, items=float, nullable=True, lo=1e-6, hi=10.0),
        "download": Field(bool, False),
        "subset_protocol": _choice("balanced", "reproduction"),
        "test_size": _int(0, MAX_IMAGES, 0),
        # class-balanced validation set drawn once from the labelled pool and kept out of every
        # training subset (flowers102: a class-balanced subset of the official validation split);
        # 0 turns validation (and so tuning) off
        "val_size": _int(0, MAX_IMAGES, 0),
        # the downstream classes' training images that carry labels: a class-balanced pool
        # drawn once, from which the validation set and every training subset come; the other
        # downstream training images are used by prior learning only (SimCLR without labels,
        # the control's oracle prior with them). 0: every downstream training image is in it
        "labelled_pool": _int(0, MAX_IMAGES, 0),
    },
    "priors": {
        "source": _choice("learn", "files"),
        # independently learned priors per source (prior-learning seeds 0..draws-1); downstream
        # seed s uses draw s mod draws, so paired differences over seeds carry both variations
        "draws": _int(1, MAX_SEEDS, 1),
        # draws of one source trained together as one packed network (each draw's prior up to
        # rounding); on 2 CPU cores at batch 128 packs measured no faster than one by one
        "pack": _int(1, MAX_SEEDS, 1),
        "files": {"ssl": Field(str, None, nullable=True),
                  "supervised": Field(str, None, nullable=True)},
        # the SimCLR prior's images: the source classes only, or every training image of the
        # dataset outside the labelled pool (source classes and the unlabelled downstream rest,
        # as ImageNet covers CIFAR-10's classes for the paper's SimCLR prior)
        "ssl_source": _choice(*SSL_SOURCES),
        # authors' files: clamp non-positive variances up to this floor (null: refuse them)
        "variance_floor": _num(1e-30, 1.0, None, nullable=True),
        "rescaling_rule": _choice("same", "authors"),
        "eps": _like(PriorParameters, "eps", 0.0),
        "learning": {
            "source_train_size": _int(0, MAX_IMAGES, 0),
            # imagefolder: the priors' source images, <source_root>/<class>/* (the supervised
            # prior uses the labels, SimCLR ignores them)
            "source_root": Field(str, None, nullable=True),
            **_section_from(PriorLearningSettings),
        },
    },
    "train": _section_from(TrainSettings),
    "claims": {
        # the smallest effect that matters, per metric: an interval that contains 0 gives
        # "not supported" below it and "inconclusive" when it reaches it
        "margins": {"accuracy": _num(1e-9, 1.0, 0.01), "nll": _num(1e-9, 100.0, 0.02),
                    "ece": _num(1e-9, 1.0, 0.01), "brier": _num(1e-9, 2.0, 0.01)},
    },
    "experiments": {
        "rank": {
            "enabled": Field(bool, True),
            "prior": _choice(*PRIOR_NAMES),
            "method": _choice("sghmc", "sgld", "sgd_prior"),
            "scale": _like(PriorParameters, "scale", 1e3),
            # every rank at each of these scales (null: [scale]); C1 is judged at the scale
            # where the best rank's validation NLL is lowest, where the prior binds
            "scales": _list_like(PriorParameters, "scale", None, nullable=True),
            "ranks": _list_like(PriorLearningSettings, "max_rank", [0, 1, 2, 5, 10]),
            "seeds": _int(1, MAX_SEEDS, None, nullable=True),  # null: the profile's seeds
            # also run every rank at the full-rank prior's total variance (trace)
            "fixed_trace": Field(bool, True),
            "n_train": _int(0, MAX_IMAGES, 50),
        },
        "scale": {
            "enabled": Field(bool, True),
            "priors": Field(list, [SUPERVISED, SSL], items=str),
            "method": _choice("sghmc", "sgld", "sgd_prior"),
            "scales": _list_like(PriorParameters, "scale", [10.0**e for e in range(10)]),
            # conventions swept: every rule x eps pair (the profile's priors.rescaling_rule and
            # priors.eps give the headline verdict and must be among them)
            "rules": Field(list, None, items=str, nullable=True),  # null: [priors.rescaling_rule]
            "eps": _list_like(PriorParameters, "eps", None, nullable=True),  # null: [priors.eps]
            # a run trained from scratch (no pretraining, SGD, no prior) per seed: "no prior"
            "scratch": Field(bool, True),
            "rank": _like(PriorLearningSettings, "max_rank", 10),
            "n_train": _int(0, MAX_IMAGES, 50),
            "seeds": _int(1, MAX_SEEDS, None, nullable=True),
        },
        "inference": {
            "enabled": Field(bool, True),
            "prior": _choice(*PRIOR_NAMES),
            "bayes_method": _choice("sghmc", "sgld"),
            # `ensemble+learned`: the sampler's schedule and samples at temperature 0 (a cyclical
            # snapshot ensemble), the control that separates "Bayesian" from "ensembling"
            "arms": Field(list, list(ARMS[:3]) + list(ARMS[4:]), items=str),
            "scale": _like(PriorParameters, "scale", 1e3),
            "rank": _like(PriorLearningSettings, "max_rank", 10),
            "sizes": Field(list, [5, 10, 50, 250], items=int, lo=0, hi=MAX_IMAGES),
            # `fixed` (the headline protocol): every arm's setting per size is fixed once, by
            # the validation NLL pooled over the tuning seeds, then evaluated on evaluation seeds
            # that never entered selection; `per_seed`: every seed tunes its own setting
            # (Harvey et al.), that seed's final run is evaluated
            "protocol": _choice(*PROTOCOLS),
            # training steps per size (a list aligned with `sizes`; null: train.steps): steps
            # grow with n so that every arm is trained to convergence at every size
            "steps": Field(list, None, items=int, nullable=True, lo=1, hi=MAX_STEPS),
            # protocol `fixed`: the evaluation seeds, first_seed, first_seed + 1, ..., never
            # tuning seeds (0 .. tuning.seeds - 1); per size (lists aligned with `sizes`)
            "evaluation": {
                "first_seed": _int(0, MAX_SEED_ID, 1000),
                # seeds of the SGD-type arms (and of the controls at their size); null: the
                # power target's count (`target_mde`, `pilot_sd`), else the profile's seeds
                "seeds": Field(list, None, items=int, nullable=True, lo=1, hi=MAX_EVAL_SEEDS),
                # seeds of the sampler arms (each seed is `chains` runs) and of their controls
                # (T = 0 ensemble, deep ensemble, long SGD), the first of the SGD-type arms'
                # (which run on at least these); null: `seeds`
                "sampler_seeds": Field(list, None, items=int, nullable=True, lo=1,
                                       hi=MAX_EVAL_SEEDS),
                # power by design: the paired SD over seeds expected at each size (accuracy,
                # the noisiest claim's; a pilot study's) and the minimum detectable effect
                # wanted there at the claims' corrected level; seeds follow from both
                "pilot_sd": Field(list, None, items=float, nullable=True, lo=1e-6, hi=1.0),
                "target_mde": Field(list, None, items=float, nullable=True, lo=1e-4, hi=1.0),
            },
            # null: the rescaled learned prior's average variance (trace-matched); used when
            # tuning is off
            "nonlearned_variance": _like(PriorParameters, "variance", None, nullable=True),
            # every arm tuned on the validation split over a grid of its strength parameter, the
            # same number of values for every arm; selection by validation NLL per (size, seed)
            "tuning": {
                "enabled": Field(bool, False),
                # the learned prior's scale; the zero and isotropic priors' variance; sgd's
                # weight decay
                "scales": _list_like(PriorParameters, "scale", [1e1, 1e3, 1e5, 1e7, 1e9]),
                "variances": _list_like(PriorParameters, "variance",
                                        [1e-3, 0.03, 1.0, 30.0, 1e3]),
                "weight_decays": _list_like(TrainSettings, "weight_decay",
                                            [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]),
                # learning rates every arm is tuned over too (crossed with its strength grid);
                # null: train.lr only
                "lrs": _list_like(TrainSettings, "lr", None, nullable=True),
                # what scores a tuning run: the fixed validation set (`validation`), or, as
                # Harvey et al. do, a split of each training subset (`split`: fit on 4/5 of
                # every class, score on the held-out 1/5, at least one image; the chosen point
                # is then trained on all n); with a validation set too, the report compares
                # the two choices
                "selection": _choice("validation", "split"),
                # protocol `fixed`: the tuning seeds 0 .. seeds - 1 whose validation NLL, pooled,
                # fixes each arm's setting per size (at least 3)
                "seeds": _int(1, MAX_SEEDS, 3),
            },
            "seeds": _int(1, MAX_SEEDS, None, nullable=True),
            # chains of each sampler arm's final run (and of the T = 0 ensemble): their model
            # averages are pooled, and C4 / C4b are judged only where they converged (R-hat
            # and bulk ESS over the chains)
            "chains": _int(1, MAX_SEEDS, 4),
            # `deep_ensemble+learned`: the chosen `sgd+learned` run trained `chains` times (own
            # batches, head init), the members' predictions averaged like a sampler's chains:
            # the sampler's total gradient budget spent on an ensemble instead
            "deep_ensemble": Field(bool, True),
            # `sgd_long+learned`: the chosen `sgd+learned` run trained `chains` times as many
            # steps (one run, its cosine schedule stretched): the sampler's total budget in
            # one SGD run, a control of C4
            "long_sgd": Field(bool, True),
        },
        # the positive control (claim PC): an oracle prior (supervised SWAG on labelled
        # downstream-class images outside the labelled pool) against the tuned zero-mean and
        # isotropic priors, with the inference experiment's tuning, seeds and draws
        "control": {
            "enabled": Field(bool, False),
            "arms": Field(list, [SGD_LEARNED, SGD_ZERO, SGD_ISOTROPIC], items=str),
            # null: the smallest inference size
            "n_train": _int(0, MAX_IMAGES, None, nullable=True),
        },
        # the covariance control (claim PC2): a prior whose low-rank covariance spans the
        # directions from the SimCLR weights to those weights fine-tuned on the downstream rest
        # WITH labels (task information no training, validation or test image gives), at the
        # SimCLR mean and with the isotropic prior's trace, against that isotropic prior; both
        # tuned over the same variances, at the control's size, with the inference protocol
        "covariance": {
            "enabled": Field(bool, False),
            "arms": Field(list, [SGD_TASK, SGD_ISOTROPIC], items=str),
            # the share of the total variance along the task directions (the rest isotropic)
            "share": _num(0.01, 0.99, 0.5),
        },
        # the per-seed protocol beside the headline one (Harvey et al.): each seed tunes its
        # own setting (by `selection`) and its final run is evaluated; seeds from first_seed
        "per_seed": {
            "enabled": Field(bool, False),
            "arms": Field(list, [SGD_LEARNED, SGD_ZERO], items=str),
            "sizes": Field(list, [10], items=int, lo=1, hi=MAX_IMAGES),
            "seeds": _int(1, MAX_SEEDS, 20),
            "first_seed": _int(0, MAX_SEED_ID, 2000),
            "selection": _choice("split", "validation"),
        },
        # a reference posterior (claim C4p): the head on the pretrained backbone's fixed
        # features, sampled exactly by Metropolis-adjusted HMC at T = 1, against SGD and the
        # paper's SGHMC recipe on the same subspace; a temperature curve on it
        "reference": {
            "enabled": Field(bool, False),
            "sizes": Field(list, [10], items=int, lo=1, hi=MAX_IMAGES),
            # evaluation seeds from experiments.inference.evaluation.first_seed
            "seeds": _int(3, MAX_EVAL_SEEDS, 10),
            "temperatures": Field(list, [0.1, 0.3, 1.0, 3.0], items=float, lo=1e-3, hi=1e3),
            "curve_seeds": _int(1, MAX_EVAL_SEEDS, 3),  # the first seeds run every temperature
            "chains": _int(2, MAX_SEEDS, 4),
            "draws": _int(10, 100_000, 1000),
            "warmup": _int(10, 100_000, 500),
            "leapfrog": _int(1, 1000, 10),
            # the prior variance of the head's weights and biases (a proper prior)
            "head_variance": _num(1e-6, 1e6, 1.0),
        },
        "temperature": {
            "enabled": Field(bool, False),
            "prior": _choice(*PRIOR_NAMES),
            "method": _choice("sghmc", "sgld"),
            "temperatures": _list_like(TrainSettings, "temperature",
                                       [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]),
            "chains": _int(1, MAX_SEEDS, 3),  # chains per (temperature, seed), for split R-hat
            "scale": _like(PriorParameters, "scale", 1e5),
            "rank": _like(PriorLearningSettings, "max_rank", 10),
            "n_train": _int(0, MAX_IMAGES, 50),
            "seeds": _int(1, MAX_SEEDS, 1, nullable=True),
        },
    },
}


_LIST_CHOICES = {
    ("experiments", "scale", "priors"): PRIOR_NAMES,
    ("experiments", "inference", "arms"): tuple(a for a in ARMS if a != SGLD_LEARNED),
    ("experiments", "control", "arms"): tuple(a for a in ARMS if a != SGLD_LEARNED),
    ("experiments", "covariance", "arms"): COVARIANCE_ARMS,
    ("experiments", "per_seed", "arms"): tuple(a for a in ARMS if a != SGLD_LEARNED),
    ("experiments", "scale", "rules"): ("same", "authors"),
    ("data", "augment"): ("crop", "flip", "rotation"),
}


# lists of one value per training size (aligned with `experiments.inference.sizes`), which
# may repeat a value
PER_SIZE_KEYS = ("experiments.inference.steps", "experiments.inference.evaluation.seeds",
                 "experiments.inference.evaluation.sampler_seeds",
                 "experiments.inference.evaluation.pilot_sd",
                 "experiments.inference.evaluation.target_mde")


# the profile keys that name files or folders: a relative one is relative to the profile's file
PATH_KEYS = ("data.root", "model_weights", "priors.files.ssl", "priors.files.supervised",
             "priors.learning.source_root")
