"""The JupyterLab explorer shows the report's numbers: the same selection, the same tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from test_tables import SEEDS, rec, scale_records, tuned_inference  # noqa: E402

from bprior_core import report, tables  # noqa: E402
from bprior_core.vocabulary import VIEWED_EXPERIMENTS

pytest.importorskip("ipywidgets")


def study_records() -> list[dict]:
    """Every experiment: tuned inference arms, two scale conventions with from-scratch runs,
    two rank trace variants, two temperatures with two chains."""
    records = tuned_inference() + scale_records()
    for trace in ("scaled", "fixed"):
        records += [rec("rank", f"rank={r}", s, 0.5 + 0.1 * r,
                        prior={"kind": "learned", "rank": r, "trace": trace}) for r in (0, 1)
                    for s in SEEDS]
    records += [rec("temperature", f"T={t:g}", 0, 0.6 - t, temperature=t, chain=c, bma=True)
                for t in (0.0, 0.1) for c in (0, 1)]
    return records


def report_table(records: list[dict], experiment: str):
    """What the report pages display for an experiment (notebooks 02-06)."""
    if experiment == "temperature":
        return tables.temperature_table(records)
    return tables.experiment_view(records, experiment).table()


@pytest.fixture
def explorer():
    return report.Explorer(study_records())


@pytest.mark.parametrize("experiment", VIEWED_EXPERIMENTS)
def test_explorer_table_equals_the_report_table(explorer, experiment):
    explorer.experiment.value = experiment
    shown = explorer.table(explorer.view())
    expected = report_table(study_records(), experiment)
    assert len(shown) and shown.equals(expected)


def test_explorer_numbers_are_the_selected_runs(explorer):
    """The numbers themselves (not only agreement): sgd+zero at n = 10 is the validation
    choice (accuracy 0.70-0.72), not the pool of both grid values (about 50 % error)."""
    table = explorer.table(explorer.view())
    row = table[(table["arm"] == "sgd+zero") & (table["n_train"] == "10")].iloc[0]
    assert row["test error %"] == "29.00 ± 0.58" and row["seeds"] == len(SEEDS)


def test_widgets_apply_to_the_chosen_experiment(explorer):
    def filters():
        return [(box.description, [label for label, _ in box.options])
                for box in explorer.filters.children]

    assert explorer.experiment.value == "inference"
    assert filters() == [("arm", ["sgd+learned", "sgd+zero"]), ("size", ["10", "50", "250"])]
    explorer.experiment.value = "scale"
    assert filters() == [("prior", ["ssl"]), ("convention", ["authors, eps 0", "same, eps 0"])]
    explorer.experiment.value = "rank"
    assert filters() == [("trace", ["fixed", "scaled"])]
    explorer.experiment.value = "temperature"
    assert filters() == [] and explorer.metric.layout.display == "none"
    explorer.experiment.value = "inference"
    assert explorer.metric.layout.display is None
    assert list(explorer.experiment.options) == list(VIEWED_EXPERIMENTS)


def test_filters_restrict_rows_without_changing_numbers(explorer):
    full = explorer.table(explorer.view())
    arms, sizes = explorer.filters.children
    arms.value = ("sgd+learned",)
    sizes.value = (50,)
    shown = explorer.table(explorer.view())
    assert list(shown["arm"]) == ["sgd+learned"] and list(shown["n_train"]) == ["50"]
    assert shown.iloc[0].equals(full[(full["arm"] == "sgd+learned")
                                     & (full["n_train"] == "50")].iloc[0])


def test_scratch_runs_are_a_labelled_baseline_not_a_prior(explorer):
    explorer.experiment.value = "scale"
    view = explorer.view()
    assert "scratch" not in set(view.runs["arm"])
    assert list(view.baseline_table()["arm"]) == [tables.SCRATCH_LABEL]


def test_explorer_without_records_says_so():
    empty = report.Explorer([])
    assert list(empty.experiment.options) == [] and empty.view() is None
