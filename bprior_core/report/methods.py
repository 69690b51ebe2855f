"""The report's methods text, written from the profile: what each experiment trains, how it is
tuned and judged, and the conventions chosen (with the authors' where they differ)."""

from __future__ import annotations

from ..analysis.chains import RHAT_MAX
from ..analysis.convergence import MIN_DRAWS
from ..claims.text import (
    HOLM_RULE,
    INTERVAL_RULE,
    NONLEARNED_TEXT,
    PARTS_RULE,
    PER_SIZE_RULE,
    VERDICT_RULE,
    scale_label,
)
from ..config import evaluation_seeds, fixed_protocol, validation_from_pool
from ..config.profile import Profile, as_dict
from ..study.planning import control_size
from ..study.preflight import random_start
from ..vocabulary import ONE_PRIOR_EXPERIMENTS, TUNED_EXPERIMENTS
from .markup import _md


def _head_prior_text(weight_decay: float) -> str:
    """What the head's weight decay means in the sampled posterior."""
    if weight_decay <= 0:
        return ("The head has no weight decay, so no prior: its posterior is improper where the "
                "training data are separable.")
    variance = 1 / (50 * weight_decay)
    text = (f"The head's weight decay {weight_decay:g} is its prior: Gaussian, of variance "
            f"T / (N x {weight_decay:g}) in the sampled posterior ({variance:.3g} at T = 1 and "
            "N = 50).")
    if variance > 10:
        text += (" Chains drift for many thousand steps towards a head prior that broad (the "
                 "README's convergence measurements).")
    return text


