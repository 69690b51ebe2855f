"""The Ray back end (`backend: ray`, `--backend ray`): each pack of a sweep is one Ray task.

The driver (`execution.run_sweep`) forms the packs, skips the done ones and writes every record
itself, atomically, exactly as with the local back end; a task only trains its pack and returns
the records, so the workers need no shared file system with the driver. What they do need:
bprior and its dependencies installed (the same versions), and the downstream data set.

- Priors: the driver loads the learned priors (and backbone weights) the packs use once and puts
  them in Ray's object store (`ray.put`); a worker fetches them once per sweep (`_worker_priors`
  keeps the latest set) and hands them to `priors.preload_priors`, so `execute_pack` never reads
  a prior file on a worker.
- Threads and resources: every pack sets torch's thread count to the local back end's,
  `threads_per_worker(workers)` of the driver (cores of the driver // `workers`), because the
  thread count changes floating-point results; on the CPU a task asks Ray for that many CPUs.
  With `device: cuda` a task asks for 1 CPU and 1/`workers` of a GPU (the profile's `workers`
  packs share each GPU; the default 1 gives each pack a whole GPU, as locally).
- Failures: a task whose worker process or node dies is retried (`MAX_RETRIES`); an exception
  raised by the pack itself (e.g. out of memory) is not retried and reaches the driver as it is.
- Without an address a local Ray instance is started with every core of this machine; with one
  (`auto`, `HOST:PORT` or `ray://HOST:PORT`) the driver joins that cluster, and an address that
  cannot be reached fails before anything is written.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import usable_cores
from ..config.profile import Profile
from .errors import StudyError
from .paths import default_outputs

INSTALL_HINT = "pip install -e '.[ray]'"
MAX_RETRIES = 3
CONNECT_TIMEOUT_S = 5.0
_RAY_INIT = {"logging_level": logging.ERROR, "log_to_driver": False}


def import_ray():
    """The `ray` module, or a StudyError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise StudyError(
            f"the Ray back end needs the ray package, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    """`HOST:PORT` or `ray://HOST:PORT` -> (host, port); `auto` -> the address Ray finds
    (`RAY_ADDRESS`, else the cluster last started on this machine with `ray start`)."""
    if address == "auto":
        from ray._private import services

        try:
            address = services.canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ValueError) as exc:
            raise StudyError(f"cannot find a Ray cluster for --address auto: {exc}") from None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise StudyError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


# HTTP/2's client connection preface and an empty SETTINGS frame: a gRPC server (Ray's GCS and
# Ray Client both are) answers with a SETTINGS frame (frame type 0x4 in byte 3 of its header)
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def check_address(address: str) -> None:
    """Fail within seconds with a StudyError naming `address` unless a gRPC server answers
    there, as Ray's does (Ray itself would retry for minutes against nothing, and hang against a
    server that is not Ray's)."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as sock:
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.sendall(_HTTP2_PREFACE)
            reply = _read_at_most(sock, 9)
    except TimeoutError:
        raise StudyError(f"{address} accepts connections but does not answer like a Ray cluster "
                         f"within {CONNECT_TIMEOUT_S:g} s; check the address (`ray start "
                         "--head` prints it)") from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise StudyError(f"cannot reach the Ray cluster at {address}: {reason}") from None
    if len(reply) < 9 or reply[3] != 0x04:
        raise StudyError(f"{address} answers, but not as a Ray cluster does (no gRPC server "
                         f"there; it replied {reply[:9]!r}); check the address and port (`ray "
                         "start --head` prints them)")


def _read_at_most(sock: socket.socket, n: int) -> bytes:
    """Up to `n` bytes, fewer if the peer closes the connection first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def connect_ray(address: str | None = None) -> bool:
    """Check that Ray is installed and join the cluster at `address` (or start a local
    instance). Returns whether this call connected (the connection then lasts until
    `ray.shutdown()` or the end of the process). Already connected (e.g. by an earlier call), it
    only checks the address."""
    ray = import_ray()
    if address:
        check_address(address)
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, **_RAY_INIT)
        else:
            ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False,
                     **_RAY_INIT)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if address and address != "auto" and not os.environ.get("RAY_AUTH_MODE"):
            # Ray enables token authentication on the clusters it starts, but a driver given an
            # explicit address sends the token only when told to
            first += ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token and "
                      "give this machine its token (`ray get-auth-token` on the head node)")
        raise StudyError(f"cannot connect to {where}: {first}") from None
    return True


def _resources(ray, profile: Profile, threads: int) -> dict:
    """What one pack's task asks Ray for; refused here if no node of the cluster has it."""
    from .resources import resolve_device

    if resolve_device(profile.device) == "cuda":
        options = {"num_cpus": 1, "num_gpus": 1 / profile.workers}
    else:
        options = {"num_cpus": threads, "num_gpus": 0}
    need = {"CPU": options["num_cpus"], "GPU": options["num_gpus"]}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(all(res.get(k, 0) >= v for k, v in need.items()) for res in nodes):
        largest = max((res.get("CPU", 0) for res in nodes), default=0)
        raise StudyError(
            f"no node of the Ray cluster has {need['CPU']:g} CPUs"
            + (f" and {need['GPU']:g} GPU" if need["GPU"] else "")
            + f" for a pack (largest node: {largest:g} CPUs); each pack uses this machine's "
            "cores // `workers` threads, as the local back end does: raise the profile's `workers`"
        )
    return options


def _driver_priors(packs: Sequence[list[dict]], profile: Profile, root: Path) -> dict:
    """The (prior, backbone weights) pairs the packs read, by location."""
    from .priors import load_prior_and_backbone, prior_location

    draws = sorted({(r["config"]["prior"]["source"], r["config"]["prior"]["draw"])
                    for pack in packs for r in pack})
    places = [prior_location(profile, name, root, draw) for name, draw in draws]
    return {where: load_prior_and_backbone(where) for where in places}


_worker_cache: dict[str, dict] = {}


def _worker_priors(ref) -> dict:
    """The priors behind `ref`, fetched once per worker process and sweep (the latest set)."""
    key = ref.hex()
    if key not in _worker_cache:
        import ray

        _worker_cache.clear()
        _worker_cache[key] = ray.get(ref)
    return _worker_cache[key]


def _pack_task(members: list[dict], profile: Profile, root: Path, priors: list, threads: int,
               execute: Callable) -> list[dict]:
    """Runs on a Ray worker: one pack with the driver's priors and thread count."""
    import torch

    from .priors import preload_priors

    torch.set_num_threads(threads)
    preload_priors(_worker_priors(priors[0]))
    try:
        return execute(members, profile, root)
    finally:
        preload_priors({})


def run_packs(
    packs: Sequence[list[dict]], profile: Profile, root: Path | None, execute: Callable,
    threads: int, store: Callable[[Sequence[dict], Sequence[dict]], None],
    address: str | None = None,
) -> None:
    """Train `packs` as Ray tasks and `store(records, pack)` each pack's records on the driver
    as it completes.

    Uses the current Ray connection, or connects (`connect_ray`) for the duration of the call."""
    if not packs:
        return
    ray = import_ray()
    root = Path(root) if root is not None else default_outputs()  # the driver's, for the keys
    started = connect_ray(address)
    pending: list = []
    try:
        options = _resources(ray, profile, threads)
        priors = ray.put(_driver_priors(packs, profile, root))
        task = ray.remote(_pack_task).options(**options, max_retries=MAX_RETRIES,
                                              retry_exceptions=False)
        members_of = {task.remote(members, profile, root, [priors], threads, execute): members
                      for members in packs}
        pending = list(members_of)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            store(_result(ray, ready[0]), members_of[ready[0]])
    finally:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort; the task may have just finished
                pass
        if started:
            ray.shutdown()


def _result(ray, ref) -> list[dict]:
    """A task's records; its own exception re-raised as it is, Ray's failures as StudyError."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from exc
        raise
    except ray.exceptions.RayError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StudyError(f"a pack failed on Ray after {MAX_RETRIES} retries: {first}") from exc
