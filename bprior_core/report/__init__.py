"""The report over a study's stored results: notebooks run by papermill, rendered offline.

`build_report` (`build`) runs the notebooks over a complete study and links the pages; it
trains nothing (`bprior report` runs the study first). The pieces the notebooks show live in
`evidence` (the claims as HTML), `methods` (the methods text), `status` (the profile, the
sweep's progress, tuning's choices, timings) and `markup` (escaping, badges, effects); the
explorer notebook's widgets in `explorer`.
"""

from .build import (
    CELL_TIMEOUT_S,
    NOTEBOOK_ATTEMPTS,
    NOTEBOOK_DIR,
    NOTEBOOKS,
    PAGE_TITLES,
    build_report,
    cell_timeout_s,
    page_title,
    render_html,
    run_notebook,
    run_notebooks,
)
from .evidence import (
    claim_evidence_html,
    control_banner_html,
    control_html,
    evidence_html,
    verdict_table_html,
)
from .explorer import Explorer
from .markup import uninformative_badge
from .methods import experiment_intro, methods_markdown, temperature_text
from .status import (
    RELIABILITY_MISSING,
    choice_agreement_markdown,
    grid_edges_markdown,
    profile_html,
    results_status_html,
    run_seconds_table,
    study_timings,
    sweep_html,
    timings_markdown,
)

__all__ = [
    "CELL_TIMEOUT_S", "NOTEBOOKS", "NOTEBOOK_ATTEMPTS", "NOTEBOOK_DIR", "PAGE_TITLES",
    "RELIABILITY_MISSING", "Explorer", "build_report", "cell_timeout_s",
    "choice_agreement_markdown", "claim_evidence_html", "control_banner_html", "control_html",
    "evidence_html", "experiment_intro", "grid_edges_markdown", "methods_markdown", "page_title",
    "profile_html", "render_html", "results_status_html", "run_notebook", "run_notebooks",
    "run_seconds_table", "study_timings", "sweep_html", "temperature_text", "timings_markdown",
    "uninformative_badge", "verdict_table_html",
]
