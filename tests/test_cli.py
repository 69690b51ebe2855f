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
    assert "checks: prior files, device and data are ready" in out
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
