"""The reference experiment's runs (`reference`): the head on the pretrained backbone's fixed
features, sampled exactly or trained by SGD or the SGHMC recipe; one result record per run, in
the format of the engine's runs (metrics of the model average, predictions, diagnostics)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import __version__
from ..analysis.metrics import classification_metrics, reliability_bins
from ..config.profile import Profile
from ..data.subsets import few_shot_indices
from ..posterior.reference import head_task, run_arm
from ..settings import TrainSettings
from ..training.models import build_model
from .datasets import DataKey, data_source, downstream_data
from .planning import digest
from .priors import load_prior_and_backbone, prior_location
from .resources import resolve_device


def execute_reference(runs: list[dict], profile: Profile, root: Path | None = None) -> list[dict]:
    """Every run of a pack of the reference experiment, one after another (each is small);
    the backbone of a prior draw is built once."""
    device = resolve_device(profile.device)
    pool, val, test = downstream_data(DataKey.of(profile), device)
    labels = pool.labels.cpu()
    backbones: dict[int, torch.nn.Module] = {}
    source = data_source(DataKey.of(profile))
    out = []
    for run in runs:
        cfg = run["config"]
        start = time.perf_counter()
        draw = cfg["prior"]["draw"]
        if draw not in backbones:
            state = load_prior_and_backbone(
                prior_location(profile, cfg["prior"]["source"], root, draw))[1]
            model = build_model(cfg["model"], pool.num_classes)
            model.backbone.load_state_dict(state)
            backbones[draw] = model.backbone.to(device).eval()
        indices = few_shot_indices(labels, cfg["n_train"], cfg["data"]["subset_protocol"],
                                   cfg["seed"])
        task = head_task(backbones[draw], pool, val, test, indices)
        test_probs, val_probs, diagnostics = run_arm(task, cfg, TrainSettings(**cfg["train"]))
        out.append(_record(run, task, test_probs, val_probs, diagnostics, indices, device,
                           source, time.perf_counter() - start))
    return out


def _record(run: dict, task, test_probs: torch.Tensor, val_probs: torch.Tensor,
            diagnostics: dict, indices: torch.Tensor, device, source: dict,
            wall: float) -> dict:
    """A result record: the averaged prediction is both the headline (`bma`) and, for the
    samplers, the final block (a reference posterior has no single final iterate); SGD's
    final iterate alone."""
    cfg = run["config"]
    test_m = classification_metrics(test_probs.float(), task.test_y)
    val_m = classification_metrics(val_probs.float(), task.val_y)
    averaged = cfg["method"] != "sgd"
    predictions = {split: {"log_probs": p.clamp_min(1e-30).log().to(torch.float16).numpy(),
                           "labels": y.to(torch.int16).numpy()}
                   for split, p, y in (("test", test_probs, task.test_y),
                                       ("val", val_probs, task.val_y))}
    bins = reliability_bins(test_probs.float(), task.test_y)
    samples = (diagnostics.get("chains", 0) * min(diagnostics.get("draws_per_chain", 0), 200)
               if cfg["method"] == "hmc" else int(averaged))
    return {
        "id": run["id"], "config": cfg, "status": "ok", "seed": cfg["seed"],
        "metrics": {"final": test_m, "bma": test_m if averaged else None},
        "val_metrics": {"final": val_m, "bma": val_m if averaged else None},
        "n_samples": samples, "steps_done": cfg["train"]["steps"], "final_loss": None,
        "diagnostics": {"reference": diagnostics} if diagnostics else {},
        "reliability": {"final": bins, "bma": bins if averaged else None},
        "wall_time_s": wall, "pack_size": 1, "train_indices_digest": digest(indices.tolist()),
        "version": __version__, "torch_version": torch.__version__, "device": str(device),
        "data_source": source, "_predictions": predictions,
    }
