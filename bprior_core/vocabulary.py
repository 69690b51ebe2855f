"""The study's words, each defined once: experiments, methods, metrics, priors, arms and claims.

Every other module imports them from here (`tests/test_vocabulary.py` fails on a literal list
of them elsewhere, or on an arm name written out). An inference arm's name is
`method+prior kind` (`sghmc+learned`), or a method alone for a prior-free arm (`sgd`, `probe`);
`arm` writes one and `arm_parts` reads one.
"""

from __future__ import annotations

# ---------------------------------------------------------------- experiments
RANK, SCALE, INFERENCE, TEMPERATURE = "rank", "scale", "inference", "temperature"
CONTROL, COVARIANCE, PER_SEED, REFERENCE = "control", "covariance", "per_seed", "reference"
# every experiment a profile may enable, in the order they are planned
EXPERIMENTS = (RANK, SCALE, INFERENCE, TEMPERATURE, CONTROL, COVARIANCE, PER_SEED, REFERENCE)
# tuned on validation, then trained on evaluation seeds (protocol `fixed`)
TUNED_EXPERIMENTS = (INFERENCE, CONTROL, COVARIANCE)
# the positive controls (claims PC, PC2): both trained at the control's training size
CONTROL_EXPERIMENTS = (CONTROL, COVARIANCE)
# experiments with one `prior` key (the learned prior they use)
ONE_PRIOR_EXPERIMENTS = (RANK, INFERENCE, TEMPERATURE)
# the experiments with a page of tables and figures (report and explorer)
VIEWED_EXPERIMENTS = (RANK, SCALE, INFERENCE, TEMPERATURE)
# the experiments the claims read
CLAIMED_EXPERIMENTS = (CONTROL, COVARIANCE, RANK, SCALE, INFERENCE, REFERENCE)

# ---------------------------------------------------------------- methods
SGD, SGD_PRIOR, SGLD, SGHMC, PROBE, HMC = "sgd", "sgd_prior", "sgld", "sghmc", "probe", "hmc"
METHODS = (SGD, SGD_PRIOR, SGLD, SGHMC, PROBE)  # what the engine trains
# methods that train without a prior: `sgd` (weight decay on every weight) and `probe` (the
# backbone frozen at its initial weights, the head trained with weight decay: a linear probe)
PRIORLESS_METHODS = (SGD, PROBE)
SAMPLER_METHODS = (SGLD, SGHMC)  # SG-MCMC: noise, samples, chains
OPTIMIZER_METHODS = (SGD, SGD_PRIOR, PROBE)  # an SGD update with momentum
# an arm's method word: a method, or `ensemble` (SGD chains averaged, T = 0)
ENSEMBLE = "ensemble"
CHAINED_ARM_METHODS = (SGHMC, SGLD, ENSEMBLE)  # arms trained as chains

# ---------------------------------------------------------------- metrics
ACCURACY, NLL, ECE, BRIER = "accuracy", "nll", "ece", "brier"
ERROR_PCT = "error_pct"  # 100 x (1 - accuracy), how tables and figures show accuracy
METRICS = (ACCURACY, NLL, ECE, BRIER)  # what every run records per split
TABLE_METRICS = (ERROR_PCT, NLL, ECE, BRIER)
SHOWN_METRICS = (ERROR_PCT, NLL, ECE)  # a table's default columns
FIGURE_METRICS = (ERROR_PCT, NLL)  # a figure's default rows
SECONDARY_METRICS = (NLL, ECE)  # judged beside the headline metric (accuracy)

# ---------------------------------------------------------------- priors
# learned priors, by what they are learned from (study/sources.py)
SSL, SUPERVISED, ORACLE = "ssl", "supervised", "oracle"
# the covariance control's prior (claim PC2): the SimCLR draw's mean, with a low-rank covariance
# along the directions fine-tuning those weights on the downstream rest (with labels) takes
TASK_PRIOR = "task"
PRIOR_NAMES = (SSL, SUPERVISED, ORACLE)
DOWNSTREAM_PRIORS = (ORACLE, TASK_PRIOR)  # learned from the downstream rest, with labels
# the kind of prior a run's loss holds (an arm's second word)
LEARNED, ZERO, ISOTROPIC, TASK, NONE = "learned", "zero", "isotropic", "task", "none"
PRIOR_KINDS = (LEARNED, ZERO, ISOTROPIC, TASK, NONE)
VARIANCE_KINDS = (ZERO, ISOTROPIC)  # given by one variance (zero mean, or the learned mean)


# ---------------------------------------------------------------- arms
def arm(method: str, prior_kind: str | None = None) -> str:
    """An arm's name: `method+prior kind`, or the method alone without a prior."""
    return f"{method}+{prior_kind}" if prior_kind else method


def arm_parts(name: str) -> tuple[str, str | None]:
    """An arm's name split in two: (`sghmc`, `learned`) for `sghmc+learned`, (`sgd`, None)."""
    method, _, prior_kind = name.partition("+")
    return method, prior_kind or None


SGD_LEARNED, SGD_ZERO, SGD_ISOTROPIC, SGD_TASK = (arm(SGD, k) for k in
                                                  (LEARNED, ZERO, ISOTROPIC, TASK))
SGHMC_LEARNED, SGHMC_ZERO, SGHMC_ISOTROPIC, SGHMC_TASK = (arm(SGHMC, k) for k in
                                                          (LEARNED, ZERO, ISOTROPIC, TASK))
SGLD_LEARNED = arm(SGLD, LEARNED)
ENSEMBLE_LEARNED = arm(ENSEMBLE, LEARNED)  # SGD chains at T = 0 with the learned prior
# controls added to the final runs of `sgd+learned` (not arms a profile names)
LONG_SGD = arm("sgd_long", LEARNED)  # the chosen SGD + learned run, trained for a sampler's budget
DEEP_ENSEMBLE = arm("deep_ensemble", LEARNED)  # the same run as `chains` members
# the arms a profile's inference, control and per-seed experiments may name
ARMS = (SGD, SGD_LEARNED, SGHMC_LEARNED, SGLD_LEARNED, SGD_ZERO, SGHMC_ZERO, SGD_ISOTROPIC,
        SGHMC_ISOTROPIC, ENSEMBLE_LEARNED, PROBE)
# the covariance control's arms (claim PC2): the task-shaped prior and the isotropic prior at the
# same mean (the SimCLR weights), the same trace at every tuned variance
COVARIANCE_ARMS = (SGD_TASK, SGD_ISOTROPIC, SGHMC_TASK, SGHMC_ISOTROPIC)

# ---------------------------------------------------------------- claims
CONTROL_ID, COVARIANCE_ID = "PC", "PC2"  # the positive controls (outside the Holm family)
REFERENCE_ID = "C4p"  # the samplers against the reference posterior
# the controls, then the paper's claims and our hypothesis H1 (what each is, and which are one
# Holm family: `claims/registry.py`)
CLAIM_IDS = (CONTROL_ID, COVARIANCE_ID, "C1", "C2", "C3", "C4", "C4b", REFERENCE_ID, "C5", "H1")
