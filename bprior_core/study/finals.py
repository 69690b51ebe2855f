"""The final runs of the tuned groups, and what a study will need whichever points tuning
chooses (prior draws, final-run counts).

Protocol `fixed` (inference, control, covariance): a group is (experiment, arm, size); its
setting is the grid point with the lowest validation NLL averaged over the tuning seeds,
trained once per evaluation seed. Protocol `per_seed`: a group is (experiment, arm, size,
seed); the seed's own best point is its final run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from ..analysis.selection import choose_point, choose_pooled
from ..config import evaluation_seeds, fixed_protocol
from ..config.profile import Profile
from ..vocabulary import (
    DEEP_ENSEMBLE,
    EXPERIMENTS,
    INFERENCE,
    LONG_SGD,
    SAMPLER_METHODS,
    SGD_LEARNED,
    TUNED_EXPERIMENTS,
)
from .planning import digest, is_sampler_arm, plan, prior_draw, prior_source_id


def _pooled(profile: Profile, experiment: str) -> bool:
    """Whether an experiment's tuned arms are fixed once over the tuning seeds (protocol
    `fixed`) rather than per seed."""
    return experiment in TUNED_EXPERIMENTS and fixed_protocol(profile)


def final_runs(profile: Profile, stored: Callable[[dict], dict | None],
               experiments: Iterable[str] = EXPERIMENTS, runs: Sequence[dict] | None = None
               ) -> list[dict]:
    """The final runs of every tuned group whose tuning runs are all stored (`stored(run)`
    gives a run's complete record or None), trained in phase `final` with the test set scored.

    Protocol `fixed` (inference, control, covariance): a group is (experiment, arm, size); its
    setting is the grid point with the lowest validation NLL averaged over the tuning seeds
    (`selection.choose_pooled`), trained once per evaluation seed (`config.evaluation_seeds`,
    which never overlap the tuning seeds). Protocol `per_seed` and the `per_seed` experiment: a
    group is (experiment, arm, size, seed); the seed's own best point is its final run. No final
    run where no point has a finite score. Each final run carries its `selection`; a sampler's
    (and the T = 0 ensemble's) has `experiments.inference.chains` chains. `runs`: the
    experiments' planned runs, where the caller has them (else they are planned here)."""
    groups: dict[tuple, list[dict]] = {}
    for run in plan(profile, experiments) if runs is None else runs:
        cfg = run["config"]
        if cfg.get("phase") == "tune":
            key = (cfg["experiment"], cfg["arm"], cfg["n_train"])
            if not _pooled(profile, cfg["experiment"]):
                key += (cfg["seed"], cfg.get("chain", 0))
            groups.setdefault(key, []).append(run)
    finals = []
    for (experiment, *_), members in groups.items():
        records = [stored(run) for run in members]
        if any(r is None for r in records):
            continue
        scored = "heldout" if members[0]["config"].get("fit") == "split" else "val"
        pooled = _pooled(profile, experiment)
        choice = (choose_pooled if pooled else choose_point)(records, scored)
        if choice is None:
            continue
        best, selection = choice
        if scored == "heldout":  # the fixed validation set's choice from the same runs
            other = (choose_pooled if pooled else choose_point)(records, "val")
            selection["validation_choice"] = None if other is None else {
                k: other[1][k] for k in ("value", "lr", "val_nll")}
        config = {k: v for k, v in members[best]["config"].items() if k != "fit"}
        config["phase"] = "final"  # trained on the whole subset
        if not pooled:
            config["seed_role"] = "per_seed"  # tuned and evaluated on the same subset
            finals += [{"id": digest(c), "config": c, "selection": selection}
                       for c in _final_configs(profile, config, True)]
            continue
        config["seed_role"] = "evaluation"
        samplers = set(evaluation_seeds(profile, config["n_train"], True))
        for s in evaluation_seeds(profile, config["n_train"], is_sampler_arm(config["arm"])):
            evaluated = {**config, "seed": s, "prior": _reseeded(profile, config["prior"], s)}
            finals += [{"id": digest(c), "config": c, "selection": selection}
                       for c in _final_configs(profile, evaluated, s in samplers)]
    return finals


def final_run_count(profile: Profile, experiments: Iterable[str] = EXPERIMENTS) -> Counter:
    """How many final runs each experiment will have once its tuning is done, per experiment
    (it does not depend on which points are chosen)."""
    return Counter(r["config"]["experiment"] for r in _any_finals(profile, experiments))


def _reseeded(profile: Profile, prior: dict, seed: int) -> dict:
    """A run's prior spec moved to the prior draw of another seed (seed mod draws)."""
    draw = prior_draw(profile, seed)
    return {**prior, "draw": draw, "source_id": prior_source_id(profile, prior["source"], draw)}


def _final_configs(profile: Profile, config: dict, with_controls: bool) -> list[dict]:
    """The final run(s) of one chosen configuration: a sampler's `chains` chains (own batches,
    head initialisation and noise); for `sgd+learned` the run itself and, on the seeds of the
    sampler arms (`with_controls`), with `experiments.inference.deep_ensemble`, the deep
    ensemble's members (the same run as `chains` chains, averaged in the analysis) and, with
    `experiments.inference.long_sgd`, the same run trained `chains` times as long
    (`sgd_long+learned`): both spend the sampler's total gradient budget, so a sampler's gain
    over SGD that is only the budget shows."""
    inference = profile.experiments.inference
    chains = range(inference.chains)
    if config["method"] in SAMPLER_METHODS:
        return [{**config, "chain": c} for c in chains]
    out = [config]
    if config["arm"] == SGD_LEARNED and config["experiment"] == INFERENCE and with_controls:
        if inference.deep_ensemble:
            out += [{**config, "arm": DEEP_ENSEMBLE, "chain": c} for c in chains]
        if inference.long_sgd and len(chains) > 1:  # one chain: the run itself
            train = {**config["train"], "steps": config["train"]["steps"] * len(chains)}
            out.append({**config, "arm": LONG_SGD, "train": train})
    return out


def needed_priors(profile: Profile, experiments: Iterable[str] = EXPERIMENTS) -> list[str]:
    """Names of the priors (`ssl`, `supervised`) the enabled experiments use."""
    return sorted({name for name, _ in needed_draws(profile, experiments)})


def needed_draws(profile: Profile, experiments: Iterable[str] = EXPERIMENTS,
                 runs: Sequence[dict] | None = None) -> list[tuple[str, int]]:
    """(prior name, draw) pairs the enabled experiments use: their planned runs' (`runs`, else
    planned here) and the final runs' to come (evaluation seeds use draws the tuning seeds may
    not)."""
    experiments = list(experiments)
    runs = plan(profile, experiments) if runs is None else list(runs)
    return sorted({(run["config"]["prior"]["source"], run["config"]["prior"]["draw"])
                   for run in runs + _any_finals(profile, experiments, runs)})


def _any_finals(profile: Profile, experiments: Iterable[str],
                runs: Sequence[dict] | None = None) -> list[dict]:
    """The final runs the experiments will have, whichever points their tuning chooses."""
    score = {"nll": 1.0}

    def any_choice(run: dict) -> dict:
        return {"status": "ok", "config": run["config"], "val_metrics": {"final": score},
                "heldout_metrics": {"final": score}}

    return final_runs(profile, any_choice, experiments, runs)
