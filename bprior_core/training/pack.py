"""R runs trained as one network (`Pack`): the packed weights, their priors and preconditioner,
the update of every method, divergence per run, samples and predictions."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..analysis.metrics import ProbabilityAverage, classification_metrics, reliability_bins
from ..data.device import BatchStream, DeviceTask
from ..priors.packed import PackedPrior, PriorPreconditioner
from ..sgmcmc.updates import langevin_noise_std, sgd_, sghmc_, sgld_
from ..vocabulary import OPTIMIZER_METHODS, PRIORLESS_METHODS, SAMPLER_METHODS
from .diagnostics import DEFAULT_STEP_CAP, diagnostic_points, free_share, sample_disagreement
from .models import Classifier, refresh_batchnorm
from .packing import PackedClassifier, load_run, run_view
from .spec import RunOutcome, RunSpec, _per_run, make_schedule

CHECK_EVERY = 50  # steps between host reads of the divergence flags
CPU_EVAL_CHUNK = 32  # test images per forward pass on the CPU (smaller chunks measured faster)


def fused_for_inference(backbone: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of `backbone` with each BatchNorm folded into the convolution before it
    (torch.fx), about 30 % faster to evaluate and equal up to rounding; the backbone itself if it
    cannot be traced."""
    from torch.fx.experimental.optimization import fuse

    from .packing import StackedBackbone

    if isinstance(backbone, StackedBackbone):  # vmap cannot be traced
        return backbone
    try:
        return fuse(backbone)
    except Exception:  # noqa: BLE001 - untraceable custom backbones are evaluated unfused
        return backbone


