"""The bounds of the profile's own numbers and the rules across its list keys; the keys and their
specs are the typed tree in `profile` (`profile.SCHEMA`)."""

from __future__ import annotations

from ..vocabulary import (
    ARMS,
    COVARIANCE_ARMS,
    PRIOR_NAMES,
    SGLD_LEARNED,
)

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
