"""Tables, figures and report text from small hand-made record lists (no training)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from bprior_core import claims, report, tables  # noqa: E402
from bprior_core.analysis.selection import choose_point, chosen_values  # noqa: E402
from bprior_core.claims import gains_by_size  # noqa: E402
from bprior_core.config import Profile  # noqa: E402
from bprior_core.formatting import size_label
from bprior_core.report import plots
from bprior_core.vocabulary import VIEWED_EXPERIMENTS

SEEDS = (0, 1, 2)


def rec(experiment: str, arm: str, seed: int, acc: float, *, n_train: int = 10,
        val_nll: float = 1.0, tuned: dict | None = None, prior: dict | None = None,
        temperature: float = 1.0, chain: int = 0, bma: bool = False, **extra) -> dict:
    """One result record in the study's format (test nll = 2 - accuracy)."""
    block = {"accuracy": acc, "nll": 2.0 - acc, "ece": 0.05, "brier": 0.5}
    config = {"experiment": experiment, "arm": arm, "method": arm.split("+")[0],
              "prior": prior or {"kind": "none"}, "n_train": n_train, "seed": seed,
              "chain": chain, "train": {"temperature": temperature}}
    if tuned:
        config.update(tuned={"lr": None, **tuned}, phase="tune")
    return {"id": f"{experiment}-{arm}-{n_train}-{seed}-{chain}-{tuned}", "seed": seed,
            "status": "ok", "config": config,
            "metrics": {"final": block, "bma": dict(block) if bma else None},
            "val_metrics": {"final": {"accuracy": acc, "nll": val_nll}, "bma": None}, **extra}


def with_finals(records: list[dict]) -> list[dict]:
    """The tuning records followed by the final record of each (arm, size, seed) group, as the
    study makes them (`finals.final_runs` chooses, the final run repeats the chosen one)."""
    groups: dict = {}
    for r in records:
        if r["config"].get("phase") == "tune":
            cfg = r["config"]
            groups.setdefault((cfg["experiment"], cfg["arm"], cfg["n_train"], r["seed"]),
                              []).append(r)
    finals = []
    for members in groups.values():
        best, selection = choose_point(members)
        chosen = members[best]
        finals.append({**chosen, "id": chosen["id"] + "-final", "selection": selection,
                       "config": {**chosen["config"], "phase": "final"}})
    return records + finals


def tuned_inference() -> list[dict]:
    """`sgd+zero` and `sgd+learned` with two grid values each; validation picks variance 1.0
    for sgd+zero (test accuracy 0.7) over 0.01 (0.3): pooling would give 50 % error. Tuning
    records and the final records of the chosen points."""
    return with_finals(_tuning_records())


def _tuning_records() -> list[dict]:
    out = []
    for n in (250, 10, 50):
        for s in SEEDS:
            for value, acc, val in ((0.01, 0.3, 2.0), (1.0, 0.7 + 0.01 * s, 1.0)):
                out.append(rec("inference", "sgd+zero", s, acc, n_train=n, val_nll=val,
                               tuned={"parameter": "variance", "value": value},
                               prior={"kind": "zero", "draw": s % 2}))
            for value, acc, val in ((1e3, 0.72 + 0.02 * s, 0.9), (1e6, 0.1, 3.0)):
                out.append(rec("inference", "sgd+learned", s, acc, n_train=n, val_nll=val,
                               tuned={"parameter": "scale", "value": value},
                               prior={"kind": "learned", "source": "ssl", "scale": value,
                                      "rule": "same", "eps": 0.0, "draw": s % 2}))
    return out


def scale_records() -> list[dict]:
    """Two conventions with identical numbers, and from-scratch runs."""
    out = []
    for rule in ("same", "authors"):
        for scale, acc in ((1.0, 0.5), (1e3, 0.6)):
            prior = {"kind": "learned", "source": "ssl", "scale": scale, "rule": rule,
                     "eps": 0.0, "rank": 3}
            out += [rec("scale", f"ssl@{scale:g} ({rule}, eps 0)", s, acc + 0.01 * s,
                        prior=prior) for s in SEEDS]
    out += [rec("scale", "scratch", s, 0.4, prior={"kind": "none", "source": "supervised"},
                init="scratch") for s in SEEDS]
    return out


# ----------------------------------------------------------------------------- views


