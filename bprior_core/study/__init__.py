"""A study: a validated profile expanded into runs, executed in packs, stored one JSON per run.

Data flows one way: profile -> plan (list of run configurations, `planning`) -> packs of runs that
share a shape -> each pack trained on one device (`execution`, with the data of `datasets` and the
priors of `priors`) -> `outputs/<profile>/runs/<hash>.json` (`paths`). A run never reads another
run's result; a result file is named by the hash of its full configuration and written
atomically, so an interrupted study resumes where it stopped and ends with the same numbers.
"""

from ..vocabulary import EXPERIMENTS
from .errors import StudyError
from .execution import (
    StudyResults,
    analysis_records,
    execute_pack,
    execute_run,
    is_done,
    load_results,
    read_record,
    resolve_pack_size,
    run_sweep,
    study_results,
    study_runs,
    sweep_study,
    write_json_atomic,
)
from .finals import final_runs, needed_draws, needed_priors
from .paths import default_outputs, output_dir, prior_paths, result_path
from .planned import PlannedStudy, plan_study
from .planning import make_packs, pack_key, plan, prior_source_id
from .priors import (
    build_run_prior,
    check_prior_files,
    learn_priors,
    load_prior_and_backbone,
    prepare_priors,
    prior_location,
)
from .resources import resolve_device
from .runner import run_experiment, run_study
from .sources import source_task

__all__ = [
    "EXPERIMENTS", "PlannedStudy", "StudyError", "StudyResults", "analysis_records",
    "build_run_prior",
    "check_prior_files", "default_outputs", "execute_pack", "execute_run", "final_runs", "is_done",
    "learn_priors", "load_prior_and_backbone", "load_results", "make_packs", "needed_draws",
    "needed_priors", "output_dir", "pack_key", "plan", "plan_study", "prepare_priors",
    "prior_location", "prior_paths", "prior_source_id", "read_record", "resolve_device",
    "resolve_pack_size", "result_path", "run_experiment", "run_study", "run_sweep", "source_task",
    "study_results", "study_runs", "sweep_study", "write_json_atomic"
]
