"""The claims' prose: what each claim says, what the paper and the reproduction found, and the
rule that turns its comparisons into a verdict (shown in the report beside every verdict).

Kept apart from `claims` so that the wording can be read and edited without the logic; the rules
must describe what `claims` computes (its tests check the verdicts, this file the words).
"""

from __future__ import annotations

import math

from ..analysis.bootstrap import N_BOOT
from ..analysis.paired import MIN_SEEDS

TEXT: dict[str, tuple[str, str, str, str]] = {
    "PC": (
        "Positive control: can this testbed detect a prior's effect?",
        "A prior that knows the downstream task (the oracle prior: SWAG on labelled images of "
        "the downstream classes that no training, validation or test image comes from) beats "
        "the tuned zero-mean prior with SGD at the control's training size.",
        "Not a claim of the paper: a check of this study's testbed. If even the oracle prior "
        "cannot be told from the zero-mean prior, the verdicts about learned priors cannot "
        "show an effect either.",
        "Harvey et al. (TMLR 2024) found an isotropic prior at the same centre competitive "
        "with the learned one, so the oracle vs isotropic comparison is shown as evidence "
        "only.",
    ),
    "PC2": (
        "Covariance control: can this testbed detect a covariance's effect?",
        "A prior whose covariance knows the downstream task (the task-shaped prior: the "
        "isotropic prior's mean, the SimCLR weights, and its total variance, part of it along "
        "the directions fine-tuning those weights takes on labelled downstream-class images "
        "that no training, validation or test image comes from) beats the isotropic prior with "
        "SGD at the control's training size, both tuned over the same variances.",
        "Not a claim of the paper: a check of this study's testbed. PC shows that a prior's "
        "mean can matter here; PC2 shows whether a covariance can. If it cannot, the verdicts "
        "about the learned covariance (C1, H1) cannot show an effect either.",
        "Harvey et al. (TMLR 2024) found no gain from the learned covariance over an "
        "isotropic prior at the same centre; no study has shown a covariance that could help.",
    ),
    "C1": (
        "Rank of the low-rank covariance",
        "Increasing the rank of the learned prior's low-rank covariance from zero improves "
        "performance until it saturates at a small rank.",
        "On CIFAR-10 performance improved as the rank grew from zero and saturated at a "
        "relatively small rank.",
        "On Flowers-102 (SimCLR prior, scale 1e5, ranks 0-5) the rank had no visible effect "
        "(test error flat at about 14.5-15.5%).",
    ),
    "C2": (
        "Rescaling the prior",
        "An un-rescaled prior performs worse; a more diffuse prior (larger scale) improves "
        "performance up to an optimum, and very large scales (near-uniform prior) hurt again.",
        "On CIFAR-10 an un-rescaled prior could be worse than no prior; performance rose with "
        "the scale up to a point and fell again as the prior approached uniform.",
        "Confirmed that the un-rescaled prior hurts and that larger scales help (SimCLR 1e2-1e5, "
        "torchvision 1e4-1e8), but found no fall in performance up to scale 1e9.",
    ),
    "C3": (
        "Modified loss surface",
        "Putting the learned prior into the downstream loss (SGD + learned prior) beats "
        "standard SGD fine-tuning (SGD with a zero-mean prior, i.e. tuned weight decay) at "
        "every training size.",
        "SGD with the learned prior beat SGD with a non-learned prior at every CIFAR-10 size "
        "(e.g. 26.8% vs 36.8% test error at n=1k).",
        "Confirmed on Flowers-102: learned-prior models beat non-learned-prior models, most at "
        "moderate training sizes.",
    ),
    "C4": (
        "Bayesian boost over SGD",
        "Bayesian inference (SG-MCMC with model averaging) with the learned prior beats SGD "
        "with the same learned prior at every training size.",
        "Bayesian inference with the learned prior had the lowest CIFAR-10 error at every size "
        "(e.g. 21.6% vs 26.8% for SGD + learned prior at n=1k).",
        "Found the claim ambiguous; read as Bayes vs SGD it held only on small Flowers-102 "
        "subsets, with SGD equal or better on larger ones (their Bayes runs had no BMA).",
    ),
    "C4b": (
        "Bayesian boost larger with the learned prior",
        "The gain of Bayesian inference over SGD is larger with the learned prior than with "
        "the non-learned zero-mean prior.",
        "The paper says Bayesian learning gives a particular boost with informative priors, "
        "without naming the comparison.",
        "Read as learned vs non-learned prior the reproduction fully confirmed a substantial "
        "gain, largest at moderate sizes; the interaction itself was not tested.",
    ),
    "C4p": (
        "Bayesian model averaging with a posterior that converged",
        "On a subspace the sampler can sample exactly (the head on the pretrained features), "
        "the Bayes posterior's model average beats SGD on the same subspace at every size.",
        "The paper's C4 rests on SG-MCMC samples it does not check for convergence; it reports "
        "no comparison against a posterior known to be sampled correctly.",
        "The reproduction had no model averaging in its Bayesian runs; Harvey et al. (TMLR "
        "2024) found the samplers' gains small and not robust.",
    ),
    "C5": (
        "Data efficiency",
        "The learned prior's gain over the non-learned prior is larger for small downstream "
        "training sets.",
        "On CIFAR-10 the learned-prior gain over the non-learned prior was 8-12 points at "
        "n <= 1k and under 1 point at n >= 10k.",
        "Confirmed: the gap between learned and non-learned priors was larger on smaller "
        "Flowers-102 subsets.",
    ),
    "H1": (
        "Learned vs isotropic prior (Harvey et al.)",
        "The learned low-rank SWAG prior beats an isotropic Gaussian prior centred at the "
        "pretrained weights.",
        "The paper's non-learned baseline was a zero-mean isotropic prior; it did not compare "
        "against an isotropic prior centred at the pretrained weights.",
        "Harvey et al. (TMLR 2024) found the isotropic prior centred at the pretrained weights "
        "competitive with the learned low-rank prior (e.g. Flowers-102 n=1020: 88.6% vs 88.4%).",
    ),
}