def test_inference_view_shows_the_validation_choice_not_the_pool():
    view = tables.experiment_view(tuned_inference(), "inference")
    table = view.table()
    row = table[(table["arm"] == "sgd+zero") & (table["n_train"] == "10")].iloc[0]
    # selected runs: accuracy 0.70, 0.71, 0.72 -> error 29.00 ± 0.58; the pool would say 49.5
    assert row["test error %"] == "29.00 ± 0.58"
    assert row["seeds"] == 3
    learned = table[(table["arm"] == "sgd+learned") & (table["n_train"] == "10")].iloc[0]
    assert learned["test error %"].startswith("26.00")
    assert list(table["n_train"][table["arm"] == "sgd+zero"]) == ["10", "50", "250"]


def test_sizes_sort_as_numbers_with_the_full_set_last():
    records = [rec("inference", "sgd", s, 0.5, n_train=n) for n in (250, 0, 10, 50)
               for s in SEEDS]
    view = tables.experiment_view(records, "inference")
    assert list(view.table()["n_train"]) == ["10", "50", "250", "full"]
    assert [label for label, _ in view.options()["n_train"]] == ["10", "50", "250", "full"]


def test_scale_view_keeps_conventions_apart_and_scratch_as_its_baseline():
    view = tables.experiment_view(scale_records(), "scale")
    table = view.table()
    assert len(table) == 4 and set(table["rule"]) == {"same", "authors"}
    assert "scratch" not in set(view.runs["arm"]) and not table["scale"].isin(["nan"]).any()
    base = view.baseline_table()
    assert list(base["arm"]) == [tables.SCRATCH_LABEL] and base["test error %"][0].startswith(
        "60.00")
    assert set(view.options()) == {"prior_source", "convention"}


def test_rank_view_keeps_trace_variants_apart():
    records = []
    for trace, acc in (("scaled", 0.6), ("fixed", 0.4)):
        for rank in (0, 2):
            prior = {"kind": "learned", "rank": rank, "trace": trace, "rule": "same", "eps": 0}
            records += [rec("rank", f"rank={rank}", s, acc, prior=prior) for s in SEEDS]
    table = tables.experiment_view(records, "rank").table()
    assert len(table) == 4
    assert set(table[table["trace"] == "fixed"]["test error %"]) == {"60.00 ± 0.00"}


def test_filtered_view_keeps_the_numbers_and_rejects_unknown_filters():
    view = tables.experiment_view(tuned_inference(), "inference")
    one = view.filtered({"arm": ["sgd+zero"], "n_train": [10]}).table()
    full = view.table()
    assert len(one) == 1
    assert one.iloc[0].equals(full[(full["arm"] == "sgd+zero") & (full["n_train"] == "10")]
                              .iloc[0])
    with pytest.raises(ValueError, match="no filter 'scale'"):
        view.filtered({"scale": [1.0]})
    with pytest.raises(ValueError, match="unknown experiment"):
        tables.experiment_view([], "nope")


# ----------------------------------------------------------------------------- gains etc.


def test_paired_gains_are_baseline_minus_arm_with_a_t_interval():
    view = tables.experiment_view(tuned_inference(), "inference")
    gains = tables.paired_gains(view.runs, metrics=("error_pct",))
    row = gains[(gains["arm"] == "sgd+learned") & (gains["n_train"] == 10)].iloc[0]
    # per seed: error(sgd+zero) - error(sgd+learned) = 100 * (0.72 + 0.02 s - 0.70 - 0.01 s)
    diffs = [100 * (0.02 + 0.01 * s) for s in SEEDS]
    mean, se = sum(diffs) / 3, stats.sem(diffs)
    half = stats.t.ppf(0.975, 2) * se
    assert row["gain"] == pytest.approx(mean)
    assert row["ci_low"] == pytest.approx(mean - half) and row["ci_high"] == pytest.approx(
        mean + half)
    assert row["n_seeds"] == 3 and row["level"] == 0.95
    assert "sgd+zero" not in set(gains["arm"])
    assert tables.paired_gains(view.runs, baseline="sgd").empty


def test_temperature_summary_is_numeric_with_rhat():
    records = []
    for t in (1.0, 0.0, 1e-3):
        for chain in range(2):
            nll = [1.0 + 0.1 * chain + 0.01 * i for i in range(4)]
            records.append(rec("temperature", f"T={t:g}", 0, 0.5 + t / 10, temperature=t,
                               chain=chain, diagnostics={"sample_test_nll": nll}, bma=True))
    summary = tables.temperature_summary(records)
    assert list(summary["temperature"]) == [0.0, 1e-3, 1.0]
    assert summary["error_pct"].iloc[-1] == pytest.approx(40.0)
    assert summary["rhat"].notna().all() and (summary["rhat"] > 1).all()
    assert tables.temperature_summary([]).empty


