"""Command line: `bprior plan | run | report --profile NAME` (also `python -m bprior_core`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from . import __version__
from .atomic import atomic_write_text
from .config import MAX_PACK, PARAMS_DIR, WORKERS_ENV, ProfileError, load_profile, profile_path
from .data.tasks import DataFileError, DataUnavailableError
from .priors.files import PriorFileError
from .study import EXPERIMENTS, StudyError, is_done, output_dir, plan
from .study.execution import counts_text
from .study.finals import final_run_count
from .study.preflight import dry_checks

# failures a user can fix (the message says how): one line on stderr and exit code 2, no
# traceback. OSError covers missing files, permissions (a read-only outputs folder), full disks.
EXPECTED_ERRORS = (ProfileError, StudyError, DataUnavailableError, DataFileError, PriorFileError,
                   OSError)


EXAMPLE_FOLDER = PARAMS_DIR.parent / "data" / "example-folder"


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (an OSError without one: its type and file)."""
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _plan_command(args) -> int:
    profile = load_profile(args.profile)
    runs = plan(profile)
    root = Path(args.outputs) if args.outputs else None
    by_exp = Counter(r["config"]["experiment"] for r in runs)
    done = sum(is_done(profile, r, root) for r in runs)
    finals = final_run_count(profile)
    print(f"profile {profile.name}: {len(runs) + sum(finals.values())} runs: {len(runs)} "
          f"planned ({', '.join(f'{k}: {v}' for k, v in by_exp.items())}; {done} already done)"
          + (f", then {sum(finals.values())} final runs of the tuned settings "
             f"({', '.join(f'{k}: {v}' for k, v in finals.items())})" if finals else ""))
    if args.verbose:
        for r in runs:
            c = r["config"]
            print(f"  {r['id']}  {c['experiment']:<9} {c['arm']:<18} n={c['n_train']:<5} "
                  f"seed={c['seed']}  method={c['method']}")
    else:
        seen = Counter((r["config"]["experiment"], r["config"]["arm"]) for r in runs)
        for (exp, arm), n in seen.items():
            print(f"  {exp:<9} {arm:<20} {n} runs")
    checks = dry_checks(profile, root=root, profile_file=profile_path(args.profile))
    problems = [(name, error) for name, error in checks if error]
    for name, error in problems:
        print(f"check {name}: `bprior run` would stop here: {_one_line(error)}")
    if not problems:
        print(f"checks: {', '.join(name for name, _ in checks)} are ready")
    return 0


def _run_command(args) -> int:
    from .study.runner import run_study

    path = profile_path(args.profile)
    counts = run_study(load_profile(path), Path(args.outputs) if args.outputs else None,
                       args.experiment or list(EXPERIMENTS), profile_file=path, pack=args.pack,
                       backend=args.backend, address=args.address)
    print(counts_text(counts))
    return 0


def _report_command(args) -> int:
    """The study first (progress bars and a time estimate here), then the report over its
    results (the notebooks only read)."""
    from .report import build_report, study_timings
    from .study.runner import run_study

    path = profile_path(args.profile)
    profile = load_profile(path)  # raises ProfileError before anything is written
    root = Path(args.outputs) if args.outputs else None
    print(f"profile {profile.name}: {len(plan(profile))} runs planned; outputs in "
          f"{output_dir(profile, root)}")
    counts = run_study(profile, root, profile_file=path, pack=args.pack, backend=args.backend,
                       address=args.address)
    print(counts_text(counts))
    build_report(path, root, study_timings=study_timings(counts))
    return 0


def _render_command(args) -> int:
    from .report import render_html

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise StudyError(f"{notebook} is not a file; give an executed notebook (.ipynb), e.g. "
                         "outputs/cpu/notebooks/04_inference.ipynb")
    target = Path(args.output) if args.output else notebook.with_suffix(".html")
    atomic_write_text(target, render_html(notebook, ""))
    print(f"wrote {target}")
    return 0