ARM_LABELS = {"sgd": "SGD", "sghmc": "SGHMC", "sgld": "SGLD", "ensemble": "T = 0 ensemble",
              "reference": "the reference posterior (HMC, head)", "head_sgd": "SGD (head)",
              "head_sghmc": "the SGHMC recipe (head)",
              "deep_ensemble": "deep ensemble (SGD)",
              "sgd_long": "SGD, the sampler's budget",
              "learned": "learned prior", "probe": "linear probe (frozen backbone)",
              "zero": "zero-mean prior", "isotropic": "isotropic prior",
              "task": "task-shaped prior"}


def scale_label(scale: float) -> str:
    """1e4 rather than 10000 for powers of ten; %g otherwise."""
    power = math.log10(scale) if scale > 0 else math.nan
    return f"1e{int(round(power))}" if abs(power - round(power)) < 1e-9 else f"{scale:g}"


# one colour per verdict word, for badges and figures
VERDICT_COLOURS = {"supported": "#1a7f37", "not supported": "#9a6700", "contradicted": "#cf222e",
                   "inconclusive": "#57606a", "not converged": "#8250df", "not run": "#8c959f"}


VERDICT_RULE = (
    "With [L, U] the interval, e the estimate and m the margin (the smallest effect that "
    "matters), oriented so that positive = the claim's direction: supported if L > 0 and "
    "e >= m; contradicted if U < 0 and e <= -m; not supported if U < m and not contradicted "
    "(no effect that matters is left); inconclusive otherwise, or with fewer than "
    f"{MIN_SEEDS} paired seeds.")


