"""One process per profile: a lock file in `outputs/<name>/` held while a sweep executes or
priors are learned.

Two `bprior run` (or `report`) processes on the same profile and outputs folder would otherwise
both see the same runs (or priors) missing and train them twice. The lock is an advisory
`fcntl.flock` on `outputs/<name>/.bprior.lock`, taken without waiting: the second process stops
at once with a StudyError naming the profile and the lock file. The operating system releases
the lock when the holder exits, however it exits (crash, kill -9), so a stale lock file never
blocks a later run.
Where `fcntl` does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config.profile import Profile
from .errors import StudyError
from .paths import output_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None

LOCK_NAME = ".bprior.lock"


def lock_path(profile: Profile, root: Path | None = None) -> Path:
    """The profile's lock file."""
    return output_dir(profile, root) / LOCK_NAME


@contextmanager
def profile_lock(profile: Profile, root: Path | None = None) -> Iterator[Path]:
    """Hold the profile's lock for the `with` block, or raise StudyError at once if another
    process holds it."""
    path = lock_path(profile, root)
    if fcntl is None:  # pragma: no cover
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise StudyError(
                f"another bprior process is running profile {profile.name!r} (lock file "
                f"{path}, held by process {holder}); wait for it to finish, or stop it, then run "
                "again"
            ) from None
        try:
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield path
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def holds_profile_lock(func):
    """Decorator: run `func(profile, ..., root=...)` under `profile_lock(profile, root)`."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def locked(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with profile_lock(bound.arguments["profile"], bound.arguments.get("root")):
            return func(*args, **kwargs)

    return locked
