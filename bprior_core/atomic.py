"""Atomic file writes: a temporary file in the target's folder, then a rename over the target.

A crash or interrupt at any moment leaves either the old file or the new one, never half a file,
so an interrupted study can trust every file it finds.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], binary: bool = False) -> Path:
    """Call `write(file)` on a temporary file, flush it to disk and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # e.g. [Errno 28] from a write: say which file (once)
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# `atomic_write`'s temporary files: `.<name>.<8 characters of mkstemp>.tmp`
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files that writes killed mid-way (kill -9) left in `folder`: only
    files of `atomic_write`'s own pattern, only in that folder. Call it only while holding the
    profile's lock, when no other process of the profile can be writing. Returns how many."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        if entry.is_file() and _TEMPORARY.fullmatch(entry.name):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    return atomic_write(path, lambda f: f.write(text))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f), binary=True)