INTERVAL_RULE = (
    "Intervals are e -/+ t(S - 1) SE over the S paired seeds. Where the runs' test predictions "
    "are stored, SE is the two-way bootstrap's (seeds and test images resampled with "
    f"replacement, independently, {N_BOOT} replicates, fixed seed): the spread over seeds plus "
    "the test set's sampling error, the seed x image interaction counted once; else SE = "
    "sd / sqrt(S) over seeds. The p-value is 2 P(T(S - 1) > |e| / SE), so the interval at "
    "level 1 - a excludes 0 exactly when p < a. mde = (t(1 - a/2) + t(0.80)) SE, both with "
    "S - 1 degrees of freedom: the effect detected with about 80 % power at the level the "
    "comparison is judged at. Each verdict also states the seeds its least powered comparison "
    "would have needed for an mde of one margin (1 point of accuracy), from its own SE.")


PARTS_RULE = (
    "A claim of k parts (each judged comparison: a part, a prior source's part, a training "
    "size) judges every part at level 1 - alpha / k, alpha = 1 - the claim's Holm-adjusted "
    "level (Bonferroni within the claim; one interval per part, conservative for 'supported', "
    "which needs every part), and combines them: contradicted if any part is contradicted; "
    "else inconclusive if any part is inconclusive; else supported if all parts are "
    "supported; else not supported.")


PER_SIZE_RULE = (
    "Each training size is evaluated on its own seeds. C4, C4b and H1 are stated at every "
    "training size and are judged size by size (each size a part, all must be supported). C3 "
    "is about scarce data: it is judged at the smallest size, and the other sizes' verdicts "
    "are shown beside it at the same level (they do not enter its verdict).")


COMBINE_RULE = PARTS_RULE + " " + VERDICT_RULE
MARGIN_RULE = VERDICT_RULE


RULE_PC = (
    "Positive control, not a claim of the paper: SGD + oracle prior (`sgd+learned` of the "
    "control experiment) vs SGD + tuned zero-mean prior (`sgd+zero`), paired over the "
    "evaluation seeds at the control's training size, judged at 95 % outside the Holm family "
    "of the eight claims. "
    + VERDICT_RULE + " The oracle vs the tuned isotropic prior at the same centre "
    "(`sgd+isotropic`) is evidence only (Harvey et al. found isotropic priors competitive), "
    "judged at 95 % too. If PC is not supported, C3, C4, C4b, C5 and H1 are marked "
    "uninformative: the testbed could not show even the oracle prior's effect. " + INTERVAL_RULE
)


RULE_PC2 = (
    "Covariance control, not a claim of the paper: SGD + task-shaped prior (`sgd+task` of the "
    "covariance experiment: N(m, v [(1 - share) I + share D F^T F / ||F||^2]) with m the "
    "SimCLR draw's weights and F's rows the directions from m to the snapshots of m "
    "fine-tuned on the downstream rest with labels) vs SGD + isotropic prior N(m, v I), both "
    "tuned over the same variances v and learning rates, paired over the evaluation seeds at "
    "the control's training size, judged at 95 % outside the Holm family. At every v the two "
    "priors share mean and trace: only the shape of the covariance differs. " + VERDICT_RULE +
    " The samplers' pair, where run, is evidence only. If PC2 ran and is not supported, C1 "
    "and H1 (the claims about the learned covariance) are marked uninformative. "
    + INTERVAL_RULE
)


RULE_C1 = (
    "(a) the best rank >= 1 (lowest mean validation NLL; without validation metrics the best "
    "test mean with a Bonferroni-corrected interval over the m ranks >= 1) vs rank 0, paired over "
    "seeds: supported if the verdict rule below says so; contradicted if every rank >= 1 is "
    "contradicted against rank 0; else not supported (or inconclusive). (b) saturation rank = "
    "smallest rank >= 1 not contradicted against the best rank >= 1 (not significantly worse by "
    "at least the margin): supported if <= max(2, max rank / 2), else contradicted ((b) alone is "
    "vacuous when rank has no effect, so the claim also needs (a)). (c) where the rank "
    "experiment also ran at fixed total variance (every rank's diagonal raised to the "
    "full-rank prior's trace), (a) again on those runs, so that a rank effect is not a trace "
    "effect. Ranks keep the top principal directions of the deviations. Where the rank "
    "experiment ran at several scales, the claim is judged where the prior binds (at least 10 % "
    "of the backbone's coordinates bound: prior variance below lr / (cap N), where its "
    "covariance can shape training) and, among those scales, where the learned prior is "
    "strongest (the lowest mean validation NLL of its best rank >= 1); the share of bound "
    "coordinates is reported at each scale. Parts (a), (b), (c) are the claim's k = 2 or 3 parts. "
    + COMBINE_RULE + " " + INTERVAL_RULE
)