def methods_markdown(profile: Profile, records: list[dict]) -> str:
    """The settings and conventions that change results, stated from the profile."""
    t, learning, exps = profile.train, profile.priors.learning, profile.experiments
    wall = sum(r.get("wall_time_s") or 0 for r in records)
    diverged = sum(r["status"] != "ok" for r in records)
    devices = sorted({_md(r.get("device", "?")) for r in records}) or ["-"]
    versions = sorted({_md(r.get("version", "?")) for r in records}) or ["-"]
    draws = profile.priors.draws
    start = ("from randomly initialised weights (no `model_weights`)"
             if random_start(profile) else
             f"from `{_md(profile.model_weights)}`" if profile.model_weights else
             "from randomly initialised weights")
    prior_text = (
        f"learned here with SWAG on the source task, starting {start} "
        f"({learning.pretrain_steps} pre-training "
        f"steps, then {learning.swag_steps} SWAG steps at lr {learning.swag_lr} "
        f"({learning.swag_schedule}), a snapshot every {learning.collect_every} steps, "
        f"rank {learning.max_rank}, batch {learning.batch_size}); **{draws} independent "
        f"draw(s) per source** (prior-learning seeds 0..{draws - 1}); downstream seed s uses draw "
        "s mod the number of draws, so paired differences over seeds carry prior-to-prior "
        "variation too. " + _sources_text(profile)
        if profile.priors.source == "learn"
        else "read from the authors' four-file format: "
        + "; ".join(f"{_md(name)} from {_md(prefix)}"
                    for name, prefix in as_dict(profile.priors.files).items() if prefix)
        + f", non-positive variances clamped to {profile.priors.variance_floor} (one "
        "draw per source: prior-to-prior variation is not measured)"
    )
    rule = profile.priors.rescaling_rule
    rule_text = {
        "same": "Sigma' = s (diag(variance) + F^T F) + eps I: variance and covariance scaled by "
                "the same factor s (the paper's text)",
        "authors": "Sigma' = s^2 F^T F + diag(s variance) + eps I (the authors' code)",
    }[rule]
    clip = ("no gradient clipping" if t.grad_clip is None else
            f"backbone gradient clipped at norm {t.grad_clip}")
    cap = t.prior_step_cap
    step_text = ("plain explicit steps on the prior term" if cap is None else
                 f"steps preconditioned by the prior's whole covariance, M = a Sigma (I + a "
                 f"Sigma)^-1, so that no step on the prior sees more than lr x curvature = "
                 f"{cap:g} and its low-rank directions relax as fast as the others (target "
                 "density and MAP unchanged)")
    kept = t.cycles - t.burn_in_cycles
    protocol = ("; the reproduction's protocol draws one image from each of the first n classes "
                "for n <= 100 but tests on ALL classes, so few-shot models are scored on classes "
                "they never saw" if profile.data.subset_protocol == "reproduction" else "")
    val = profile.data.val_size
    origin = {"flowers102": "taken from the official validation split",
              "imagefolder": "taken from the val/ folder" if not validation_from_pool(profile)
              else None}.get(profile.data.dataset) or (
        "drawn once from the labelled pool and removed from it (never in a training subset)")
    val_text = (f"validation set of {val} images, class-balanced, {origin}; it only selects "
                "hyper-parameters, ranks and scales, and the test set only measures the "
                "selected runs" if val else
                "no validation set (best ranks and scales are then picked on test means with "
                "Bonferroni-corrected intervals)")
    margins = profile.claims.margins
    return f"""
- **Data**: `{profile.data.dataset}`,
  subsets `{profile.data.subset_protocol}`{protocol},
  test set of {profile.data.test_size or 'all'} images (fixed); {val_text}.
  Model `{profile.model}`.
- **Seeds**: {_seeds_text(profile)} A seed fixes the training subset, the head's
  initialisation, the batch order and the sampler noise, the same for every arm (common random
  numbers); mean ± standard error over seeds; claims use paired differences over seeds with t
  intervals whose standard error includes the test set's sampling error where the runs' test
  predictions are stored (see Intervals). Verdicts are conditional on the prior's source
  images and the recipe that learned it: each draw is one run of that recipe.
- **Priors**: {prior_text}. Covariance diag(variance) + F^T F; rank r keeps the top r principal
  directions of the SWAG deviations.
- **Rescaling rule**: `{rule}`: {rule_text}; eps = {profile.priors.eps:g}. The scale
  experiment also sweeps the conventions listed below; the headline C2 verdict uses this one.
- **Downstream training**: {_steps_text(profile)}, batch {t.batch_size}, lr {t.lr},
  momentum {t.momentum}, weight decay {t.weight_decay} (head only when a prior is used),
  {clip}; {step_text}. Loss = mean cross-entropy minus log p(theta) / N (N = training-set
  size). Samplers and SGD take the same number of gradient steps.
- **Samplers**: `{exps.inference.bayes_method}` with a cyclical cosine step size,
  {t.cycles} cycles, exploration fraction {t.explore_fraction} (no noise), then sampling;
  {t.samples_per_cycle} sample(s) per cycle; the first {t.burn_in_cycles} cycle(s) are
  burn-in (left out), so {kept * t.samples_per_cycle} samples per chain are averaged, and a
  final run pools its {exps.inference.chains} chains.
  **Temperature T = {t.temperature:g}** (posterior proportional to exp(-U/T); T = 1 is the
  Bayes posterior; the authors' default 2e-8 corresponds to T = 4e-8 here). The prior covers
  the backbone only. {_head_prior_text(t.weight_decay)} The `ensemble`
  arm is the same schedule and samples at T = 0 (a cyclical snapshot ensemble): the control that
  separates "Bayesian" from "ensembling".
- **Prediction**: samplers predict with the Bayesian model average (mean of softmax
  probabilities over samples, each with its own BatchNorm statistics); SGD arms with the final
  iterate. Metrics: accuracy (shown as error %), NLL (mean per example), ECE (15 equal-width bins
  over top-label confidence), Brier (sum over classes, mean over examples).
{_experiments_text(profile)}
- **Verdicts**: each claim's effect is oriented so that positive = the claim's direction and
  compared with a margin, the smallest effect that matters (accuracy {margins.accuracy:g},
  NLL {margins.nll:g}, ECE {margins.ece:g}). {VERDICT_RULE}
  {PARTS_RULE} {PER_SIZE_RULE}
  {HOLM_RULE} Each claim's adjusted level, its parts' level and its mde are in its evidence
  (`holm`, `part_level`, `mde`).
- **Intervals, p-values, mde**: {INTERVAL_RULE}
- **Positive control (PC)**: the oracle prior against the tuned zero-mean prior with SGD at
  the control's training size, judged first, at 95 %, outside the Holm family (a check of the
  testbed, not a claim of the paper); the isotropic prior at the same centre is compared as
  evidence only. If PC is not supported, C3, C4, C4b, C5 and H1 are labelled *uninformative*:
  the testbed could not show even the oracle prior's effect.
- **Covariance control (PC2)**: a prior with the isotropic prior's mean (the SimCLR weights) and
  total variance, part of it along the directions fine-tuning those weights takes on the
  labelled downstream rest, against that isotropic prior, both tuned over the same variances,
  judged like PC. Where it ran and is not supported, C1 and H1 (the learned covariance's
  claims) are labelled *uninformative*.
- **Baselines that say what a prior does**: `probe` (a linear probe: the pretrained backbone
  frozen, the head trained with tuned weight decay) and `sgd` (fine-tuning every weight without
  a prior, tuned weight decay). A prior whose chosen scale leaves few coordinates free acts as
  a probe: the tables give, per chosen setting, the share of backbone coordinates the prior
  leaves free (prior variance >= lr / (cap N), where its preconditioned step keeps at least half
  its size).
- **Non-learned comparison**: {NONLEARNED_TEXT}
- **This run**: {len(records)} runs ({diverged} diverged), {wall / 60:.1f} run-minutes of
  training (each run's own time, summed; runs train side by side in packs and worker processes,
  so the wall clock is shorter: see Timings), device {', '.join(devices)}, bprior
  {', '.join(versions)}.
"""


