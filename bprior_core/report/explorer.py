"""The explorer (`notebooks/explore.ipynb`): every experiment's tables and figures over the stored
results, filtered with widgets, the same numbers the report shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import tables
from ..vocabulary import VIEWED_EXPERIMENTS
from .build import PAGE_TITLES
from .markup import _esc

EXPERIMENT_PAGES = {"rank": "02_rank", "scale": "03_scale", "inference": "04_inference",
                    "temperature": "05_temperature"}


class Explorer:
    """The JupyterLab explorer (`notebooks/explore.ipynb`) over a profile's stored records.

    It shows what the report shows: per experiment the view of `tables.experiment_view` (the
    validation-selected run per arm, size and seed; conventions and trace variants apart; the
    from-scratch runs as their own baseline) with its figure and table. An experiment dropdown
    offers the experiments that have runs; only the filters that apply to the chosen one are
    shown (`ExperimentView.options`), and a metric (not for temperature, whose figure shows
    error, NLL and R-hat together). `widget` is what to display."""

    def __init__(self, records: Sequence[Mapping]):
        import ipywidgets as w

        self.views = {e: tables.experiment_view(records, e) for e in VIEWED_EXPERIMENTS}
        names = [e for e, v in self.views.items() if not v.empty]
        self.experiment = w.Dropdown(
            options=names, description="experiment",
            value="inference" if "inference" in names else (names[0] if names else None))
        self.metric = w.Dropdown(options=[(tables.METRIC_LABELS[m], m)
                                          for m in tables.METRIC_LABELS], description="metric")
        self.filters = w.VBox()
        self.out = w.Output()
        self.widget = w.VBox([w.HBox([self.experiment, self.metric]), self.filters, self.out])
        self.experiment.observe(self._rebuild, "value")
        self.metric.observe(self.draw, "value")
        self._rebuild()

    def _rebuild(self, _=None) -> None:
        """New filters for the chosen experiment, all values selected; then draw."""
        import ipywidgets as w

        view = self.views.get(self.experiment.value)
        children = []
        for col, options in (view.options() if view else {}).items():
            box = w.SelectMultiple(options=options, value=tuple(v for _, v in options),
                                   description=tables.FILTER_LABELS.get(col, col),
                                   rows=min(len(options), 8))
            box.column = col
            box.observe(self.draw, "value")
            children.append(box)
        self.filters.children = children
        self.metric.layout.display = "none" if self.experiment.value == "temperature" else None
        self.draw()

    def view(self) -> tables.ExperimentView | None:
        """The chosen experiment's view, restricted to the chosen filter values."""
        view = self.views.get(self.experiment.value)
        if view is None:
            return None
        return view.filtered({box.column: box.value for box in self.filters.children})

    def draw(self, _=None) -> None:
        """The chosen view's figure and table into the output area."""
        from IPython.display import HTML, display

        from . import plots

        view = self.view()
        with self.out:
            self.out.clear_output(wait=True)
            if view is None or view.runs.empty:
                display(HTML("<p>No stored runs for this selection.</p>"))
                return
            self._show(view, [plots.experiment_figure(view, (self.metric.value,)),
                              self._gains_figure(view)])

    def show_static(self) -> None:
        """Every experiment's default view (all filter values, test error) as static outputs:
        what papermill, `bprior render` and a published page show, where widgets do not run."""
        from IPython.display import HTML, display

        from . import plots

        shown = False
        for name, view in self.views.items():
            if view.empty:
                continue
            shown = True
            display(HTML(f"<h3>{_esc(PAGE_TITLES.get(EXPERIMENT_PAGES.get(name), name))}</h3>"))
            self._show(view, [plots.experiment_figure(view, ("error_pct",))])
        if not shown:
            display(HTML("<p>No stored runs to show.</p>"))

    def _show(self, view: tables.ExperimentView, figures: list) -> None:
        """A view's figures (None: none for this view), then its table and its baseline's."""
        import matplotlib.pyplot as plt
        from IPython.display import HTML, display

        for fig in figures:
            if fig is not None:
                display(fig)
                plt.close(fig)
        display(HTML(tables.to_html(self.table(view))))
        if not view.baseline.empty:
            display(HTML(tables.to_html(view.baseline_table())))

    def table(self, view: tables.ExperimentView) -> object:
        """The table the explorer shows for a view: the report's table (temperature: with its
        R-hat and one-sample columns, `tables.temperature_table`)."""
        if view.experiment == "temperature":
            return tables.temperature_table(list(view.records))
        return view.table()

    def _gains_figure(self, view: tables.ExperimentView):
        """Inference only: the chosen arms' paired gains over `sgd+zero` at the chosen sizes
        (the baseline is paired with even when it is not among the chosen arms)."""
        if view.experiment != "inference":
            return None
        from . import plots

        choices = {box.column: box.value for box in self.filters.children}
        sizes = self.views["inference"].filtered({k: v for k, v in choices.items()
                                                  if k == "n_train"})
        gains = tables.paired_gains(sizes.runs, metrics=(self.metric.value,))
        return plots.inference_gains_figure(gains[gains["arm"].isin(view.runs["arm"])])