RULE_C2 = (
    "Per prior source, under the profile's rescaling convention (rule and eps), paired over "
    "seeds: (a) the best rescaled scale (lowest mean validation NLL, excluding the smallest; "
    "without validation metrics the best test mean, Bonferroni-corrected) vs the smallest scale "
    "(un-rescaled): supported if better; (b) the rise over the sweep: per seed, the "
    "least-squares slope of the metric against log10(scale) from the smallest scale to the best "
    "scale (chosen the same way; the whole sweep if the smallest is best) times the decades "
    "that segment spans, so the margin is read over the sweep, as the claim is worded: "
    "supported if rising; (c) the best scale below the largest "
    "vs the largest scale: supported if it falls at the largest scale, contradicted if the "
    "largest is better (still rising), not supported on a plateau. The claim's parts are the "
    "3 x (prior sources) comparisons of its headline convention. " + COMBINE_RULE +
    " The overall verdict combines the per-source verdicts the same way. The other swept "
    "conventions get the same verdicts in `by_convention`; the from-scratch arm (no "
    "pretraining, no prior), where run, is compared with the un-rescaled prior in `scratch`, "
    "for the paper's remark that an un-rescaled prior can be worse than no prior (evidence "
    "only). The sweep runs no from-scratch arm by default (`experiments.scale.scratch: "
    "false`): the claim does not need it, and 'no prior' is then the largest-scale end of the "
    "sweep (a near-uniform prior), which part (c) compares with the best scale. "
    + INTERVAL_RULE
)


RULE_POOLED = (
    "Paired over the evaluation seeds at each training size (a seed fixes the training subset, "
    "the head's initialisation and the batch order for every arm). Fewer than "
    f"{MIN_SEEDS} seeds or a missing arm: inconclusive. " + PER_SIZE_RULE
    + " " + COMBINE_RULE + " " + INTERVAL_RULE
)


RULE_C3 = ("SGD + learned prior vs SGD + tuned zero-mean prior (standard fine-tuning), "
           "judged where data are scarcest, at the smallest size, as the paper states the "
           "gain; the other sizes' verdicts beside it. " + RULE_POOLED)


CONVERGENCE_RULE = (
    " The claim is judged as the paper's procedure (cyclical SG-MCMC with model averaging at "
    "the profile's temperature, against SGD at an equal gradient budget): its verdict stands "
    "whatever the chains did, and one line beside it says whether they are a converged "
    "posterior: for every sampler arm and size, the rank-normalised split R-hat <= 1.05 and "
    "the bulk ESS >= 100 (Vehtari et al. 2021) over the chains of each run (on every sample's "
    "test log-likelihood and, per test point, its probability of the true class: the 95th "
    "percentile of the R-hats and the median of the ESSs over a fixed subset of test points), "
    "worst over seeds. C4p judges a posterior that converged. Each run's prediction pools its "
    "chains' model averages (burn-in cycles left out)."
)


RULE_C4 = (
    "Bayes + learned prior vs SGD + learned prior, judged size by size (the claim is stated at "
    "every size). Where the profile has the `ensemble+learned` control (the sampler's schedule "
    "and samples at temperature 0: a cyclical snapshot ensemble), the claim also needs the "
    "sampler to beat that ensemble at every size, so that a gain from averaging snapshots is "
    "not read as a Bayesian gain; where it has `sgd_long+learned` (the chosen SGD run trained "
    "for the sampler's total gradient budget, chains x steps), the sampler must beat that too, "
    "so that a gain from more gradient steps is not read as one either: every comparison's "
    "sizes are the claim's parts. " + RULE_POOLED
    + CONVERGENCE_RULE
)