METHOD_TEXT = {"sgd_prior": "SGD with the learned {prior} prior in its loss (MAP: the final "
                            "iterate)",
               "sghmc": "SGHMC with the learned {prior} prior (Bayesian model average over its "
                        "samples)",
               "sgld": "SGLD with the learned {prior} prior (Bayesian model average over its "
                       "samples)"}


def scales_text(scales) -> str:
    """Prior scales in one format: powers of ten as 1e5, others as %g."""
    return ", ".join(scale_label(s) for s in scales)


def experiment_intro(profile: Profile, experiment: str) -> str:
    """What a notebook's experiment runs, from the profile that ran it."""
    e, seeds = profile.experiments.experiment(experiment), profile.seeds
    if not e.enabled:
        return f"The {experiment} experiment is not run in this profile."
    if experiment == "rank":
        scales = e.scales or [e.scale]
        return (f"{METHOD_TEXT[e.method].format(prior=e.prior)} at n = "
                f"{e.n_train or 'full'}, {e.seeds or seeds} seeds, at scale"
                f"{'s' if len(scales) > 1 else ''} {scales_text(scales)}, with the low-rank "
                "part truncated to "
                f"ranks {', '.join(map(str, e.ranks))} (rank 0: the diagonal alone; rank r "
                "keeps the top r principal directions of the SWAG deviations)"
                + (", at the scaled trace and at the full-rank prior's total variance (fixed "
                   "trace)" if e.fixed_trace else "")
                + ". Claim C1: performance improves with the rank and saturates at a small "
                "rank; it is judged at the scale where the prior is strongest on validation.")
    if experiment == "scale":
        rules = e.rules or [profile.priors.rescaling_rule]
        eps = e.eps or [profile.priors.eps]
        return (f"{METHOD_TEXT[e.method].format(prior=' / '.join(e.priors))} at n = "
                f"{e.n_train or 'full'}, {e.seeds or seeds} seeds, rescaled over scales "
                f"{scales_text(e.scales)} under the rescaling rule(s) "
                f"{', '.join(rules)} (`same` = the paper's text, `authors` = their code) and "
                f"eps {', '.join(f'{x:g}' for x in eps)}"
                + ("; plus a run from scratch per seed (no pretraining, SGD, no prior)"
                   if e.scratch else "; no run from scratch (`experiments.scale.scratch`: "
                   "the largest scale stands for 'no prior')")
                + ". Claim C2: the un-rescaled prior is worse than a rescaled one; performance "
                "rises with the scale to an optimum and falls again towards very large scales.")
    if experiment == "inference":
        seeds_text = _seeds_text(profile)
        return (f"Arms {', '.join(f'`{a}`' for a in e.arms)} with the {e.prior} prior "
                f"(rank {e.rank}) at sizes {', '.join(str(n or 'full') for n in e.sizes)}: "
                f"SGD (MAP) and {e.bayes_method.upper()} (Bayesian model average) with the "
                "learned, zero-mean and isotropic priors, the T = 0 ensemble, the linear probe "
                "and fine-tuning without a prior where listed; at a given seed and size every "
                f"arm sees the same training subset. {seeds_text[0].upper()}{seeds_text[1:]} "
                "Claims C3, C4, C4b, C5 and H1.")
    if experiment == "temperature":
        return (f"{e.method.upper()} with the {e.prior} prior at scale "
                f"{scale_label(e.scale)}, rank "
                f"{e.rank}, n = {e.n_train or 'full'}, over temperatures "
                f"{', '.join(f'{t:g}' for t in e.temperatures)} (T = 0: no noise, a cyclical "
                "snapshot ensemble; T = 1: the Bayes posterior), "
                f"{e.chains} chains per temperature on the same training subset "
                f"({e.seeds or 1} seed{'s' if (e.seeds or 1) > 1 else ''}), their model "
                "averages pooled. "
                + temperature_text(profile))
    raise ValueError(f"no introduction for experiment {experiment!r}")