def test_reliability_bins_are_pooled_by_count_and_absent_bins_skip():
    def with_bins(seed, conf, acc, count):
        r = rec("inference", "sgd", seed, 0.5)
        r["reliability"] = {"final": {"confidence": conf, "accuracy": acc, "count": count},
                            "bma": None}
        return r

    records = [with_bins(0, [0.1, None, 0.9], [0.0, None, 1.0], [10, 0, 30]),
               with_bins(1, [0.3, None, 0.7], [1.0, None, 0.5], [30, 0, 10]),
               rec("inference", "sgd", 2, 0.5)]
    bins = tables.reliability_bins(records)
    assert list(bins["bin"]) == [0, 2] and list(bins["count"]) == [40, 40]
    assert bins["confidence"].iloc[0] == pytest.approx((0.1 * 10 + 0.3 * 30) / 40)
    assert bins["accuracy"].iloc[1] == pytest.approx((1.0 * 30 + 0.5 * 10) / 40)
    assert tables.reliability_bins(records[2:]).empty
    fig = plots.reliability_figure(bins)
    assert fig is not None and plots.reliability_figure(tables.reliability_bins([])) is None
    plt.close("all")


def test_per_draw_frame_needs_two_draws():
    view = tables.experiment_view(tuned_inference(), "inference")
    draws = tables.per_draw_frame(view.runs)
    row = draws[(draws["arm"] == "sgd+learned") & (draws["n_train"] == 10)]
    # seeds 0 and 2 use draw 0, seed 1 draw 1
    assert dict(zip(row["draw"], row["error_pct"], strict=True)) == pytest.approx(
        {0: 100 * (1 - (0.72 + 0.76) / 2), 1: 100 * (1 - 0.74)})
    one_draw = view.runs.assign(draw=0)
    assert tables.per_draw_frame(one_draw).empty


def test_chosen_values_table_sorts_numbers_and_has_no_stray_header():
    selected = tables.experiment_view(tuned_inference(), "inference").records
    rows = chosen_values(selected) + [{"arm": "sgd", "n_train": 0, "parameter": "weight_decay",
                                       "value": 0.1, "runs": 1}]
    table = tables.chosen_values_table(rows)
    zero = table[table["arm"] == "sgd+zero"]
    assert list(zero["n_train"]) == ["10", "50", "250"]
    assert table.columns.name is None and list(table.columns[3:]) == ["0.1", "1", "1000"]
    assert "<th>value</th>" not in tables.to_html(table)
    assert list(table[table["arm"] == "sgd"]["n_train"]) == ["full"]


# ----------------------------------------------------------------------------- claims text


def fake_claims() -> list[dict]:
    level = 1 - 0.05 / 7
    row = {"n_train": 10, "effect": 0.02, "ci_low": -0.01, "ci_high": 0.05, "n_seeds": 3,
           "level": level, "verdict": "inconclusive", "margin": 0.01, "se": 0.01}
    pair = {"effect": 0.02, "se": 0.01, "ci_low": -0.01, "ci_high": 0.05, "n_seeds": 3,
            "level": level, "margin": 0.01}
    holm = {"p_value": 0.3, "level": level}
    return [
        {"id": "C4b", "verdict": "inconclusive", "title": "t", "summary": "s", "rule": "r",
         "evidence": {"metric": "accuracy", **pair, "holm": holm, "per_size": [row],
                      "arms": ["sghmc+learned", "sgd+learned", "sghmc+zero", "sgd+zero"]}},
        {"id": "C3", "verdict": "inconclusive", "title": "t", "summary": "s", "rule": "r",
         "evidence": {"metric": "accuracy", **pair, "holm": holm, "per_size": [row],
                      "arms": ["sgd+learned", "sgd+zero"],
                      "by_metric": {"nll": {"verdict": "supported", "effect": 0.1,
                                            "ci_low": 0.05, "ci_high": 0.15, "margin": 0.02,
                                            "holm": holm, "summary": "<b>x</b>"}}}},
        {"id": "C5", "verdict": "inconclusive", "title": "t", "summary": "s", "rule": "r",
         "evidence": {"metric": "accuracy", **pair, "holm": holm, "parts": [
             {"arms": ["sghmc+learned", "sghmc+zero"], "gain_per_size": [row],
              "comparison": {**pair, "verdict": "inconclusive"}, "verdict": "inconclusive"}]}},
    ]


