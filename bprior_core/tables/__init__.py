"""Result records -> tidy tables: one row per run, and mean +- standard error per group.

`frames` builds and formats the data frame of records, `views` one experiment as the pages show
it, `gains` paired gains and reliability bins, `convergence` the samplers' chains, temperature
and the reference posterior.
"""

from ..formatting import format_level, format_mean_se, size_label
from .convergence import (
    convergence_table,
    recipe_agreement,
    reference_diagnostics,
    reference_table,
    reference_temperature_summary,
    temperature_summary,
    temperature_table,
    too_short_text,
)
from .frames import (
    METRIC_LABELS,
    chosen_values_table,
    diagnostics_table,
    display_table,
    per_draw_table,
    records_frame,
    select,
    settings_table,
    single_vs_average,
    summarize,
    to_html,
)
from .gains import gains_table, paired_gains, per_draw_frame, protocol_table, reliability_bins
from .views import FILTER_LABELS, SCRATCH_LABEL, ExperimentView, experiment_view, scale_views

__all__ = [
    "ExperimentView", "FILTER_LABELS", "METRIC_LABELS", "SCRATCH_LABEL", "chosen_values_table",
    "convergence_table", "diagnostics_table", "display_table", "experiment_view", "format_level",
    "format_mean_se", "gains_table", "paired_gains", "per_draw_frame", "per_draw_table",
    "protocol_table", "recipe_agreement", "records_frame", "reference_diagnostics",
    "reference_table", "reference_temperature_summary", "reliability_bins", "scale_views",
    "select", "settings_table", "single_vs_average", "size_label", "summarize",
    "temperature_summary", "temperature_table", "to_html", "too_short_text"
]
