"""bprior_core: Bayesian transfer learning with learned Gaussian (SWAG) priors.

A tested implementation of the recipe of "Pre-Train Your Loss: Easy Bayesian Transfer Learning
with Informative Priors" (Shwartz-Ziv et al., NeurIPS 2022): learn a prior with SWAG on a source
task, rescale it, and use it in the loss of SGD / SGLD / SGHMC on a downstream task.

The public API is below (`__all__`), imported on first use so that `import bprior_core.config`
(profile checks, `bprior plan`) stays light; everything else lives in the modules named in the
README's module map.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    # the prior: mean + diagonal + low rank, its files, SWAG that learns it
    "GaussianPrior": "priors.gaussian", "rescale": "priors.gaussian",
    "load_prior": "priors.files", "save_prior": "priors.files",
    "load_authors_prior": "priors.files",
    "SWAG": "priors.swag", "learn_prior": "priors.learning", "PriorLearningSettings": "settings",
    # the samplers and their schedules
    "SGLD": "sgmcmc.sgld", "SGHMC": "sgmcmc.sghmc",
    "CyclicalSchedule": "sgmcmc.schedules", "CosineSchedule": "sgmcmc.schedules",
    # one run, and a pack of runs
    "TrainSettings": "settings", "train_and_evaluate": "training.run",
    "train_pack": "training.loop",
    # a study: its profile, running it, its report, its claims
    "load_profile": "config", "Profile": "config", "run_study": "study", "build_report": "report",
    "evaluate_claims": "claims",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    if name not in _API:
        raise AttributeError(f"module 'bprior_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
