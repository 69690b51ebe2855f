"""A/A tests of the verdict machinery: simulated studies in which no claim holds, run through
the real bootstrap (`bootstrap.resampled_metric`, `bootstrap.spread`), p-values
(`paired.decisive_p_values`), Holm levels (`paired.holm_levels`), intervals
(`paired.half_width`) and verdicts (`paired.verdicts`), the array forms of what
`paired.one_sample` and `paired.verdict` compute for one comparison (checked against them
here), must give a decisive verdict (supported or contradicted) on at most 5 % of the studies
family-wise.

Each simulated study: S = 5 seeds, one test set of N = 200 images, 7 null claims, each one
accuracy comparison of two arms. Per image a difficulty p_i; per claim, arm, seed a seed effect;
an arm's run on a seed gets image i right with probability p_i (+ the claim's per-image arm
effect +-c_i / 2, + the seed effect). The margin is 1e-9, so only the interval decides (the
real margins only lower the rate). B = 200 replicates: the bootstrap enters through its
standard error only (the p-value is a t tail, not a count of replicates), whose Monte-Carlo
error at B = 200 is about 5 %, so a small B tests the same machinery as the report's 2000.
"""

from __future__ import annotations

import numpy as np
import pytest

from bprior_core.analysis import bootstrap, paired
from bprior_core.analysis.bootstrap import PerPoint, resampled_metric

S, N, B, CLAIMS, STUDIES, BLOCK = 5, 200, 200, 7, 1000, 100
ALPHA = 0.05
MARGIN = 1e-9


def runs(x: np.ndarray) -> list[PerPoint]:
    zeros = np.zeros(x.shape[1])
    return [PerPoint(row, zeros, zeros, zeros.astype(np.int64), zeros, zeros.astype(np.int64))
            for row in x]


def studies(rng: np.random.Generator, k: int, hetero: float, seed_sd: float) -> np.ndarray:
    """(k, CLAIMS, 2, S, N) correctness of the two arms of every claim of k studies, each on
    its own test set shared by its claims; per image the arms differ by c_i ~ N(0, hetero)
    (0 on average over images: a null)."""
    p = rng.uniform(0.3, 0.95, (k, 1, 1, 1, N))
    c = rng.normal(0.0, hetero, (k, CLAIMS, 1, 1, N)) * np.array([0.5, -0.5])[:, None, None]
    seed = rng.normal(0.0, seed_sd, (k, CLAIMS, 2, S, 1))
    return (rng.random((k, CLAIMS, 2, S, N)) < np.clip(p + c + seed, 0, 1)).astype(float)