def temperature_text(profile: Profile) -> str:
    """How the temperature figure and table read, for this profile."""
    e, t = profile.experiments.temperature, profile.train
    draws = (t.cycles - t.burn_in_cycles) * t.samples_per_cycle
    seeds = e.seeds or 1
    spread = ("mean ± standard error over the seeds" if seeds > 1 else
              "one seed: one value per temperature, no error bar")
    rhat = (f"R-hat and ESS need at least {MIN_DRAWS} draws per chain; these chains hold "
            f"{draws}, so they are not computed" if draws < MIN_DRAWS else
            f"the dashed line marks R-hat = {RHAT_MAX}, the threshold of convergence")
    return (f"Test error, NLL and ECE of each temperature's pooled model average ({spread}) "
            f"and the rank-normalised R-hat over its {e.chains} chains ({rhat}). The axis is "
            "logarithmic; T = 0 sits a decade below the smallest positive temperature, behind "
            "the break `//`.")


def _seeds_text(profile: Profile) -> str:
    """How seeds are used: the fixed protocol's tuning and evaluation seeds (and the estimand),
    the per-seed protocol's, and the other experiments' counts."""
    exps = profile.experiments
    inference = exps.inference
    others = f"{profile.seeds} per point in the rank, scale and temperature experiments " \
             "unless they say otherwise."
    tuned = [e for e in TUNED_EXPERIMENTS if exps.experiment(e).enabled]
    if not tuned:
        return others
    if not fixed_protocol(profile):
        return (f"{inference.seeds or profile.seeds} seeds in {', '.join(tuned)}, each "
                "tuning its own setting on its own subset (per-seed protocol). " + others)
    sizes = inference.sizes
    counts = "; ".join(
        f"n = {n or 'full'}: {len(evaluation_seeds(profile, n))} seeds for SGD-type arms and "
        f"the controls, {len(evaluation_seeds(profile, n, True))} for the samplers and their "
        "controls" for n in sizes)
    first = inference.evaluation.first_seed
    text = (f"the headline protocol fixes each arm's setting per size once, by the validation "
            f"NLL averaged over the tuning seeds 0-{inference.tuning.seeds - 1}, then "
            f"evaluates it on evaluation seeds from {first} on, which never enter selection "
            f"({counts}). Its estimand: a method at its best fixed setting for that size. ")
    if exps.per_seed.enabled:
        e = exps.per_seed
        text += (f"The per-seed protocol (Harvey et al.; estimand: a method tuned on each "
                 f"subset) runs beside it with its own seeds {e.first_seed}-"
                 f"{e.first_seed + e.seeds - 1} ({', '.join(e.arms)} at n = "
                 f"{', '.join(str(x) for x in e.sizes)}, selection by "
                 f"{SELECTION_TEXT[e.selection]}). ")
    return text + others


SELECTION_TEXT = {"split": "a held-out fifth of each subset", "validation": "the validation set"}


def _steps_text(profile: Profile) -> str:
    """The training steps: the profile's, and the inference protocol's per size."""
    steps = profile.train.steps
    inference = profile.experiments.inference
    if inference.steps is None:
        return f"{steps} steps"
    per_size = ", ".join(f"{s} at n = {n or 'full'}"
                         for n, s in zip(inference.sizes, inference.steps, strict=True))
    return (f"{steps} steps in the rank, scale and temperature experiments; in the inference "
            f"protocol (and its controls, at their size) steps grow with n: {per_size}")


def _sources_text(profile: Profile) -> str:
    """Which images each learned prior was learned from, with their numbers."""
    from ..study.sources import source_kind, source_text

    pool = profile.data.labelled_pool
    head = (f"The downstream classes' labelled pool holds {pool} training images (validation set "
            "and every training subset come from it); prior learning never sees them. "
            if pool else "Every downstream training image is labelled. ")
    names = sorted({*profile.experiments.scale.priors,
                    *(profile.experiments.experiment(e).prior
                      for e in ONE_PRIOR_EXPERIMENTS)}
                   | ({"oracle"} if profile.experiments.control.enabled else set()))
    return head + "; ".join(f"`{n}`: {source_text(profile, source_kind(profile, n))}"
                            for n in names)


