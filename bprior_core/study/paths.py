"""Where a study keeps its files: `<outputs>/<profile name>/{priors,runs,...}`."""

from __future__ import annotations

import os
from pathlib import Path

from ..config.profile import Profile

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_outputs() -> Path:
    """`$BPRIOR_OUTPUTS`, else `./outputs`; from the checkout's notebooks/ folder (JupyterLab's
    working directory there), the checkout's `outputs/`."""
    if os.environ.get("BPRIOR_OUTPUTS"):
        return Path(os.environ["BPRIOR_OUTPUTS"])
    if Path.cwd().resolve() == REPO_ROOT / "notebooks":
        return REPO_ROOT / "outputs"
    return Path.cwd() / "outputs"


def output_dir(profile: Profile, root: Path | None = None) -> Path:
    """`<root>/<profile name>/`, root defaulting to `default_outputs()`."""
    return Path(root or default_outputs()) / profile.name


def prior_paths(profile: Profile, name: str, root: Path | None = None, draw: int = 0
                ) -> tuple[Path, Path]:
    """Where a learned prior (draw `draw`) and its backbone weights are stored."""
    folder = output_dir(profile, root) / "priors"
    stem = name if draw == 0 else f"{name}-draw{draw}"
    return folder / f"{stem}.pt", folder / f"{stem}_backbone.pt"


def result_path(profile: Profile, run: dict, root: Path | None = None) -> Path:
    """A run's result file, named by the hash of its configuration."""
    return output_dir(profile, root) / "runs" / f"{run['id']}.json"