def _example_folder_command(args) -> int:
    from .data.imagefolder import write_example

    target = Path(args.folder)
    if target.exists() and any(target.iterdir()):
        raise StudyError(f"{target} exists and is not empty; give a new folder")
    write_example(target)
    print(f"wrote {target}/downstream/{{train,val,test}}/<class>/*.png and "
          f"{target}/source/<class>/*.png; try: bprior report --profile "
          f"{PARAMS_DIR / 'imagefolder-example.yaml'} (it reads {EXAMPLE_FOLDER})")
    return 0


def _pack_size(text: str) -> int:
    """--pack: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PACK:
        raise argparse.ArgumentTypeError(
            f"expected an integer in [1, {MAX_PACK}] (runs per pack), got {text[:20]!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bprior", description="Bayesian transfer learning with learned priors: studies "
        "and reports (profiles live in params/)."
    )
    parser.add_argument("--version", action="version", version=f"bprior {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in [
        ("plan", "list the runs of a profile and how many are done"),
        ("run", "learn/read the priors and execute the runs (resumable)"),
        ("report", "run every notebook and write outputs/<profile>/report.html"),
    ]:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--profile", required=True,
                       help="profile name in params/ (cpu: the default study, about 20 minutes "
                       "on 2 cores; smoke: 2 minutes) or a YAML path")
        p.add_argument("--outputs", default=None, help="outputs folder (default ./outputs)")
        if name == "plan":
            p.add_argument("-v", "--verbose", action="store_true", help="one line per run")
        p.add_argument("--workers", type=int, default=None, metavar="N",
                       help="local worker processes (overrides the profile's `workers`; "
                       "threads per worker = this process's usable cores // N)")
        if name in ("run", "report"):
            p.add_argument("--pack", type=_pack_size, default=None, metavar="N",
                           help="runs trained together per pack (overrides the profile's `pack`)")
            p.add_argument("--backend", choices=("local", "ray"), default=None,
                           help="where packs run: this machine's processes or Ray tasks "
                           "(overrides the profile's `backend`)")
            p.add_argument("--address", default=None, metavar="ADDRESS",
                           help="with --backend ray: the Ray cluster to join (auto, HOST:PORT or "
                           "ray://HOST:PORT); default: start a local Ray instance")
        if name == "run":
            p.add_argument("--experiment", action="append", choices=EXPERIMENTS,
                           help="only this experiment (repeatable)")
    render = sub.add_parser("render", help="render an executed notebook as a self-contained "
                            "HTML page (code hidden, nothing loaded from a CDN)")
    render.add_argument("notebook", help="an executed .ipynb file")
    render.add_argument("-o", "--output", default=None, help="HTML file (default: beside it)")
    example = sub.add_parser("example-folder", help="write a tiny synthetic image folder "
                             "(three shape classes downstream, three others as the source) to "
                             "try data.dataset: imagefolder on")
    example.add_argument("folder", nargs="?", default=str(EXAMPLE_FOLDER),
                         help="where to write it (default: data/example-folder beside params/, "
                         "where params/imagefolder-example.yaml reads it)")
    args = parser.parse_args(argv)
    handler = {"plan": _plan_command, "run": _run_command, "report": _report_command,
               "render": _render_command, "example-folder": _example_folder_command}[args.command]
    before = os.environ.get(WORKERS_ENV)
    if getattr(args, "workers", None) is not None:  # the notebooks' kernels inherit it
        os.environ[WORKERS_ENV] = str(args.workers)
    try:
        return handler(args)
    except BrokenPipeError:  # `bprior plan -v | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE
    except EXPECTED_ERRORS as exc:
        print(f"bprior: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: what is stored stays stored; say so in one line
        print("\nbprior: interrupted; every finished run is stored: run the same command again "
              "to resume", file=sys.stderr)
        return 130
    finally:
        if before is None:
            os.environ.pop(WORKERS_ENV, None)
        else:
            os.environ[WORKERS_ENV] = before


if __name__ == "__main__":
    sys.exit(main())