RULE_C4B = (
    "Per seed and size: (Bayes + learned - SGD + learned) - (Bayes + zero - SGD + zero), "
    "oriented so positive = larger Bayesian gain with the learned prior, judged size by size. "
    + RULE_POOLED + CONVERGENCE_RULE
)


RULE_C5 = (
    "For each pair (Bayes: learned vs zero; SGD: learned vs zero, when present): the gain "
    "(learned minus zero, oriented so that positive = better) where data are scarcest (the "
    "smallest size) minus the gain where they are most plentiful (the largest size), each the "
    "mean over that size's own evaluation seeds, so positive = the gain shrinks as n grows, as "
    "the claim is worded; the margin is read on that fall. The two sizes' seeds are treated as "
    "independent: SE = sqrt(SE_small^2 + SE_large^2), the t interval at Welch-Satterthwaite's "
    "degrees of freedom. The gain at each size is shown beside it. Each pair's fall is a part. "
    f"Fewer than {MIN_SEEDS} seeds at a size, fewer than two sizes or a missing arm: "
    "inconclusive. " + COMBINE_RULE + " " + INTERVAL_RULE
)


RULE_H1 = (
    "For each method with both arms (Bayes: learned vs isotropic; SGD: learned vs isotropic), "
    "judged size by size, each pair at each size a part. Fewer than "
    f"{MIN_SEEDS} seeds or no arm pair: inconclusive. "
    + RULE_POOLED
)


HOLM_RULE = (
    "Holm's step-down correction over the eight claims C1-H1 (C4p among them; family-wise "
    "error 5% per metric; "
    "the positive controls PC and PC2 are outside the family, at 95 %): each claim's p-value is "
    "the "
    "smallest alpha at which its verdict is decisive (supported or contradicted) when it is "
    "judged at 1 - alpha and its k parts at 1 - alpha / k (for one comparison its p-value, 1 "
    "when the estimate does not reach the margin; for k parts that must all be supported, k "
    "times the largest part p-value); sorted by p-value, the i-th claim is judged at level "
    "1 - 0.05 / (7 - i + 1) until one fails, and every later claim at that failing level.")


NONLEARNED_TEXT = (
    "C3, C4b and C5 share one non-learned comparison: the zero-mean isotropic prior (the paper's "
    "non-learned prior) with its variance tuned on the validation set like every other arm. "
    "Tuned, it is SGD with tuned weight decay, i.e. standard fine-tuning, so C3 (SGD + learned "
    "prior vs standard SGD) uses it too.")


UNINFORMATIVE_TEXT = (
    "The positive control (PC) is not supported: this testbed did not show that even the "
    "oracle prior beats the tuned zero-mean prior, so it cannot be shown to detect a prior "
    "effect. The verdicts of C3, C4, C4b, C5 and H1 are marked uninformative: read them as "
    "saying nothing about the paper's claims.")


RULE_C4P = (
    "On a subspace that can be sampled exactly, the head on the pretrained backbone's fixed "
    "features (a Bayesian softmax regression with a proper Gaussian prior on every weight and "
    "bias, T = 1), the reference posterior's model average (Metropolis-adjusted HMC, chains "
    "from dispersed starting points) vs SGD on the same loss and subspace, paired over the "
    "evaluation seeds, judged size by size (each size a part). Judged only where the reference "
    "converged: for every size, the 95th percentile over validation points of the "
    "rank-normalised R-hat of their probability of the true class <= 1.01 for every run, and "
    "the Monte Carlo SE of the seed-averaged model-averaged test accuracy (each run's by batch "
    "means over blocks of its chains' draws, combined over seeds as the mean is) below a "
    "quarter of the accuracy margin; otherwise 'not converged', with the numbers. The paper's "
    "SGHMC recipe on the same subspace against the reference is evidence only: whether the "
    "recipe samples the posterior. " + COMBINE_RULE + " " + INTERVAL_RULE)
