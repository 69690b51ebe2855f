"""The command line's smaller promises (issue 13): YAML errors located in the file, `plan` says
what `run` would stop on, `--version`, and `render` for a user's own executed notebook."""

from __future__ import annotations

import nbformat
import pytest

from bprior_core import __version__
from bprior_core.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize(("text", "where"), [
    ("name: x\nseeds: [1, 2\nworkers: 2\n", "line 2, column 8: while parsing a flow sequence"),
    ("name: x\ntrain:\n  steps: 10\n lr: 0.1\n", "line 4, column 2"),
    ('name: "x\nseeds: 3\n', "line 1, column 7: while scanning a quoted scalar"),
])
def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path, capsys, text, where) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    rc, _, err = run_cli(capsys, "plan", "--profile", str(path))
    assert rc == 2
    assert f"{path} is not valid YAML: {where}" in err
    assert "<unicode string>" not in err and len(err.strip().splitlines()) == 1


def test_plan_says_what_run_would_stop_on(tmp_path, capsys, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, out, _ = run_cli(capsys, "plan", "--profile", "gpu")
    assert rc == 0
    assert "check device: `bprior run` would stop here: device: 'cuda'" in out
    monkeypatch.chdir(tmp_path)  # the flowers profile's prior prefixes are relative paths
    rc, out, _ = run_cli(capsys, "plan", "--profile", "flowers102-resnet50")
    assert "check prior files: `bprior run` would stop here" in out
    assert "resnet50_ssl_prior_mean.pt" in out
    rc, out, _ = run_cli(capsys, "plan", "--profile", "smoke", "--outputs", str(tmp_path))
    assert "checks: prior files, device, data, outputs are ready" in out
    assert not (tmp_path / "smoke").exists()  # plan writes nothing


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"bprior {__version__}"


def test_render_writes_an_offline_page_for_a_users_notebook(tmp_path, capsys) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1")
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"},
                                           execution_count=1)]
    nb.cells = [nbformat.v4.new_markdown_cell("# Mine"), cell]
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, path)
    rc, out, _ = run_cli(capsys, "render", str(path))
    page = (tmp_path / "mine.html").read_text()
    assert rc == 0 and str(tmp_path / "mine.html") in out
    assert "Mine" in page and "1 + 1" not in page  # code hidden
    for cdn in ("require.js", "mathjax", "cdn.jsdelivr", "unpkg.com"):
        assert cdn not in page.lower()
    rc, _, err = run_cli(capsys, "render", str(tmp_path / "missing.ipynb"))
    assert rc == 2 and "is not a file" in err


def test_a_profile_must_be_named(capsys) -> None:
    """A bare `bprior run` used to start the 20-minute cpu study."""
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    assert "--profile" in capsys.readouterr().err


def test_workers_on_the_command_line_override_the_profile(capsys, monkeypatch) -> None:
    """`--workers N` overrides the profile's `workers` for the command and the notebooks it
    starts (through $BPRIOR_WORKERS), and is checked like the profile's."""
    import os

    from bprior_core import cli, config

    seen = []

    def plan_command(args):
        seen.append(config.load_profile(args.profile).workers)
        return 0

    monkeypatch.setattr(cli, "_plan_command", plan_command)
    assert main(["plan", "--profile", "smoke", "--workers", "1"]) == 0
    assert seen == [1] and config.WORKERS_ENV not in os.environ  # restored afterwards
    monkeypatch.setenv(config.FORCE_WORKERS, "0")
    rc, _, err = run_cli(capsys, "plan", "--profile", "smoke", "--workers", "999")
    assert rc == 2 and "workers: 999 is out of range" in err


def test_threads_follow_the_cpu_affinity(monkeypatch) -> None:
    """Threads per worker are this process's usable cores (its affinity, as under `taskset`)
    shared between the workers, not every core of the machine."""
    import os

    from bprior_core.study.resources import threads_per_worker

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert threads_per_worker(1) == 1


def test_a_sweep_ends_with_a_sentence() -> None:
    from bprior_core.study.execution import counts_text

    text = counts_text({"planned": 10, "ran": 8, "skipped": 2, "diverged": 1,
                        "wall_time_s": 12.3, "priors_s": 4.0})
    assert text == ("10 runs: 8 trained in 12 s, 2 already done, 1 diverged (stored as such); "
                    "priors ready in 4 s")
