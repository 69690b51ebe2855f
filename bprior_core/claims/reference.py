"""C4p: the samplers against the reference posterior of the head, gated on the reference's
convergence."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.chains import REFERENCE_RHAT_MAX
from ..formatting import size_key, size_label
from ..vocabulary import REFERENCE_ID
from .judging import ACCEPT_RANGE, JUDGED_AT, MARGINS, Judgement, _claim, _missing, judged
from .pairs import (
    _describe,
    _diverged,
    _judge_all,
    _pair_evidence,
    _pair_summary,
    _pair_terms,
    _sized_table,
)
from .text import RULE_C4P


@judged
def claim_reference(records: Sequence[Mapping[str, Any]], j: Judgement) -> dict:
    """C4p: on a subspace sampled exactly (the head on fixed features, `reference`), the
    reference posterior's model average beats SGD on the same subspace, size by size; judged
    only where the reference converged (`_gate_reference`). The paper's SGHMC recipe on the
    same subspace against the reference is evidence only (does the recipe sample it?)."""
    metric, hib = j.metric, j.higher_is_better
    table, div = _sized_table(records, "reference", metric)
    if not table:
        return _missing(REFERENCE_ID, "reference", metric, sum(div.values()), RULE_C4P)
    pairs = [("reference", "head_sgd"), ("head_sghmc", "reference")]
    roles = ["claim", "evidence only: the recipe against the posterior"]
    described = [_describe(j, [a, b], _pair_terms(hib, table.get(a, {}), table.get(b, {})),
                           JUDGED_AT[REFERENCE_ID], role)
                 for (a, b), role in zip(pairs, roles, strict=True)]
    parts, k = _judge_all(j, described, counted=[True, False])
    parts[1]["role"] = "evidence only"
    evidence = _pair_evidence(j, parts, _diverged(div, [a for p in pairs for a in p]), k,
                              counted=[True, False])
    summary = "; ".join(_pair_summary(p, metric) for p in parts) + "."
    claim = _claim(REFERENCE_ID, parts[0]["verdict"], RULE_C4P, evidence, summary)
    return _gate_reference(claim, records)


def _gate_reference(claim: dict, records: Sequence[Mapping[str, Any]]) -> dict:
    """C4p judged only where the T = 1 reference runs of every size converged: for every run
    the 95th percentile over validation points of their R-hat <= REFERENCE_RHAT_MAX, and the
    Monte Carlo SE of the seed-averaged model-averaged test accuracy (sqrt of the sum of the
    runs' squared MC SEs over their number: the MC error of the averaged metric the claim
    reads) below a quarter of the accuracy margin; otherwise `not converged`, with the numbers
    (in `evidence["reference"]` always)."""
    rows: dict[int, dict] = {}
    for r in records:
        cfg = r.get("config") or {}
        diag = (r.get("diagnostics") or {}).get("reference")
        if cfg.get("experiment") != "reference" or cfg.get("arm") != "reference" or not diag:
            continue
        row = rows.setdefault(int(cfg.get("n_train") or 0), {
            "n_train": cfg.get("n_train"), "rhat": 0.0, "mc_se": 0.0, "mc_var": 0.0,
            "ess": math.inf, "accept_min": 1.0, "accept_max": 0.0, "divergent": 0, "runs": 0})
        row["rhat"] = max(row["rhat"], diag["rhat_val_q95"])
        row["mc_var"] += diag["mc_se_accuracy"] ** 2
        row["ess"] = min(row["ess"], diag["ess_val_median"])
        row["accept_min"] = min(row["accept_min"], min(diag["accept_rate"]))
        row["accept_max"] = max(row["accept_max"], max(diag["accept_rate"]))
        row["divergent"] += diag["divergent"]
        row["runs"] += 1
    for row in rows.values():
        row["mc_se"] = math.sqrt(row.pop("mc_var")) / row["runs"]
    table = [rows[n] for n in sorted(rows, key=size_key)]
    claim["evidence"]["reference"] = table
    limit = MARGINS["accuracy"] / 4
    low, high = ACCEPT_RANGE
    failing = [r for r in table if r["rhat"] > REFERENCE_RHAT_MAX or r["mc_se"] >= limit
               or not low < r["accept_min"] <= r["accept_max"] < high]
    if failing:
        worst = ", ".join(f"n = {size_label(r['n_train'])}: R-hat {r['rhat']:.3f}, MC SE "
                          f"{100 * r['mc_se']:.2f} points, accept rates "
                          f"{r['accept_min']:.2f}-{r['accept_max']:.2f}" for r in failing)
        claim["verdict"] = "not converged"
        claim["summary"] = (f"Not converged (the reference needs R-hat <= {REFERENCE_RHAT_MAX} on "
                            f"validation points, a Monte Carlo SE of its seed-averaged "
                            f"accuracy below {100 * limit:.2f} points and every chain's accept "
                            f"rate within ({low:g}, {high:g}); {worst}). Had it converged: "
                            + claim["summary"])
    return claim
