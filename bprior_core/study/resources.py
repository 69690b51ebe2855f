"""Which device a study runs on, and how many runs fit in one pack there."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..config import usable_cores
from .errors import StudyError

CPU_AUTO_PACK = 4  # on 2-4 cores, larger packs stop paying (benchmarks/throughput.py)
FALLBACK_PACK = 4
MAX_PACK = 64
# bytes of training activations per image and model (fp32, measured order of magnitude)
ACTIVATION_BYTES = {"small_resnet": 3 * 2**20, "resnet50": 220 * 2**20}


def resolve_device(name: str) -> str:
    """`auto` -> cuda if available, else mps if available, else cpu. A named device that is not
    available raises StudyError."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise StudyError("device: 'cuda' was asked for but torch sees no CUDA device; use "
                         "device: auto or cpu, or install a CUDA build of torch")
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise StudyError("device: 'mps' was asked for but is not available; use auto or cpu")
    return name


def auto_pack_size(device: str, model: str, dim: int, rank: int, batch_size: int,
                   precision: str) -> int:
    """Runs per pack for `pack: auto`: on CUDA as many as fit in 80 % of the device's total
    memory (total, not free, so that the size and therefore the results are the same on every
    call); on the CPU a small fixed number."""
    if device == "cpu":
        return CPU_AUTO_PACK
    if device != "cuda":
        warnings.warn(f"pack: auto has no memory information on {device!r}; using "
                      f"{FALLBACK_PACK} runs per pack (set pack: N to choose)", stacklevel=2)
        return FALLBACK_PACK
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    # weights, gradient, optimiser state, noise, prior mean, variance and factor: fp32 each
    weights = 4 * dim * (6 + rank)
    activations = ACTIVATION_BYTES.get(model, ACTIVATION_BYTES["resnet50"]) * batch_size
    if precision == "bf16":
        activations //= 2
    return max(1, min(MAX_PACK, int(0.8 * total) // (weights + activations)))


def threads_per_worker(workers: int) -> int:
    """Threads of each worker process: the cores shared evenly between the workers. Every
    pack and every prior is computed with this many threads, whatever the back end and however
    much work is left, because the thread count changes floating-point results."""
    return max(1, usable_cores() // workers)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


PARENT_POLL_S = 0.5  # how often a worker checks that the process that started it lives


def set_worker_threads(threads: int, parent: int | None = None) -> None:
    """Process-pool initializer: fix the worker's torch thread count and, given the pid of the
    process that started it, make the worker end when that process ends (`die_with_parent`)."""
    torch.set_num_threads(threads)
    if parent is not None:
        die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """End this process (exit code 1) as soon as `parent` is no longer its parent, polled every
    PARENT_POLL_S seconds by a daemon thread. A worker of a `bprior` process killed with -9
    would otherwise live on, keep training and writing files without the profile's lock, and
    hold its memory until killed by hand; this way it follows its parent within a second."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    if os.getppid() != parent:  # the parent died before the watch began
        os._exit(1)
    threading.Thread(target=watch, name="bprior-parent-watch", daemon=True).start()


def worker_initargs(threads: int) -> tuple[int, int]:
    """`initargs` of `set_worker_threads` for a pool started by this process."""
    return threads, os.getpid()