def test_gains_by_size_carries_the_level_and_labels_c4b_as_its_interaction():
    rows = gains_by_size(fake_claims())
    c4b = [r for r in rows if r["claim"] == "C4b"]
    assert c4b and c4b[0]["comparison"] == ("SGHMC vs SGD gain: with the learned prior minus "
                                            "with the zero-mean prior")
    assert all(r["level"] == pytest.approx(1 - 0.05 / 7) for r in rows)
    assert [r["claim"] for r in rows] == ["C4b", "C3", "C5"]
    table = tables.gains_table(rows)
    assert set(table["level"]) == {"99.29 %"} and table["effect (points)"][0] == "+2.0"
    fig = plots.gains_by_size(rows)
    assert "99.29 % interval" in fig.axes[0].get_legend().get_texts()[0].get_text()
    plt.close(fig)


def test_gains_by_size_on_real_claims_has_every_claims_level():
    from test_claims import world  # the claims tests' synthetic study

    verdicts = claims.evaluate_claims(world(1.0))
    # each size's row at the level its comparisons are judged at: the claim's Holm level
    # divided over its parts (one interval per effect)
    levels = {c["id"]: c["evidence"]["part_level"] for c in verdicts}
    rows = gains_by_size(verdicts)
    assert {r["claim"] for r in rows} >= {"C3", "C4b", "C5"}
    for r in rows:
        assert r["level"] == pytest.approx(levels[r["claim"]])


def test_evidence_html_is_tables_with_levels_and_escapes_text():
    page = report.evidence_html(fake_claims())
    assert page.count('class="bprior-table evidence"') >= 4
    assert "99.29 %" in page and "+2.00" in page and "-1.00 .. +5.00" in page
    assert "gain at n = 10" in page and "at n = 10" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert page.index("<details>") > page.index("<table")  # the raw JSON comes last, collapsed


def test_evidence_html_for_c1_and_c2_shapes():
    level = 0.99
    comp = {"effect": 0.1, "se": 0.01, "ci_low": 0.05, "ci_high": 0.15, "n_seeds": 3,
            "level": level, "margin": 0.01, "verdict": "supported"}
    c1 = {"id": "C1", "verdict": "supported", "evidence": {
        "metric": "accuracy", "holm": {"level": level}, "parts": {
            "a": {"verdict": "supported", "best_rank": 2, "chosen_on": "validation",
                  "per_rank": [{"rank": 2, **comp}]},
            "b": {"verdict": "supported", "saturation_rank": None, "small_threshold": 2.0,
                  "per_rank": []}}}}
    c2 = {"id": "C2", "verdict": "supported", "evidence": {
        "metric": "accuracy", "holm": {"level": level}, "convention": "same, eps 0",
        "by_convention": {
            "authors, eps 0": {"verdict": "supported", "sources": {}},
            "same, eps 0": {"verdict": "supported", "sources": {"<ssl>": {
                "verdict": "supported", "a": {"best_scale": 1e3, "vs_scale": 1.0, **comp},
                "b": {"segment": [1.0, 1e3], "best_scale": 1e3, **comp},
                "c": {"best_scale": 1e3, "vs_scale": 1e6, **comp}, "scratch": comp}}}}}}
    page = report.evidence_html([c1, c2])
    assert "rank 2 vs rank 0 (best, chosen on validation)" in page
    assert "saturation rank undetermined" in page
    assert page.index("same, eps 0 (headline)") < page.index("convention authors")
    assert "&lt;ssl&gt; (a) best 1000 vs un-rescaled 1" in page and "<ssl>" not in page
    assert "un-rescaled vs from scratch" in page


def test_page_lines_format_counts_and_say_where_results_were_looked_for(tmp_path):
    text = report.sweep_html({"planned": 18, "skipped": 18, "ran": 0, "diverged": 0,
                              "wall_time_s": 0.0}, "rank")
    assert text == ("<p>18 runs of the rank experiment planned: 18 read from stored results, "
                    "none trained now.</p>")
    assert "2 trained now (1 diverged) in 3.5 s" in report.sweep_html(
        {"planned": 2, "skipped": 0, "ran": 2, "diverged": 1, "wall_time_s": 3.5})
    profile = Profile(name="cpu", description="a <b> profile")
    empty = report.results_status_html(profile, tmp_path / "cpu", [], 10, "cpu", tmp_path)
    assert str(tmp_path / "cpu" / "runs") in empty
    assert f"bprior run --profile cpu --outputs {tmp_path}" in empty
    some = report.results_status_html(profile, tmp_path / "cpu", [{}] * 3, 10)
    assert "Read 3 stored runs (of 10 planned)" in some and str(tmp_path / "cpu") in some
    assert "&lt;b&gt;" in report.profile_html(profile)
    assert report.page_title("03_scale", "cpu") == "3. Scale · bprior cpu"


