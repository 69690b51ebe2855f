"""Where packs train: one interface (`PackRunner`) for the back ends, chosen by name.

A back end trains the packs it is given and hands each pack's records to `store` on the
driver as the pack completes; the driver checks and writes them (`execution.run_sweep`). Every
pack runs with `threads` torch threads whatever the back end, because the thread count changes
floating-point results.

- `local`: the packs one after another in this process, or in `workers` spawned processes;
- `ray`: one Ray task per pack (`ray_backend`), on a cluster or a local Ray instance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Protocol

from ..config.profile import Profile
from .errors import StudyError
from .resources import set_worker_threads, torch_threads, worker_initargs

BACKENDS = ("local", "ray")
Execute = Callable[[list[dict], dict, Path | None], list[dict]]
Store = Callable[[Sequence[dict], Sequence[dict]], None]


def connect(backend: str, address: str | None = None) -> bool:
    """Make the back end ready before anything is written: for `ray`, check that Ray is installed
    and join the cluster at `address` (or start a local instance; `ray_backend.connect_ray`).
    Returns whether this call connected."""
    _check_backend(backend)
    if backend != "ray":
        if address:
            raise StudyError("--address is for the Ray back end; add --backend ray "
                             "(or set backend: ray in the profile)")
        return False
    from .ray_backend import connect_ray

    return connect_ray(address)


class PackRunner(Protocol):
    """Train `packs` with `execute` and `store(records, pack)` each pack's records."""

    def __call__(self, packs: Sequence[list[dict]], profile: Profile, root: Path | None,
                 execute: Execute, threads: int, store: Store) -> None: ...


def local_runner(workers: int) -> PackRunner:
    """The local back end: the packs in this process (one worker, or a single pack), else in a
    pool of `workers` spawned processes, each with `threads` torch threads."""
    def run(packs: Sequence[list[dict]], profile: Profile, root: Path | None, execute: Execute,
            threads: int, store: Store) -> None:
        if workers <= 1 or len(packs) <= 1:
            with torch_threads(threads):
                for members in packs:
                    store(execute(members, profile, root), members)
            return
        import multiprocessing as mp

        with ProcessPoolExecutor(min(workers, len(packs)), mp_context=mp.get_context("spawn"),
                                 initializer=set_worker_threads,
                                 initargs=worker_initargs(threads)) as pool:
            futures = {pool.submit(execute, members, profile, root): members
                       for members in packs}
            for future in as_completed(futures):
                store(future.result(), futures[future])

    return run


def ray_runner(address: str | None) -> PackRunner:
    """The Ray back end: one task per pack on the cluster at `address` (None: a local Ray)."""
    def run(packs: Sequence[list[dict]], profile: Profile, root: Path | None, execute: Execute,
            threads: int, store: Store) -> None:
        from .ray_backend import run_packs

        run_packs(packs, profile, root, execute, threads, store, address)

    return run


def pack_runner(backend: str, workers: int, address: str | None = None) -> PackRunner:
    """The back end called `backend` (`local` with `workers` processes, or `ray` at
    `address`)."""
    _check_backend(backend)
    return ray_runner(address) if backend == "ray" else local_runner(workers)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise StudyError(f"unknown back end {backend!r}; expected one of {', '.join(BACKENDS)}")