def paired_values(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed differences of the two arms (k, CLAIMS, S) and their replicates over test
    points (k, CLAIMS, S, B), every run resampled on the same points."""
    reps = resampled_metric(runs(x.reshape(-1, N)), "accuracy", n_boot=B)
    reps = reps.reshape(*x.shape[:-1], B)
    obs = x.mean(axis=-1)
    return obs[:, :, 0] - obs[:, :, 1], reps[:, :, 0] - reps[:, :, 1]


def decisive(d: np.ndarray, se: np.ndarray, holm: bool) -> np.ndarray:
    """Per study, whether any claim is decisive: p-values, Holm levels (or 95 % each),
    intervals and verdicts."""
    effect = d.mean(axis=-1)
    p = paired.decisive_p_values(effect, se, S, MARGIN)
    levels = (np.array([paired.holm_levels(row, ALPHA) for row in p]) if holm
              else np.full(p.shape, 1 - ALPHA))
    half = paired.half_width(se, S - 1, levels)
    found = paired.verdicts(effect, effect - half, effect + half, MARGIN, S)
    return np.isin(found, paired.DECISIVE).any(axis=-1)


def family_wise_rates(hetero: float, seed_sd: float, seed: int) -> dict[str, float]:
    """Fraction of STUDIES simulated studies with any decisive verdict, per procedure."""
    rng = np.random.default_rng(seed)
    hits = {"bootstrap, Holm": 0, "seeds only, Holm": 0, "bootstrap, no correction": 0}
    for _ in range(STUDIES // BLOCK):
        d, reps = paired_values(studies(rng, BLOCK, hetero, seed_sd))
        boot, seeds_only = bootstrap.spread(d, reps).se, bootstrap.seed_se(d)
        hits["bootstrap, Holm"] += int(decisive(d, boot, True).sum())
        hits["seeds only, Holm"] += int(decisive(d, seeds_only, True).sum())
        hits["bootstrap, no correction"] += int(decisive(d, boot, False).sum())
    return {k: v / STUDIES for k, v in hits.items()}


def test_the_array_forms_are_the_scalar_comparison():
    """The vectorised pipeline gives what `paired.paired_difference` and `paired.verdict` give
    for each comparison (replicate vectors as values)."""
    rng = np.random.default_rng(7)
    x = studies(rng, 2, 0.3, 0.02)
    d, reps = paired_values(x)
    se = bootstrap.spread(d, reps).se
    p = paired.decisive_p_values(d.mean(axis=-1), se, S, MARGIN)
    full = resampled_metric(runs(x.reshape(-1, N)), "accuracy", n_boot=B)
    full = full.reshape(*x.shape[:-1], B)
    for i in range(2):
        for j in range(CLAIMS):
            arms = [{s: np.concatenate([[x[i, j, arm, s].mean()], full[i, j, arm, s]])
                     for s in range(S)} for arm in range(2)]
            c = paired.paired_difference(*arms, level=0.99, margin=MARGIN)
            assert c.se == pytest.approx(se[i, j], rel=1e-9)
            assert paired.decisive_p(c) == pytest.approx(p[i, j], rel=1e-9)
            half = paired.half_width(se[i, j], S - 1, 0.99)
            e = d[i, j].mean()
            assert paired.verdict(c) == paired.verdicts(e, e - half, e + half, MARGIN, S)


@pytest.fixture(scope="module")
def identical_arms() -> dict[str, float]:
    return family_wise_rates(hetero=0.0, seed_sd=0.02, seed=2024)


@pytest.fixture(scope="module")
def image_level_null() -> dict[str, float]:
    return family_wise_rates(hetero=0.3, seed_sd=0.005, seed=2025)


def test_identical_arms_give_a_decisive_verdict_on_at_most_5_percent(identical_arms):
    """A/A: two identical arms in every claim, Holm across the 7 claims."""
    assert identical_arms["bootstrap, Holm"] <= ALPHA
    # without Holm the same machinery errs far more often: the check can fail
    assert identical_arms["bootstrap, no correction"] > 2 * ALPHA


def test_a_test_set_effect_is_not_read_as_a_claim(image_level_null):
    """Arms that differ image by image but not on average over images: a finite test set
    shows a difference every seed shares, which t intervals over seeds read as an effect
    (their family-wise rate exceeds 5 %); the bootstrap over test images does not."""
    assert image_level_null["bootstrap, Holm"] <= ALPHA
    assert image_level_null["seeds only, Holm"] > 1.5 * ALPHA


# ----------------------------------------------------------------------------- the fixed protocol
# Under the headline protocol each size has its own evaluation seeds (many where data are
# scarce, few where they are plentiful), C3 is judged at the smallest size alone, C4, C4b and
# H1 size by size (each size a part at alpha / 2), and C5 on the fall of a gain between two
# sizes measured on independent seeds (`paired.difference_of`, Welch's t). An A/A study: every
# per-seed difference is pure noise.

SMALL, LARGE = 30, 8  # evaluation seeds at the two sizes
KINDS = ("smallest", "per size", "per size", "per size", "per size", "fall", "smallest")


def _claim_p(kind: str, rng: np.random.Generator) -> float:
    """The claim's decisive p-value (the smallest alpha at which it is supported or
    contradicted, its k parts at alpha / k), through `paired`'s comparisons."""
    small = paired.one_sample(dict(enumerate(rng.normal(0, 0.045, SMALL))), margin=MARGIN)
    large = paired.one_sample(dict(enumerate(rng.normal(0, 0.004, LARGE))), margin=MARGIN)
    if kind == "smallest":
        return paired.decisive_p(small)
    if kind == "fall":
        return paired.decisive_p(paired.difference_of(small, large, margin=MARGIN))
    parts = [small, large]  # supported needs every part positive; contradicted any negative
    ps = [paired.decisive_p(c) for c in parts]
    candidates = [len(parts) * p for p, c in zip(ps, parts, strict=True) if c.effect < 0]
    if all(c.effect > 0 for c in parts):
        candidates.append(len(parts) * max(ps))
    return min(candidates + [1.0])


def test_the_fixed_protocol_keeps_the_family_wise_rate():
    """1,000 A/A studies of seven claims judged as the fixed protocol judges them: Holm over
    the claims keeps the family-wise rate of a decisive verdict at or below 5 %; judging each
    claim at 95 % alone does not (the check can fail)."""
    rng = np.random.default_rng(2026)
    holm = alone = 0
    for _ in range(STUDIES):
        p = [_claim_p(kind, rng) for kind in KINDS]
        levels = paired.holm_levels(p, ALPHA)
        holm += any(pi < 1 - level for pi, level in zip(p, levels, strict=True))
        alone += any(pi < ALPHA for pi in p)
    assert holm / STUDIES <= ALPHA
    assert alone / STUDIES > 2 * ALPHA


def test_the_fall_between_sizes_is_welch():
    """`paired.difference_of`: SE adds in quadrature, Welch-Satterthwaite's degrees of freedom,
    and its interval covers a true fall of 0 in about 95 % of simulated studies."""
    a = paired.one_sample({0: 0.1, 1: 0.3, 2: 0.2, 3: 0.25})
    b = paired.one_sample({0: 0.01, 1: 0.03, 2: 0.02})
    d = paired.difference_of(a, b)
    assert d.effect == pytest.approx(a.effect - b.effect)
    assert d.se == pytest.approx(np.hypot(a.se, b.se))
    va, vb = a.se ** 2, b.se ** 2
    assert d.df == pytest.approx((va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2))
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(2000):
        x = paired.one_sample(dict(enumerate(rng.normal(0.02, 0.05, 30))))
        y = paired.one_sample(dict(enumerate(rng.normal(0.02, 0.004, 8))))
        d = paired.difference_of(x, y)
        covered += d.ci_low <= 0 <= d.ci_high
    assert 0.93 <= covered / 2000 <= 0.97
