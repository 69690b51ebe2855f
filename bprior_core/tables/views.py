"""One experiment as the report and the explorer show it (`ExperimentView`): its tuned arms
reduced to their validation choice, its rows and columns, its filters."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from ..analysis.selection import select_tuned
from ..formatting import size_label
from ..vocabulary import SHOWN_METRICS, VIEWED_EXPERIMENTS
from .frames import display_table, records_frame, select, summarize


def scale_views(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scale experiment's rows split in two: rescaled-prior runs with a `prior, convention`
    column (e.g. `ssl (same, eps 0)`), and the from-scratch runs."""
    part = select(frame, "scale")
    if part.empty:
        return part, part
    scaled = part[part["arm"] != "scratch"].copy()
    scaled["prior, convention"] = [f"{p} ({r}, eps {e:g})" for p, r, e in
                                   zip(scaled["prior_source"], scaled["rule"], scaled["eps"],
                                       strict=True)]
    return scaled, part[part["arm"] == "scratch"]


# experiment: what the report pages and the explorer both show


SCRATCH_LABEL = "from scratch (no pretraining, SGD, no prior)"


@dataclass(frozen=True)
class ViewSpec:
    """How one experiment is grouped and drawn: the grouping columns (the last is the x axis),
    the columns a reader may filter on, and the axis."""

    keys: tuple[str, ...]
    filters: tuple[str, ...]
    logx: bool
    xlabel: str
    count: str = "seeds"


VIEW_SPECS: dict[str, ViewSpec] = {
    "rank": ViewSpec(("trace", "rank"), ("trace",), False, "rank of F (principal directions)"),
    "scale": ViewSpec(("prior_source", "rule", "eps", "scale"), ("prior_source", "convention"),
                      True, "prior scale"),
    "inference": ViewSpec(("arm", "n_train"), ("arm", "n_train"), True, "training images"),
    "temperature": ViewSpec(("temperature",), (), True, "temperature T", count="runs"),
}


FILTER_LABELS = {"trace": "trace", "prior_source": "prior", "convention": "convention",
                 "arm": "arm", "n_train": "size"}


@dataclass(frozen=True)
class ExperimentView:
    """One experiment's runs as the report shows them: tuned arms reduced to their validation
    choice (`selection.select_tuned`), one row per run (`records_frame`), conventions and
    trace variants kept apart by the grouping keys, the from-scratch runs of the scale
    experiment apart in `baseline`. The report pages and the explorer both build their tables
    and figures from this, so they cannot differ."""

    experiment: str
    runs: pd.DataFrame
    baseline: pd.DataFrame
    records: tuple[dict, ...]

    @property
    def spec(self) -> ViewSpec:
        return VIEW_SPECS[self.experiment]

    @property
    def empty(self) -> bool:
        return self.runs.empty and self.baseline.empty

    def summary(self) -> pd.DataFrame:
        """Mean and standard error over seeds per group (`summarize`), in key order with
        training sizes as numbers (the full set, size 0, last)."""
        if self.runs.empty:
            return pd.DataFrame()
        keys = list(self.spec.keys)
        out = summarize(self.runs, keys)
        return out.sort_values(keys, key=_size_order, kind="stable").reset_index(drop=True)

    def baseline_summary(self) -> pd.DataFrame:
        """The from-scratch runs' mean and standard error (scale only; else empty)."""
        if self.baseline.empty:
            return pd.DataFrame()
        return summarize(self.baseline.assign(arm=SCRATCH_LABEL), ["arm"])

    def table(self, metrics: Sequence[str] = SHOWN_METRICS) -> pd.DataFrame:
        """The experiment's table: `display_table` of `summary` (mean ± se per group)."""
        summary = self.summary()
        if summary.empty:
            return summary
        return display_table(summary, list(self.spec.keys), metrics, self.spec.count)

    def baseline_table(self, metrics: Sequence[str] = SHOWN_METRICS):
        """The from-scratch runs as a one-row table (empty without them)."""
        summary = self.baseline_summary()
        return summary if summary.empty else display_table(summary, ["arm"], metrics)

    def options(self) -> dict[str, list[tuple[str, object]]]:
        """The filters that mean something for this experiment: {column: [(label, value)]}
        over the values present (sizes in numeric order, the full set last)."""
        out = {}
        for col in self.spec.filters:
            values = self.runs[col].dropna().unique().tolist() if col in self.runs else []
            if col == "n_train":
                values = sorted(values, key=lambda n: n or math.inf)
                out[col] = [(size_label(v), v) for v in values]
            else:
                out[col] = [(str(v), v) for v in sorted(values, key=str)]
        return out

    def filtered(self, choices: Mapping[str, Sequence]) -> ExperimentView:
        """The same view restricted to the chosen values of its filter columns (a column not
        in `choices` is not restricted)."""
        runs = self.runs
        for col, values in choices.items():
            if col not in self.spec.filters:
                raise ValueError(f"{self.experiment} has no filter {col!r}; it has "
                                 f"{list(self.spec.filters)}")
            runs = runs[runs[col].isin(list(values))]
        return replace(self, runs=runs)


def _size_order(column: pd.Series) -> pd.Series:
    """A sort key that puts training size 0 (the full set) after every other size."""
    return column.replace(0, math.inf) if column.name == "n_train" else column


def experiment_view(records: Sequence[Mapping], experiment: str) -> ExperimentView:
    """The view of one experiment from the stored records of a profile (all experiments, or
    already one): the validation-selected run per arm, size and seed, as in the claims."""
    if experiment not in VIEW_SPECS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {VIEWED_EXPERIMENTS}")
    chosen = [r for r in select_tuned([r for r in records
                                       if r["config"]["experiment"] == experiment])]
    frame = records_frame(chosen) if chosen else pd.DataFrame()
    baseline = frame.iloc[0:0]
    if len(frame):
        frame["convention"] = [f"{r}, eps {e:g}" if isinstance(r, str) else "-"
                               for r, e in zip(frame["rule"], frame["eps"].fillna(0),
                                               strict=True)]
        if experiment == "scale":
            scratch = frame["arm"] == "scratch"
            frame, baseline = frame[~scratch], frame[scratch]
    return ExperimentView(experiment, frame, baseline, tuple(chosen))
