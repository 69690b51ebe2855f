"""The training loop of one pack: steps on the schedule, divergence checks, samples collected,
predictions scored, outcomes returned."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import torch

from ..data.device import DeviceTask
from .models import Classifier
from .pack import CHECK_EVERY, Pack
from .packing import extract_run
from .spec import RunOutcome, RunSpec, _check_pack


def train_pack(
    model: Classifier,
    pool: DeviceTask,
    test: DeviceTask | None,
    method: str,
    settings,
    specs: Sequence[RunSpec],
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    channels_last: bool | None = None,
    progress: bool = False,
    trained: Sequence[Classifier] | None = None,
    val: DeviceTask | None = None,
) -> list[RunOutcome]:
    """Train the runs `specs` as one pack and evaluate each; returns one outcome per run.

    `model` is the unpacked architecture; its backbone weights are every run's initial weights
    unless a spec gives `init_state`. `pool` holds the training images on `device` (each run
    uses its `train_indices`), `test` the test set (None: not scored, e.g. a tuning run), `val`
    (optional) a validation set evaluated alongside it (`RunOutcome.val_final` / `val_bma`).
    `precision="bf16"` runs forward and backward under bfloat16 autocast (weights, prior term
    and optimiser state stay float32);
    `precision="fp64"` trains everything in float64 (slower; results then agree between pack
    sizes and machines far below any reported digit, where float32 rounding can move a run);
    `channels_last`
    (default: on CUDA and CPU, where it measured faster) lays activations out channels-last.
    `trained`, if given, holds one model per run that receives the run's final weights and
    BatchNorm statistics. Subnormal floats are flushed to zero during the run (tiny prior
    variances otherwise hit slow subnormal arithmetic on CPUs).
    """
    _check_pack(method, specs, model, precision)
    device = torch.device(device)
    if channels_last is None:
        channels_last = device.type in ("cuda", "cpu")
    args = (pool, test, method, settings)
    try:
        return _train_pack(model, *args, specs, device, precision, channels_last, progress,
                           trained, val)
    except RuntimeError as exc:
        if len(specs) == 1 or "vmap" not in str(exc):
            raise
        reason = str(exc).splitlines()[0][:160]
        warnings.warn(f"{type(model.backbone).__name__} cannot be stacked ({reason}); its "
                      f"{len(specs)} runs train one per pack", stacklevel=2)
    return [outcome for r, spec in enumerate(specs) for outcome in _train_pack(
        model, *args, [spec], device, precision, channels_last, progress,
        None if trained is None else [trained[r]], val)]


def _train_pack(model, pool, test, method, settings, specs, device, precision, channels_last,
                progress, trained, val) -> list[RunOutcome]:
    """`train_pack` once its arguments are checked: one pack, no fallback."""
    start = time.perf_counter()
    torch.set_flush_denormal(True)
    try:
        pack = Pack(model, pool, test, method, settings, specs, device, precision,
                    channels_last, val)
        steps = range(settings.steps)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc=f"{method} x{len(specs)}", leave=False)
        for k in steps:
            pack.step(k)
            if pack.collect[k]:
                pack.collect_sample(k + 1)
            if pack.collect[k] or (k + 1) % CHECK_EVERY == 0:
                pack.freeze_diverged()
        outcomes = pack.outcomes(start)
        pack.sync_net()
        for r, target in enumerate(trained or []):
            extract_run(pack.net, r, target.to(device))
        return outcomes
    finally:
        torch.set_flush_denormal(False)