# ----------------------------------------------------------------------------- figures


def test_scale_figure_draws_each_convention_and_the_scratch_band():
    view = tables.experiment_view(scale_records(), "scale")
    fig = plots.experiment_figure(view)
    assert len(fig.axes) == 2  # one source x (error, NLL)
    ax = fig.axes[0]
    assert len(ax.containers) == 2  # one errorbar line per convention
    xs = [c.lines[0].get_xdata()[0] for c in ax.containers]
    assert xs[0] != xs[1], "coinciding conventions are nudged apart"
    styles = {c.lines[0].get_linestyle() for c in ax.containers}
    assert len(styles) == 2
    assert any(line.get_label() == tables.SCRATCH_LABEL for line in ax.get_lines())
    assert len(ax.patches) == 1  # the scratch band
    plt.close(fig)


def test_temperature_positions_put_zero_a_decade_below():
    xs, labels = plots.temperature_positions([0.0, 1e-3, 1.0])
    assert xs == [1e-4, 1e-3, 1.0] and labels == ["0", "0.001", "1"]
    assert plots.temperature_positions([0.0])[0] == [1.0]


@pytest.mark.parametrize("experiment", VIEWED_EXPERIMENTS)
def test_experiment_figure_for_every_experiment(experiment):
    records = tuned_inference() + scale_records() + [
        rec("rank", "rank=0", s, 0.5, prior={"kind": "learned", "rank": 0}) for s in SEEDS] + [
        rec("temperature", "T=0", s, 0.5, temperature=0.0) for s in SEEDS]
    fig = plots.experiment_figure(tables.experiment_view(records, experiment))
    assert fig is not None
    plt.close(fig)
    assert plots.experiment_figure(tables.experiment_view([], experiment)) is None


def test_inference_gains_and_per_draw_figures():
    view = tables.experiment_view(tuned_inference(), "inference")
    fig = plots.inference_gains_figure(tables.paired_gains(view.runs))
    assert [ax.get_title().startswith("gain over") for ax in fig.axes[:2]] == [True, True]
    assert "95 % t interval" in fig.axes[0].get_title()
    plt.close(fig)
    fig = plots.per_draw_figure(tables.per_draw_frame(view.runs))
    assert len(fig.axes) == 3  # sizes 10, 50, 250
    plt.close(fig)
    assert plots.inference_gains_figure(pd.DataFrame()) is None
    assert plots.per_draw_figure(pd.DataFrame()) is None


def test_size_positions_place_the_full_set_beyond_the_largest():
    assert plots.size_positions([10, 0, 50]) == {10: 10.0, 0: 100.0, 50: 50.0}
    assert plots.size_positions([0]) == {0: 1e4}
    assert size_label(0) == "full" and size_label(math.inf) == "full"


def test_reliability_bins_match_the_ece_they_come_from():
    """The engine stores `metrics.reliability_bins`; ECE computed from the bins is `ece`."""
    import torch

    from bprior_core.analysis.metrics import ece, reliability_bins

    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(400, 5, generator=gen), dim=1)
    labels = torch.randint(0, 5, (400,), generator=gen)
    bins = reliability_bins(probs, labels)
    total = sum(bins["count"])
    from_bins = sum(n / total * abs(a - c) for a, c, n in
                    zip(bins["accuracy"], bins["confidence"], bins["count"], strict=True) if n)
    assert total == 400 and from_bins == pytest.approx(ece(probs, labels), abs=1e-12)
    assert all(a is None for a, n in zip(bins["accuracy"], bins["count"], strict=True) if not n)


def test_inference_tables_are_empty_without_the_inference_experiment() -> None:
    """A profile with the inference experiment off (e.g. `cpu-posterior`) renders its report:
    the inference-only tables are empty, not a KeyError."""
    empty = tables.records_frame([])
    assert tables.single_vs_average(empty).empty
    assert tables.per_draw_table(empty).empty