class Pack:
    """The state of one packed training run: weights, optimiser state, streams, accumulators.

    The runs' weights live in one matrix `weights` (R, D + head): row r is run r's backbone in the
    prior's flat order followed by its head. The optimiser, the prior term, weight decay,
    clipping and the divergence checks work on that matrix, a few operations per step whatever
    the number of layers; the packed network holds a working copy of it (refreshed from the
    matrix before each forward pass, as a mixed-precision trainer refreshes its working weights
    from master weights) and its gradients are gathered into `grads`.

    `train_pack` drives it: `step(k)` for every step, `collect_sample` at sample points,
    `freeze_diverged` every few steps, `outcomes` at the end.
    """

    def __init__(self, model, pool, test, method, settings, specs, device, precision,
                 channels_last, val=None):
        self.method, self.settings, self.specs = method, settings, specs
        self.runs, self.device = len(specs), device
        # fp64: the runs start from the same float32 initialisation, then train in float64
        self.dtype = torch.float64 if precision == "fp64" else next(model.parameters()).dtype
        # scored after training and at every sample: the test set (None: not scored, as for
        # tuning runs) followed by the validation set
        self.eval_tasks = [t for t in (test, val) if t is not None]
        self.n_test = 0 if test is None else len(test)
        self.n_val = 0 if val is None else len(val)
        self.heldout_positions = self._heldout(pool, specs)
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                         if precision == "bf16" else contextlib.nullcontext())
        self.net = self._build(model, specs, channels_last).to(device, self.dtype).train()
        # a probe's backbone takes no gradient (backward stops at the head); its part of
        # `grads` stays 0, so its weights never move
        self.frozen = method == "probe"
        for p in self.net.backbone_parameters():
            p.requires_grad_(not self.frozen)
        self.net_params = self.net.backbone_parameters() + self.net.head_parameters()
        self.trained_from = len(self.net.backbone_parameters()) if self.frozen else 0
        self.net_views = [run_view(p, self.runs) for p in self.net_params]
        widths = [v.shape[1] for v in self.net_views]
        self.dim = sum(widths[: len(self.net.backbone_parameters())])  # D, the prior's part
        self.weights = torch.cat([v.detach() for v in self.net_views], dim=1)
        self.weight_views = list(torch.split(self.weights, widths, dim=1))
        self.grads = torch.zeros_like(self.weights)
        self.grad_views = list(torch.split(self.grads, widths, dim=1))
        self.state = torch.zeros_like(self.weights)
        self._stale = False
        # weight decay on the head only where a prior covers the backbone; on everything for sgd
        self.decay_from = 0 if method == "sgd" else self.dim
        self.prior = (None if method in PRIORLESS_METHODS else
                      PackedPrior([s.prior for s in specs], device, self.dtype))
        self.run_ranks = [0 if s.prior is None else s.prior.rank for s in specs]
        self.num_data = torch.tensor([float(len(s.train_indices)) for s in specs], device=device)
        self.prior_weight = 1.0 / self.num_data  # the loss is mean NLL - log p / N
        self.weight_decay = _per_run(specs, "weight_decay", settings.weight_decay, device)
        self.schedule = make_schedule(method, settings)
        self._tabulate(specs)
        self.precond = self._preconditioner()
        self.train = BatchStream(pool, [s.train_indices for s in specs], settings.batch_size,
                                 [torch.Generator().manual_seed(s.stream_seed(0)) for s in specs])
        self.refresh = BatchStream(pool, [s.train_indices for s in specs], settings.batch_size,
                                   [torch.Generator().manual_seed(s.stream_seed(2))
                                    for s in specs])
        self.noise_gens = [torch.Generator(device=device).manual_seed(s.stream_seed(1))
                           for s in specs]
        self.alive = torch.ones(self.runs, dtype=torch.bool, device=device)
        self.diverged_at = torch.full((self.runs,), -1, dtype=torch.long, device=device)
        self.last_loss = torch.zeros(self.runs, dtype=torch.float64, device=device)
        self.clipped = torch.zeros(self.runs, device=device)
        self.average = ProbabilityAverage()
        self.sample_classes: list[torch.Tensor] = []  # (R, n_test) predicted class per sample
        self.sample_nll: list[torch.Tensor] = []  # (R,) test NLL of each sample
        # every sample's probability of the true class on a fixed subset of the test points
        # (every `stride`-th, at most DIAGNOSTIC_POINTS): the draws of per-point R-hat and ESS
        self.diagnostic_points = diagnostic_points(self.n_test)
        self.sample_true_probs: list[torch.Tensor] = []  # (R, points) per sample
        # the same on the validation points (kept where a test set is scored too)
        self.val_diagnostic_points = diagnostic_points(self.n_val)
        self.sample_val_true_probs: list[torch.Tensor] = []
        self._last_sample: tuple | None = None  # (steps done, probs, labels) of the last sample

    @staticmethod
    def _build(model: Classifier, specs: Sequence[RunSpec], channels_last: bool
               ) -> PackedClassifier:
        net = PackedClassifier(model, len(specs), channels_last)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        backbone = {k.removeprefix("backbone."): v for k, v in initial.items()
                    if k.startswith("backbone.")}
        for r, spec in enumerate(specs):
            # an empty state is not "no state": it was refused when read (priors.files)
            model.backbone.load_state_dict(backbone if spec.init_state is None
                                           else spec.init_state)
            torch.manual_seed(spec.stream_seed(0))
            model.head.reset_parameters()
            load_run(net, r, model)
        model.load_state_dict(initial)  # the template leaves as it came
        return net

    def _tabulate(self, specs: Sequence[RunSpec]) -> None:
        """Per step and run: learning rate and noise std on the device; collect flags on host."""
        s, device = self.settings, self.device
        plans = list(self.schedule)
        shape = torch.tensor([p.lr / s.lr for p in plans], dtype=torch.float64)
        lr0 = _per_run(specs, "lr", s.lr, "cpu").double().view(1, -1)
        lr = shape.view(-1, 1) * lr0
        temperature = _per_run(specs, "temperature", s.temperature, "cpu").double().view(1, -1)
        friction = 1.0 - s.momentum if self.method == "sghmc" else 1.0
        noise = torch.tensor([p.noise for p in plans], dtype=torch.float64).view(-1, 1)
        num_data = self.num_data.cpu().double().view(1, -1)
        std = langevin_noise_std(lr, temperature, num_data, friction) * noise
        self.lr = lr.to(device, torch.float32).unsqueeze(-1)  # (steps, R, 1)
        # SGHMC's velocity is v = sqrt(lr / N) p (Chen et al.'s v = eps r): when the step size
        # changes, v is rescaled by sqrt(lr_k / lr_{k-1}) so that the momentum p carries over
        ratio = torch.ones_like(lr)
        ratio[1:] = (lr[1:] / lr[:-1].clamp_min(1e-300)).sqrt()
        self.velocity_scale = (ratio * s.momentum).to(device, torch.float32).unsqueeze(-1)
        self.lr0 = lr0.view(-1).tolist()
        self.noise_std = std.to(device, torch.float32).unsqueeze(-1)
        self.noisy = [self.method in SAMPLER_METHODS and p.noise for p in plans]
        self.any_temperature = bool((temperature > 0).any())
        self.collect = [self.method in SAMPLER_METHODS and p.collect for p in plans]

    def _preconditioner(self) -> PriorPreconditioner | None:
        """The runs' preconditioner by their whole prior covariance, on the backbone's
        coordinates (the head keeps plain steps), or None without a prior or a cap: see
        `priors.packed.PriorPreconditioner`."""
        cap = self.settings.prior_step_cap
        if self.prior is None or cap is None:
            return None
        lr0 = torch.tensor(self.lr0, device=self.device, dtype=torch.float64)
        return self.prior.preconditioner(lr0, self.num_data, cap)

    # ----------------------------------------------------------------------------- one step

    @torch.no_grad()
    def sync_net(self) -> None:
        """Copy the weight matrix into the network's working weights if it changed."""
        if self._stale:
            torch._foreach_copy_(self.net_views, self.weight_views)
            self._stale = False

    def step(self, k: int) -> None:
        x, y = next(self.train)
        x = x.to(self.dtype)
        self.sync_net()
        for p in self.net.parameters():
            p.grad = None
        with self.autocast:
            logits = self.net(x)
        runs, batch, classes = logits.shape
        ce = F.cross_entropy(logits.float().reshape(runs * batch, classes), y.reshape(-1),
                             reduction="none").view(runs, batch).mean(1)
        ce.sum().backward()
        trained = self.trained_from
        with torch.no_grad():
            torch._foreach_copy_(self.grad_views[trained:],
                                 [run_view(p.grad, runs) for p in self.net_params[trained:]])
        loss = ce.detach().double()
        theta, backbone_grads = self.weights[:, : self.dim], self.grads[:, : self.dim]
        # the prior's gradient and the preconditioner in one pass, unless clipping comes between
        fused = self.precond is not None and self.settings.grad_clip is None
        if fused:
            log_p = self.precond.prior_step_(theta, backbone_grads, self.prior_weight)
        elif self.prior is not None:
            log_p = self.prior.add_neg_log_prob_grad_(theta, backbone_grads, self.prior_weight)
        if self.prior is not None:
            loss = loss - log_p / self.num_data
        ok = torch.isfinite(loss)
        self._mark_diverged(ok, k)
        self.last_loss = torch.where(ok, loss, self.last_loss)
        self.grads[:, self.decay_from:].addcmul_(self.weights[:, self.decay_from:],
                                                 self.weight_decay)
        if self.settings.grad_clip is not None:
            self._clip(backbone_grads)
        if self.precond is not None and not fused:
            self.precond.apply_(backbone_grads)
        self._update(k)
        self._stale = True

    def _clip(self, grads: torch.Tensor) -> None:
        """Scale each run's backbone gradient to norm <= grad_clip (torch's clip_grad_norm_)."""
        limit = self.settings.grad_clip
        norm = torch.linalg.vector_norm(grads, dim=1)
        self.clipped += (norm > limit).float()
        grads.mul_((limit / (norm + 1e-6)).clamp(max=1.0).view(-1, 1))

    def _noise(self) -> torch.Tensor:
        """The injected noise's direction for every weight, row r from run r's generator:
        standard normal, or N(0, M) on the backbone under the prior's preconditioner M
        (`PriorPreconditioner.noise`, from 2 D + K standard normals per run)."""
        dim, width = self.dim, self.weights.shape[1]
        if self.precond is None:
            z = torch.empty_like(self.weights)
            for r, gen in enumerate(self.noise_gens):
                torch.randn(width, generator=gen, device=self.device, out=z[r])
            return z
        # per run: D + its own rank K_r + D backbone draws, then the head's (a run draws the
        # same numbers alone or in any pack; ranks below the pack's are padded with zeros)
        k = self.precond.rank
        z = self.weights.new_zeros(self.runs, 2 * dim + k + width - dim)
        for r, (gen, rank) in enumerate(zip(self.noise_gens, self.run_ranks, strict=True)):
            draw = torch.randn(2 * dim + rank + width - dim, generator=gen, device=self.device,
                               dtype=z.dtype)
            z[r, :dim + rank] = draw[:dim + rank]
            z[r, dim + k:] = draw[dim + rank:]
        backbone = self.precond.noise(z[:, :dim], z[:, dim:dim + k], z[:, dim + k:2 * dim + k])
        return torch.cat([backbone, z[:, 2 * dim + k:]], dim=1)

    @torch.no_grad()
    def _update(self, k: int) -> None:
        s, lr = self.settings, self.lr[k]
        w, g, state = [self.weights], [self.grads], [self.state]
        if self.method in OPTIMIZER_METHODS:
            sgd_(w, g, state, lr, s.momentum, s.nesterov, first=k == 0)
            return
        noises = [self._noise()] if self.noisy[k] and self.any_temperature else None
        if self.method == "sgld":
            sgld_(w, g, lr, self.noise_std[k], noises)
        else:
            sghmc_(w, g, state, lr, self.velocity_scale[k], self.noise_std[k], noises)

    # ----------------------------------------------------------------------------- divergence

    def freeze_diverged(self) -> None:
        """Read the divergence flags (one host sync) and freeze every diverged run: its
        weights, optimiser state and step sizes become 0, so it stays finite and inert."""
        dead = (~self.alive).nonzero().flatten().tolist()
        with torch.no_grad():
            for r in dead:
                self.weights[r].zero_()
                self.state[r].zero_()
                self.lr[:, r] = 0.0
                self.noise_std[:, r] = 0.0
                self.velocity_scale[:, r] = 0.0
        self._stale = self._stale or bool(dead)

    def _mark_diverged(self, ok: torch.Tensor, steps_done: int) -> None:
        """Runs alive so far whose `ok` flag is False diverged at `steps_done` (on the device)."""
        self.diverged_at = torch.where(self.alive & ~ok, steps_done, self.diverged_at)
        self.alive &= ok

    # ----------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def predict(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities (R, n, classes) of every run in eval mode on the test set followed by
        the validation set (if any), and their labels."""
        self.sync_net()
        was_training = self.net.training
        self.net.eval()
        backbone = fused_for_inference(self.net.backbone)
        size = max(1, self.settings.eval_batch_size // self.runs)
        if self.device.type == "cpu":
            size = min(size, CPU_EVAL_CHUNK)
        probs, labels = [], []
        chunks = (chunk for task in self.eval_tasks for chunk in task.eval_chunks(size))
        for x, y in chunks:
            x = x.to(self.dtype)
            batch = self.net.fold(x.unsqueeze(0).expand(self.runs, *x.shape))
            with self.autocast:
                logits = self.net.head_logits(backbone(batch))
            probs.append(torch.softmax(logits.float(), dim=-1))
            labels.append(y)
        self.net.train(was_training)
        return torch.cat(probs, dim=1), torch.cat(labels)

    @torch.no_grad()
    def predict_refreshed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`predict` with each run's BatchNorm statistics recomputed on its own training data
        for the current weights (then restored, so training goes on with its running ones)."""
        self.sync_net()
        buffers = [(b, b.clone()) for b in self.net.backbone.buffers()]
        n_batches = min(self.settings.bn_refresh_batches,
                        max(1, math.ceil(len(self.specs[0].train_indices)
                                         / self.refresh.batch_size)))
        with self.autocast:
            refresh_batchnorm(self.net, (next(self.refresh)[0].to(self.dtype)
                                         for _ in range(n_batches)))
        out = self.predict()
        for b, saved in buffers:
            b.copy_(saved)
        return out

    @torch.no_grad()
    def collect_sample(self, steps_done: int) -> None:
        """Add the current weights' test probabilities (`predict_refreshed`) to the model
        average."""
        probs, labels = self.predict_refreshed()
        self._last_sample = (steps_done, probs, labels)  # the final iterate's, at the last step
        finite = torch.isfinite(probs).flatten(1).all(1)
        self._mark_diverged(finite, steps_done)
        probs = torch.where(finite.view(-1, 1, 1), probs, 0.0)
        self.average.update(probs)
        if not self.n_test:
            return
        self.sample_classes.append(probs[:, : self.n_test].argmax(-1))
        # each point's probability of its true class, (R, n, 1): test points, then validation
        true = probs.gather(2, labels.view(1, -1, 1).expand(self.runs, -1, 1))
        test, val = true[:, : self.n_test], true[:, self.n_test:]
        self.sample_nll.append(-test.clamp_min(1e-12).log().mean((1, 2)))
        self.sample_true_probs.append(test[:, self.diagnostic_points, 0].to(torch.float16))
        if self.n_val:
            self.sample_val_true_probs.append(
                val[:, self.val_diagnostic_points, 0].to(torch.float16))

    # ----------------------------------------------------------------------------- outcomes

    def outcomes(self, start: float) -> list[RunOutcome]:
        """Each run's outcome; its seconds are its share of the pack's wall clock from `start`
        (a `time.perf_counter()`) to the end of the final predictions, which they include."""
        steps = self.settings.steps
        self._mark_diverged(torch.isfinite(self.weights).all(1), steps)
        # a sampler's last step is a sample: its prediction is the final iterate's (one BatchNorm
        # refresh and one pass over the test set, not two)
        last = self._last_sample
        probs, labels = (last[1:] if last is not None and last[0] == steps
                         else self.predict_refreshed())
        wall = time.perf_counter() - start
        self._mark_diverged(torch.isfinite(probs).flatten(1).all(1), steps)
        alive = self.alive.tolist()
        diverged_at = self.diverged_at.tolist()
        losses = self.last_loss.tolist()
        labels, n = labels.cpu(), self.n_test
        bma = self.average.mean().cpu() if self.average.count else None
        diagnostics = self._diagnostics()
        has_val = self.n_val > 0

        def scores(p: torch.Tensor | None, part: slice) -> dict[str, Any] | None:
            if p is None or part.stop == part.start == 0 or len(labels[part]) == 0:
                return None
            return classification_metrics(p[part], labels[part])

        def bins(p: torch.Tensor | None) -> dict[str, list] | None:
            return None if p is None or not n else reliability_bins(p[:n], labels[:n])

        out = []
        for r in range(self.runs):
            if not alive[r]:
                out.append(RunOutcome("diverged", None, None, self.average.count,
                                      diverged_at[r], None, wall / self.runs, diagnostics[r]))
                continue
            final, avg = probs[r].cpu(), None if bma is None else bma[r]
            test, val = slice(0, n), slice(n, n + self.n_val)
            head = final if avg is None else avg
            # log-probabilities in float16: probabilities below 6e-8 would round to 0
            predictions = {split: {"log_probs": head[part].clamp_min(1e-30).log()
                                   .to(torch.float16).numpy(),
                                   "labels": labels[part].to(torch.int16).numpy()}
                           for split, part in (("test", test), ("val", val))
                           if part.stop != part.start and len(labels[part])}
            for split, draws, points in (
                    ("test", self.sample_true_probs, self.diagnostic_points),
                    ("val", self.sample_val_true_probs, self.val_diagnostic_points)):
                if draws and split in predictions:
                    predictions[split]["sample_true_probs"] = torch.stack(
                        [p[r] for p in draws]).cpu().numpy()
                    predictions[split]["sample_points"] = points.cpu().numpy()
            out.append(RunOutcome(
                "ok", scores(final, test), scores(avg, test), self.average.count, steps,
                losses[r], wall / self.runs, diagnostics[r],
                scores(final, val) if has_val else None, scores(avg, val) if has_val else None,
                predictions, {"final": bins(final), "bma": bins(avg)},
                *self._heldout_scores(r, final, avg, labels),
            ))
        return out

    def _heldout(self, pool: DeviceTask, specs: Sequence[RunSpec]) -> list | None:
        """Scores every run's own held-out pool images too: their union is evaluated after the
        test and validation sets; returns each run's positions in it (None without any)."""
        held = [s.heldout for s in specs]
        if all(h is None for h in held):
            return None
        union = torch.unique(torch.cat([h.cpu() for h in held if h is not None]))
        self.eval_tasks.append(pool.subset(union.to(pool.device)))
        return [None if h is None else torch.searchsorted(union, h.cpu()) for h in held]

    def _heldout_scores(self, r: int, final: torch.Tensor, avg: torch.Tensor | None,
                        labels: torch.Tensor) -> tuple:
        """(final, model average) metrics of run r on its own held-out images, or Nones."""
        if self.heldout_positions is None or self.heldout_positions[r] is None:
            return None, None
        where = self.n_test + self.n_val + self.heldout_positions[r]
        return tuple(None if p is None else classification_metrics(p[where], labels[where])
                     for p in (final, avg))

    def _diagnostics(self) -> list[dict[str, float | None]]:
        """Per run:
        - `clipped_fraction`: fraction of steps whose backbone gradient was clipped;
        - `max_step_curvature`: lr0 x the prior term's largest curvature, 1 / (N min d); above 2
          (SGD, SGLD) or 2 (1 + momentum) (heavy ball) a plain explicit step is unstable;
        - `max_preconditioned_step_curvature`: the same as the updates see it (<= prior_step_cap);
        - `prior_mahalanobis_rms`: sqrt((theta - mu)^T Sigma^-1 (theta - mu) / D) of the final
          backbone against the run's prior (about 1 for a typical prior draw);
        - `sample_disagreement` (samplers): mean over pairs of samples of the fraction of test
          points on which their predicted classes differ;
        - `sample_test_nll` (samplers): the test NLL of each sample in order (for R-hat);
        - `burn_in_samples` (samplers): sample points of the burn-in cycles, left out of the
          average (`n_samples` of the record counts those averaged);
        - `free_share`: the share of backbone coordinates the prior leaves free to move, those
          whose prior variance (the diagonal of Sigma) is at least lr0 / (cap N): there the
          preconditioned step keeps at least half its size (`free_share`); 1 for `sgd`, 0 for
          a probe.
        None where a value does not apply."""
        clipped = (self.clipped / self.settings.steps).tolist()
        none = [None] * self.runs
        curvature, effective, distance = none, none, none
        if self.prior is not None:
            lr0 = torch.tensor(self.lr0, device=self.device).view(-1, 1)
            stiffness = lr0 / (self.num_data.view(-1, 1) * self.prior.variance)
            curvature = stiffness.amax(1).tolist()
            if self.precond is not None:
                effective = self.precond.max_step_curvature().tolist()
            else:
                effective = curvature
            distance = self.prior.mahalanobis_rms(self.weights[:, : self.dim]).tolist()
            distance = [d if a else None for d, a in zip(distance, self.alive.tolist(),
                                                         strict=True)]
        disagreement = (sample_disagreement(self.sample_classes)
                        if len(self.sample_classes) >= 2 else none)
        nll = (torch.stack(self.sample_nll, 1).tolist() if self.sample_nll else none)
        burn_in = (self.schedule.burn_in_samples if self.method in SAMPLER_METHODS else None)
        free = self._free_shares()
        return [{"clipped_fraction": clipped[r], "max_step_curvature": curvature[r],
                 "free_share": free[r],
                 "burn_in_samples": burn_in,
                 "max_preconditioned_step_curvature": effective[r],
                 "prior_mahalanobis_rms": distance[r],
                 "sample_disagreement": disagreement[r], "sample_test_nll": nll[r]}
                for r in range(self.runs)]


    def _free_shares(self) -> list[float]:
        """Per run, `free_share` (see `_diagnostics`)."""
        if self.prior is None:
            return [0.0 if self.frozen else 1.0] * self.runs
        cap = self.settings.prior_step_cap or DEFAULT_STEP_CAP
        shares, diagonals = [], {}
        for spec, lr0, n in zip(self.specs, self.lr0, self.num_data.tolist(), strict=True):
            key = id(spec.prior)
            if key not in diagonals:
                diagonals[key] = spec.prior.diag_of_covariance()
            shares.append(free_share(diagonals[key], lr0, n, cap))
        return shares
