"""Profiles: YAML files in `params/`, validated completely before anything trains.

A profile is checked against `SCHEMA`: every key must be known (an unknown key is answered with
the key it most likely means, when one fits), every value must have the right type and lie in its
allowed range, and defaults fill what the file leaves out. Ranges come from one place: a value
that becomes a training setting or a prior parameter has the range of the field it becomes
(`settings`); every number has an upper bound, and every float must be usable in float32.
Messages show values shortened (`shown`), never unbounded.

The result is a `Profile`: a frozen tree of dataclasses (`profile`), read by attribute
(`profile.experiments.inference.sizes`); that tree is the schema (`SCHEMA` is derived from its
fields). `Profile.to_dict()` is the validated mapping that run ids digest, and
`Profile.replace("priors.draws", 2)` makes a variant.

`loading` reads the file, `validation` checks it key by key against `SCHEMA` (the values' specs
are `fields`, the bounds of the profile's own numbers `schema`), then `checks` checks keys
against each other on the typed profile; `protocol` derives seeds, steps and sizes from it.
"""

from .checks import SOURCE_KEYS, learning_settings, training_sizes, validation_from_pool
from .fields import Field, ProfileError, shown
from .loading import PARAMS_DIR, UniqueKeyLoader, load_profile, profile_path
from .profile import SCHEMA, Profile, as_dict
from .protocol import evaluation_seeds, fixed_protocol, size_index, steps_at, tuning_seeds
from .schema import DATASETS, MAX_PACK
from .validation import FORCE_WORKERS, WORKERS_ENV, usable_cores, validate_profile

__all__ = [
    "DATASETS", "FORCE_WORKERS", "MAX_PACK", "PARAMS_DIR", "SCHEMA", "SOURCE_KEYS", "WORKERS_ENV",
    "Field", "Profile", "ProfileError", "UniqueKeyLoader", "as_dict", "evaluation_seeds",
    "fixed_protocol",
    "learning_settings", "load_profile", "profile_path", "shown", "size_index", "steps_at",
    "training_sizes", "tuning_seeds", "usable_cores", "validate_profile", "validation_from_pool",
]
