"""Profiles: YAML files in `params/`, validated completely before anything trains.

A profile is checked against `SCHEMA`: every key must be known (an unknown key is answered with
the key it most likely means, when one fits), every value must have the right type and lie in its
allowed range, and defaults fill what the file leaves out. Ranges come from one place: a value
that becomes a training setting or a prior parameter has the range of the field it becomes
(`settings`); every number has an upper bound, and every float must be usable in float32. The
result is a plain nested dict, so it can be hashed, stored in result files and passed to
papermill notebooks unchanged. Messages show values shortened (`shown`), never unbounded.

`loading` reads the file, `validation` checks it against `schema` (built from `fields`), `checks`
checks keys against each other, `protocol` derives seeds, steps and sizes from a profile.
"""

from .checks import SOURCE_KEYS, learning_settings, training_sizes, validation_from_pool
from .fields import Field, ProfileError, shown
from .loading import PARAMS_DIR, UniqueKeyLoader, load_profile, profile_path
from .protocol import evaluation_seeds, fixed_protocol, size_index, steps_at, tuning_seeds
from .schema import DATASETS, MAX_PACK, SCHEMA
from .validation import FORCE_WORKERS, WORKERS_ENV, usable_cores, validate_profile

__all__ = [
    "DATASETS", "FORCE_WORKERS", "MAX_PACK", "PARAMS_DIR", "SCHEMA", "SOURCE_KEYS", "WORKERS_ENV",
    "Field", "ProfileError", "UniqueKeyLoader", "evaluation_seeds", "fixed_protocol",
    "learning_settings", "load_profile", "profile_path", "shown", "size_index", "steps_at",
    "training_sizes", "tuning_seeds", "usable_cores", "validate_profile", "validation_from_pool",
]
