"""Content digests of files, computed once per file version.

A digest is the SHA-256 of a file's bytes, cached in this process by (resolved path, size,
modification time): a file replaced under the same name gets a new digest, an unchanged file is
read once. Used for the data files and prior files a run depends on, so that a run's record
(and identity) says exactly which bytes it was trained from.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

_CHUNK = 1 << 20


@lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's content, cached by path, size and modification time."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _digest(str(resolved), stat.st_size, stat.st_mtime_ns)


def files_digest(paths: Iterable[str | os.PathLike]) -> str:
    """One short digest of several files' contents, keyed by their names (order-free)."""
    parts = sorted((Path(p).name, file_digest(p)) for p in paths)
    joined = "\n".join(f"{name} {digest}" for name, digest in parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def authors_files_digest(prefix: str | os.PathLike | None) -> str | None:
    """One digest of the authors' four prior files `<prefix>_{mean,variance,covmat,model}.pt`;
    None when any of them is missing (nothing can be trained from them then)."""
    if not prefix:
        return None
    from .priors.files import AUTHORS_SUFFIXES

    paths = [Path(f"{os.fspath(prefix)}_{s}.pt") for s in AUTHORS_SUFFIXES]
    if not all(p.is_file() for p in paths):
        return None
    return files_digest(paths)
