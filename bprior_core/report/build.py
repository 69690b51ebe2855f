"""The report: run the notebooks with papermill, render them with nbconvert, link them up.

`build_report` reads a complete study's results (it trains nothing: `bprior report` runs the
study first) and runs `notebooks/01_learn_prior` ... `06_report`, a few side by side (each
only reads stored results; executed copies in `outputs/<profile>/notebooks/`), renders each to
HTML with code hidden (`outputs/<profile>/html/`), and writes `outputs/<profile>/report.html`:
the rendered `06_report` with links to the experiment pages. The pages are self-contained:
figures are embedded as PNG, tables are plain HTML, and nbconvert's lab template is rendered
without the scripts it loads from a CDN (require.js, MathJax, mermaid, widgets), so a page reads
offline and a published report calls out to nothing. TeX in markdown shows as source; the
report's own prose writes no TeX.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..atomic import atomic_write_text
from ..config import load_profile, profile_path, usable_cores
from ..study import StudyError, output_dir
from ..study.runner import missing_work
from .markup import _esc
from .status import NOTEBOOK_SECONDS, TIMINGS, stored_study_timings

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = ("01_learn_prior", "02_rank", "03_scale", "04_inference", "05_temperature",
             "06_report")
# the order notebooks start in when several run side by side: the longest first (measured on the
# smoke and cpu reports), so the last to finish is a short one
LONGEST_FIRST = ("06_report", "04_inference", "03_scale", "01_learn_prior", "05_temperature",
                 "02_rank")
MAX_NOTEBOOK_WORKERS = 3  # kernels side by side: each holds the study's records in memory
PAGE_TITLES = {
    "01_learn_prior": "1. Learned priors",
    "02_rank": "2. Rank",
    "03_scale": "3. Scale",
    "04_inference": "4. Inference comparison",
    "05_temperature": "5. Temperature",
    "06_report": "Report",
    "explore": "Explore",
}


def _nav(profile_name: str, current: str, prefix: str) -> str:
    links = " · ".join(
        f"<b>{PAGE_TITLES[n]}</b>" if n == current
        else f'<a href="{prefix}{"../report.html" if n == "06_report" else n + ".html"}">'
             f"{PAGE_TITLES[n]}</a>"
        for n in NOTEBOOKS
    )
    return (f'<div style="padding:8px;background:#f6f8fa;border-bottom:1px solid #ddd;'
            f'font-family:sans-serif">bprior · profile <code>{_esc(profile_name)}</code> · '
            f"{links}</div>")


# nbconvert's lab template with the blocks that load scripts from a CDN left empty
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def page_title(name: str, profile_name: str) -> str:
    """A page's `<title>`: its heading and the profile, e.g. `3. Scale · bprior smoke`."""
    return f"{PAGE_TITLES.get(name, name)} · bprior {profile_name}"


def render_html(notebook_path: Path, nav: str, title: str | None = None) -> str:
    """Executed notebook -> self-contained HTML with code hidden, a navigation bar and the
    page's `<title>` (default: the notebook's file name)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", raw_template=OFFLINE_TEMPLATE)
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    nb = nbformat.read(notebook_path, as_version=4)
    nb.metadata["title"] = title or Path(notebook_path).stem  # nbconvert escapes it
    body, _ = exporter.from_notebook_node(nb)
    return _insert_after_body(body, nav)


def _insert_after_body(page: str, block: str) -> str:
    start = page.find("<body")
    end = page.find(">", start) + 1
    return page[:end] + block + page[end:]


# a cell that runs longer has hung (every run is trained before the notebooks run; the slowest
# cell, the claims' bootstrap, takes seconds): nbclient's wait for a lost kernel message, seen
# about once in many hundred notebook runs, would otherwise block a report forever
CELL_TIMEOUT_S = 900
CELL_TIMEOUT_ENV = "BPRIOR_CELL_TIMEOUT_S"  # another limit in seconds (the tests use a shorter one)
NOTEBOOK_ATTEMPTS = 2


def cell_timeout_s() -> float:
    """The limit of one notebook cell: `$BPRIOR_CELL_TIMEOUT_S` where set, else CELL_TIMEOUT_S."""
    value = os.environ.get(CELL_TIMEOUT_ENV, "").strip()
    if not value:
        return CELL_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"${CELL_TIMEOUT_ENV} must be a positive number of seconds, got "
                         f"{value!r}; unset it for the default {CELL_TIMEOUT_S} s")
    return seconds


def _local_kernels() -> type:
    """A kernel manager whose kernels talk over local IPC sockets (files in Jupyter's runtime
    folder) instead of TCP ports: nothing listens on the network, and the kernel has no
    unencrypted TCP port to warn about (that warning used to print once per notebook). Each
    kernel's socket files get a name of their own: jupyter_client's default (`kernel-ipc-<n>`
    in the working folder, n the first free number) lets kernels started side by side pick the
    same files, and neither answers."""
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    class LocalKernelManager(AsyncKernelManager):
        transport = "ipc"

        def _ip_default(self) -> str:
            folder = Path(jupyter_runtime_dir())
            folder.mkdir(parents=True, exist_ok=True)
            return str(folder / f"bprior-{uuid.uuid4().hex[:12]}-ipc")

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client interrupts a kernel (SIGINT) before it asks it to shut down; with
            # kernels side by side one of them, idle by then, sometimes printed "ERROR |
            # KeyboardInterrupt caught in kernel". A notebook that ended needs no interrupt
            # (a hung one is killed: nbclient shuts it down with `now`).
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return LocalKernelManager


def run_notebook(source: Path, target: Path, parameters: dict, kernel_name: str | None = None,
                 cwd: Path | None = None, log=print) -> None:
    """Execute a notebook with papermill, each cell limited to `cell_timeout_s()`; a timed-out
    cell or a dead kernel runs the whole notebook again once (the notebooks only read stored
    results, so a rerun repeats nothing), then the error propagates."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    timeout = cell_timeout_s()
    for attempt in range(1, NOTEBOOK_ATTEMPTS + 1):
        try:
            papermill.execute_notebook(
                str(source), str(target), parameters=parameters, progress_bar=False,
                kernel_name=kernel_name, cwd=None if cwd is None else str(cwd),
                execution_timeout=timeout, kernel_manager_class=_local_kernels())
            return
        except (CellTimeoutError, DeadKernelError) as exc:
            if attempt == NOTEBOOK_ATTEMPTS:
                raise
            log(f"[{source.stem}] {type(exc).__name__} ({str(exc).splitlines()[0][:120]}); "
                "running it again")


