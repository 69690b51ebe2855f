"""Verdicts on the paper's claims, computed from the study's result records.

`registry.CLAIMS` lists every claim once (id, judge, control or family, gated by which
control). One module per claim or group of claims (`rank` C1, `scale` C2, `inference` C3 C4
C4b C5 H1, `controls` PC PC2, `reference` C4p) on shared parts (`judging`, `pairs`);
`evaluate` is the one path that judges them all; `summary` reads them for figures.

Every comparison is paired over seeds (`paired`): the same seed draws the same training subset
in every arm, so two arms are compared on the seeds present (status "ok") in both, oriented so
that positive means the claim's direction. Where the runs' test predictions are given
(`predictions=`), every interval also carries the test set's sampling error (the two-way
bootstrap over seeds and test points, `bootstrap`); else it is a t interval over seeds.

Each metric has a `margin`, the smallest effect that matters (`MARGINS`, or the profile's
`claims.margins`). The eight claims of `FAMILY_IDS` are judged at their Holm-adjusted level
over the eight; a claim of k parts judges each part at 1 - alpha_claim / k (Bonferroni), and
claims stated "at every size" (C3, C4), or whose per-size effects point in opposite directions
by at least the margin, are judged size by size (each size a part). The positive control `PC`
(the oracle prior against the tuned zero-mean prior, `experiment: control`) is a check of the
testbed, not a claim of the paper: it is judged first, at 95 %, outside the Holm family, and
when it is not supported the claims about a prior's effect (`NEEDS_CONTROL`) are marked
`evidence["uninformative"]`. The verdict words and the combination rule are `paired.verdict`
and `paired.combine`; the prose of each claim and rule lives in `claims.text`.

The headline prediction of a run is its Bayesian model average when present, else its final
iterate (`records`). Diverged runs count as missing and are reported as `n_diverged` in each
claim's evidence. Training size 0 in a config means "the full training set" and sorts as the
largest size.
"""

from ..analysis.paired import MIN_SEEDS, VERDICTS
from ..vocabulary import CLAIM_IDS, CONTROL_ID, COVARIANCE_ID
from .evaluate import claim_p_value, evaluate_claims, evaluate_claims_by_metric, write_claims_json
from .judging import MARGINS, METRICS, collect, comparison_label, headline, with_replicates
from .registry import CLAIMS, FAMILY_IDS, NEEDS_CONTROL, NEEDS_COVARIANCE, ClaimSpec
from .summary import forest_rows, gains_by_size

__all__ = ["CLAIMS", "CLAIM_IDS", "CONTROL_ID", "COVARIANCE_ID", "FAMILY_IDS", "MARGINS",
           "METRICS", "MIN_SEEDS", "NEEDS_CONTROL", "NEEDS_COVARIANCE", "VERDICTS", "ClaimSpec",
           "claim_p_value", "collect", "comparison_label", "evaluate_claims",
           "evaluate_claims_by_metric", "forest_rows", "gains_by_size", "headline",
           "with_replicates", "write_claims_json"]
