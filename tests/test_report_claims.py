"""Tests for the report's claim pages: the positive control first, its warning and the
'uninformative' labels, judged and descriptive rows, standard errors and mde, and the methods
text on verdicts (on the claims tests' synthetic study; nothing is trained)."""

from __future__ import annotations

import re

import pytest
from test_claims import CONTROL_OFFSET, world

from bprior_core import report
from bprior_core.claims import evaluate_claims, evaluate_claims_by_metric
from bprior_core.claims.text import PER_SIZE_RULE, VERDICT_RULE
from bprior_core.config import load_profile


def failed_control() -> list[dict]:
    recs = world(1.0)
    for r in recs:
        if r["config"]["experiment"] == "control" and r["config"]["arm"] == "sgd+learned":
            r["metrics"]["final"]["accuracy"] -= CONTROL_OFFSET["sgd+learned"]
            r["metrics"]["final"]["nll"] += CONTROL_OFFSET["sgd+learned"]
    return recs


def rows(table: str) -> dict[str, str]:
    """The verdict table's rows by claim id."""
    return {m.group(1): m.group(0) for m in re.finditer(r"<tr><td[^>]*><b>([^<]+)</b>.*?</tr>",
                                                         table)}


def test_the_verdict_table_puts_the_control_first_with_mde_and_no_warning_when_it_holds():
    claims = evaluate_claims_by_metric(world(1.0), others=("nll",))
    table = report.verdict_table_html(claims)
    by_id = rows(table)
    assert list(by_id)[0] == "PC" and table.index("<b>PC</b>") < table.index("<b>C1</b>")
    assert "outside the Holm family" in by_id["PC"]
    assert "mde " in by_id["C3"] and "points" in by_id["C3"]
    badge = report.uninformative_badge()
    assert "control-warning" not in table and badge not in table
    assert "<summary><small>the rule</small></summary>" in by_id["C3"]  # one click away
    assert "seeds" in by_id["C3"] and "for an mde of" in by_id["C3"]
    # ECE is flat in this world, so the control fails on ECE: its column says so
    # (in words, not the red badge the accuracy column would carry)
    ece = report.verdict_table_html(evaluate_claims_by_metric(world(1.0), others=("ece",)))
    assert "not supported on ECE: uninformative" in rows(ece)["C3"]
    assert badge not in rows(ece)["C3"] and "control-warning" not in ece


def test_a_failed_control_is_announced_and_labels_the_prior_claims_uninformative():
    claims = evaluate_claims_by_metric(failed_control(), others=("nll",))
    table = report.verdict_table_html(claims)
    assert table.index("The testbed cannot detect a prior effect") < table.index("<table")
    by_id = rows(table)
    badge = report.uninformative_badge()
    for cid in ("C3", "C4", "C4b", "C5", "H1"):
        assert badge in by_id[cid], cid
    for cid in ("PC", "PC2", "C1", "C2"):
        assert badge not in by_id[cid], cid
    first = report.control_html(claims)
    assert first.startswith('<div class="control-warning"') and "<b>PC</b>" in first
    assert "evidence only" in first  # the isotropic comparison
    page = report.evidence_html(claims)
    c3 = page[page.index("<h4>C3"):page.index("<h4>C4:")]
    assert "uninformative" in c3 and "positive control PC" in c3


def test_evidence_shows_judged_rows_with_verdicts_and_descriptive_rows_without():
    recs = world(1.0)
    for r in recs:  # C3 loses on the full set: shown beside its judged size, contradicted
        cfg = r["config"]
        if cfg["experiment"] == "inference" and cfg["arm"] == "sgd+learned" and \
                cfg["n_train"] == 0:
            r["metrics"]["final"]["accuracy"] -= 0.08
    claims = {c["id"]: c for c in evaluate_claims(recs)}
    html = report.claim_evidence_html(claims["C3"])
    assert "SE (seeds / test images)" in html and "<th>mde</th>" in html
    judged = re.findall(r"<b>n = (\w+) \(judged\)</b>.*?</tr>", html)
    assert judged == ["5"]
    full = re.search(r"beside it, at n = full.*?</tr>", html).group(0)
    assert "contradicted" in full
    c4 = report.claim_evidence_html(claims["C4"])
    assert re.findall(r"<b>n = (\w+) \(judged\)</b>", c4)[:3] == ["5", "50", "full"]
    assert "each of its 3 parts at" in c4 and "(Bonferroni)" in c4
    c5 = report.claim_evidence_html(claims["C5"])
    assert "fall over sizes (judged)" in c5 and "gain at n = 5" in c5


def test_methods_state_the_verdict_rule_intervals_and_the_control():
    text = report.methods_markdown(load_profile("smoke"), world(1.0))
    assert VERDICT_RULE in text and PER_SIZE_RULE in text
    assert "two-way bootstrap" in text and "mde" in text
    assert "Positive control (PC)" in text and "uninformative" in text
    assert "Covariance control (PC2)" in text and "linear probe" in text
    assert "tuning seeds 0-2" in text and "evaluation seeds from 100 on" in text


@pytest.mark.parametrize("weight_decay, expected", [
    (1e-4, "variance T / (N x 0.0001) in the sampled posterior (200 at T = 1 and N = 50). "
           "Chains drift"),
    (0.02, "variance T / (N x 0.02) in the sampled posterior (1 at T = 1 and N = 50). "
           "The `ensemble`"),
    (0.0, "no weight decay, so no prior"),
])
def test_methods_state_the_heads_prior_in_the_posterior(weight_decay, expected):
    profile = load_profile("smoke").replace("train.weight_decay", weight_decay)
    assert expected in report.methods_markdown(profile, world(1.0))