def _experiments_text(profile: Profile) -> str:
    """One bullet per enabled experiment: what it varies and at which settings."""
    exps, seeds = profile.experiments, profile.seeds
    lines = []

    def n(value: int) -> str:
        return str(value) if value else "full"

    if exps.rank.enabled:
        e = exps.rank
        lines.append(f"- **Rank** (C1): ranks {e.ranks} at scale {e.scale:g}, n = "
                     f"{n(e.n_train)}, {e.seeds or seeds} seeds"
                     + (", also at the full-rank prior's total variance (fixed trace)"
                        if e.fixed_trace else "") + "; the best rank is chosen on validation.")
    if exps.scale.enabled:
        e = exps.scale
        rules = e.rules or [profile.priors.rescaling_rule]
        eps = e.eps or [profile.priors.eps]
        lines.append(
            f"- **Scale** (C2): scales {', '.join(f'{s:g}' for s in e.scales)} at rank "
            f"{e.rank}, n = {n(e.n_train)}, {e.seeds or seeds} seeds, priors "
            f"{', '.join(e.priors)}; rules {', '.join(rules)} x eps "
            f"{', '.join(f'{x:g}' for x in eps)}"
            + ("; plus a run from scratch per seed (no pretraining, SGD, no prior)"
               if e.scratch else "") + "; best scales chosen on validation.")
    if exps.inference.enabled:
        e = exps.inference
        tuning = e.tuning
        if tuning.enabled:
            lrs = tuning.lrs or [profile.train.lr]
            scored = ("each training subset's held-out fifth (4/5 fitted; Harvey et al.)"
                      if tuning.selection == "split" else "the validation set")
            tuned = (f"every arm tuned over the same {len(tuning.scales)} x {len(lrs)} grid: "
                     f"its strength (learned prior scale "
                     f"{', '.join(f'{x:g}' for x in tuning.scales)}; zero-mean and isotropic "
                     f"prior variance {', '.join(f'{x:g}' for x in tuning.variances)}; `sgd` "
                     f"weight decay {', '.join(f'{x:g}' for x in tuning.weight_decays)}) "
                     f"crossed with the learning rate ({', '.join(f'{x:g}' for x in lrs)}); "
                     f"tuning runs are scored on {scored} only, and per size and seed the point "
                     "with the lowest NLL there is trained again on the whole subset with the "
                     "test set scored (the final run the claims see)")
        else:
            v = e.nonlearned_variance
            tuned = (f"untuned: learned prior at scale {e.scale:g}; baselines with variance "
                     + (f"{v:g}" if v is not None else "trace-matched to the rescaled learned "
                        "prior"))
        budget = (f"; the deep ensemble averages the chosen `sgd+learned` run trained as "
                  f"{e.chains} members" if e.deep_ensemble else "")
        if e.long_sgd:
            budget += (f"; `sgd_long+learned` is the chosen `sgd+learned` run trained for "
                       f"{e.chains} x {profile.train.steps} steps, the sampler's whole "
                       "gradient budget in one run")
        lines.append(f"- **Inference** (C3-C5, H1): arms {', '.join(e.arms)} at rank "
                     f"{e.rank}, sizes {', '.join(n(x) for x in e.sizes)}, "
                     f"{e.seeds or seeds} seeds; {tuned}. Every sampler's final run has "
                     f"{e.chains} chains, pooled{budget}. All arms start from the pretrained "
                     "backbone.")
    if exps.control.enabled:
        lines.append(f"- **Control** (PC): {', '.join(exps.control.arms)} with the oracle "
                     f"prior at n = {n(control_size(profile))}, tuned like the inference arms, "
                     "every arm starting from the oracle's backbone.")
    if exps.temperature.enabled:
        e = exps.temperature
        lines.append(f"- **Temperature**: `{e.method}` + learned prior at scale {e.scale:g}, "
                     f"n = {n(e.n_train)}, T in "
                     f"{', '.join(f'{x:g}' for x in e.temperatures)}, {e.chains} chains "
                     f"per temperature on the same subset ({e.seeds or seeds} seed(s)), "
                     "pooled; rank-normalised R-hat and bulk ESS over the chains.")
    return "\n".join(lines)