def notebook_workers() -> int:
    """Kernels to run side by side: one per core, at most MAX_NOTEBOOK_WORKERS. A kernel spends
    most of its time importing and plotting on one core, so two on two cores take about half
    the wall clock of one after the other."""
    return max(1, min(MAX_NOTEBOOK_WORKERS, usable_cores()))


def _run_timed(source: Path, target: Path, params: dict, kernel_name: str | None, cwd: Path,
               log=None) -> float:
    """One notebook, its seconds; its retry message goes to `log` (in a worker process, where
    no callable of the parent's can go: stderr)."""
    import sys

    start = time.perf_counter()
    run_notebook(source, target, params, kernel_name, cwd,
                 log or (lambda msg: print(msg, file=sys.stderr)))
    return round(time.perf_counter() - start, 1)


def run_notebooks(names, target_dir: Path, params: dict, kernel_name: str | None = None,
                  log=print, workers: int | None = None,
                  source_dir: Path = NOTEBOOK_DIR) -> dict[str, float]:
    """Execute the named notebooks of `source_dir` into `target_dir`, `workers` at a time (a
    process each, longest first; one after the other in this process when `workers` is 1);
    each one's wall-clock seconds. A failure stops the ones not yet started and propagates once
    the running ones end. (Kernels started from threads of one process have collided.)"""
    order = sorted(names, key=lambda n: LONGEST_FIRST.index(n) if n in LONGEST_FIRST else -1)
    workers = min(workers or notebook_workers(), len(order))
    paths = {name: (source_dir / f"{name}.ipynb", target_dir / f"{name}.ipynb") for name in order}
    seconds: dict[str, float] = {}
    if workers <= 1:
        for name in order:
            log(f"[{name}] running ...")
            seconds[name] = _run_timed(*paths[name], params, kernel_name, Path.cwd(), log)
            log(f"[{name}] done in {seconds[name]} s")
        return {name: seconds[name] for name in names}
    context = multiprocessing.get_context("spawn")  # no forked copy of torch's thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_run_timed, *paths[name], params, kernel_name,
                               Path.cwd()): name for name in order}
        log(f"[notebooks] running {', '.join(order)}, {workers} at a time ...")
        try:
            for future in as_completed(futures):
                name = futures[future]
                seconds[name] = future.result()
                log(f"[{name}] done in {seconds[name]} s")
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return {name: seconds[name] for name in names}


def build_report(
    profile_arg: str | Path, root: Path | None = None, log=print, kernel_name: str | None = None,
    study_timings: dict[str, float] | None = None,
) -> Path:
    """Run every notebook over a profile's stored results and write
    `outputs/<profile>/report.html`. It trains nothing: the study must be complete (`bprior
    report` runs it first; `bprior run` alone does too), else StudyError says what is missing,
    before anything is written. `study_timings` (`status.study_timings`) are the study's stages
    for `timings.json`; without them the stored file's are kept."""
    path = profile_path(profile_arg)
    profile = load_profile(path)  # raises ProfileError before anything is written
    cell_timeout_s()  # a bad $BPRIOR_CELL_TIMEOUT_S too
    missing = missing_work(profile, root)
    if missing:
        raise StudyError(
            f"the study of profile {profile.name} is not complete ({'; '.join(missing)} "
            f"missing): `bprior run --profile {profile_arg}` trains what is missing, or `bprior "
            "report` runs the study and then builds the report")
    out = output_dir(profile, root)
    timings = dict(study_timings) if study_timings is not None else stored_study_timings(out)
    nb_dir, html_dir = out / "notebooks", out / "html"
    nb_dir.mkdir(parents=True, exist_ok=True)
    html_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / TIMINGS, json.dumps(timings, indent=1))  # the report reads it
    params = {"profile": str(path.resolve()), "outputs_root": str(out.parent.resolve()),
              "progress": False}
    start = time.perf_counter()
    seconds = run_notebooks(NOTEBOOKS, nb_dir, params, kernel_name, log)
    timings["notebooks"] = round(time.perf_counter() - start, 1)
    timings[NOTEBOOK_SECONDS] = seconds
    for name in NOTEBOOKS:
        is_report = name == "06_report"
        page = render_html(nb_dir / f"{name}.ipynb",
                           _nav(profile.name, name, "html/" if is_report else ""),
                           page_title(name, profile.name))
        atomic_write_text(out / "report.html" if is_report else html_dir / f"{name}.html", page)
    atomic_write_text(out / TIMINGS, json.dumps(timings, indent=1))
    log(f"report: {out / 'report.html'}")
    return out / "report.html"
