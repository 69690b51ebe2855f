"""The whole pipeline under papermill with the smoke profile, and the report it renders."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from conftest import copy_root

from bprior_core import report, study, tables
from bprior_core.claims import CLAIM_IDS, VERDICTS
from bprior_core.cli import main
from bprior_core.config import load_profile
from bprior_core.report import (
    NOTEBOOK_DIR,
    NOTEBOOKS,
    PAGE_TITLES,
    Explorer,
    build_report,
    grid_edges_markdown,
    render_html,
)
from bprior_core.vocabulary import VIEWED_EXPERIMENTS

REPO = Path(__file__).resolve().parent.parent
# a 1x1 PNG
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082"
)).decode()
REMOTE = re.compile(r"(?:https?:)?//", re.I)


class _Refs(HTMLParser):
    """Everything in a page that the browser would fetch from elsewhere: script sources, linked
    stylesheets, CSS imports and urls, and module imports in inline scripts."""

    def __init__(self):
        super().__init__()
        self.remote: list[str] = []
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        url = attrs.get("src") if tag == "script" else attrs.get("href") if tag == "link" else None
        if url and REMOTE.match(url.strip()):
            self.remote.append(f"<{tag}> {url}")
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "style":
            self.remote += re.findall(r"@import[^;]*|url\(\s*['\"]?(?:https?:)?//[^)]*\)", data)
        elif self._in == "script":
            self.remote += re.findall(r"""import\s*\(\s*['"`](?:https?:)?//[^'"`]*""", data)


def remote_refs(page: str) -> list[str]:
    parser = _Refs()
    parser.feed(page)
    return parser.remote


@pytest.fixture(scope="module")
def smoke_report(smoke_study, tmp_path_factory):
    """The smoke report built on a copy of the shared smoke study (so it trains nothing)."""
    root = copy_root(smoke_study, tmp_path_factory.mktemp("report") / "outputs")
    path = build_report("smoke", root=root, log=lambda *_: None)
    return root / "smoke", path


def test_render_html_calls_out_to_nothing(tmp_path):
    nb = nbformat.v4.new_notebook()
    plot = nbformat.v4.new_code_cell("plot()")
    plot.outputs = [nbformat.v4.new_output("display_data", {"image/png": PNG, "text/plain": "fig"})]
    table = nbformat.v4.new_code_cell("table()")
    table.outputs = [nbformat.v4.new_output(
        "execute_result", {"text/html": "<table><tr><td>0.91</td></tr></table>"},
        execution_count=2)]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\nerror $e = 1 - a$ in %"), plot, table]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    page = render_html(path, "<div>nav</div>", "3. Scale · bprior <cpu>")
    assert "<title>3. Scale · bprior &lt;cpu&gt;</title>" in page
    assert "<title>nb</title>" in render_html(path, "")
    assert remote_refs(page) == []
    assert f'src="data:image/png;base64,{PNG}"' in page
    assert "<td>0.91</td>" in page and "<div>nav</div>" in page
    assert "error $e = 1 - a$ in %" in page, "TeX stays readable as source"
    assert "def " not in page and "plot()" not in page, "code cells must be hidden"
    # the checker itself sees what the stock template emits
    assert len(remote_refs('<script src="https://cdn/x.js"></script><link rel="stylesheet" '
                       'href="//cdn/x.css"><style>@import "https://f/c.css";</style>'
                       '<script type="module">await import("https://cdn/m.mjs")</script>')) == 4


def test_report_holds_verdict_table_and_figures(smoke_report):
    out, report = smoke_report
    page = report.read_text()
    assert 'class="verdicts"' in page
    for claim_id in CLAIM_IDS:
        assert f"<b>{claim_id}</b>" in page
    figures = re.findall(r'<img[^>]+src="data:image/png;base64,', page)
    assert len(figures) >= 3, "rank, scale and inference figures must be embedded"
    assert "Temperature T = " in page and "Rescaling rule" in page and "15 equal-width" in page
    assert "Grid edges." in page  # the smoke profile tunes its arms
    assert "def " not in page, "code cells must be hidden"
    assert 'href="html/02_rank.html"' in page
    for html_page in [report, *sorted((out / "html").glob("*.html"))]:
        assert remote_refs(html_page.read_text()) == [], html_page.name


def test_pages_have_titles_and_no_raw_dicts(smoke_report):
    out, report = smoke_report
    pages = {"06_report": report} | {n: out / "html" / f"{n}.html" for n in NOTEBOOKS[:-1]}
    for name, path in pages.items():
        page = path.read_text()
        assert f"<title>{PAGE_TITLES[name]} · bprior smoke</title>" in page, name
        assert "{'planned'" not in page and "profile 'smoke'" not in page, name
        assert "Profile <code>smoke</code>" in page, name
    assert "read from stored results" in (out / "html" / "02_rank.html").read_text()


def test_report_text_states_levels_and_evidence_as_tables(smoke_report):
    _, report = smoke_report
    page = report.read_text()
    gains = page[page.index('id="gains-table"'):]
    gains = gains[:gains.index("</table>")]
    assert re.search(r"99\.\d+ %", gains) and "95%" not in gains  # each judged row's level
    assert "SGHMC vs SGD gain: with the learned prior minus with the zero-mean prior" in gains
    assert page.count('class="bprior-table evidence"') >= 7
    assert "<pre>" in page[page.index("all evidence as JSON") - 200:]  # raw JSON collapsed
    # rank, scale, inference, gains over sgd+zero, prior draws, temperature, gains per size
    assert page.count("<img") >= 7


def test_report_and_explorer_show_the_same_numbers(smoke_report):
    """The explorer's table for each experiment, built from the stored records the way the
    notebook builds it, is the table in the rendered report (nbconvert drops the whitespace
    between tags)."""
    out, report = smoke_report
    page = _squeeze(report.read_text())
    records = study.analysis_records(load_profile("smoke"), out.parent)
    explorer = Explorer(records)
    for experiment in VIEWED_EXPERIMENTS:
        explorer.experiment.value = experiment
        shown = _squeeze(tables.to_html(explorer.table(explorer.view()), f"{experiment}-table"))
        assert shown.count("<tr") > 2 and shown in page, experiment


def _squeeze(markup: str) -> str:
    return re.sub(r">\s+<", "><", markup)


def test_every_notebook_executed_and_rendered(smoke_report):
    out, _ = smoke_report
    for name in NOTEBOOKS:
        executed = json.loads((out / "notebooks" / f"{name}.ipynb").read_text())
        errors = [o for c in executed["cells"] for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{name} raised: {errors}"
        if name != "06_report":
            assert (out / "html" / f"{name}.html").exists()


def test_claims_json(smoke_report):
    out, _ = smoke_report
    claims = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in claims] == list(CLAIM_IDS)
    for c in claims:
        assert c["verdict"] in VERDICTS and c["evidence"] is not None
    # 2-3 evaluation seeds of 12-16 steps: too few for a decisive verdict (a control whose
    # arms barely move reads "not supported"); the smoke samplers' 4 chains of 1 sample each
    # are far too short to say whether they converged
    verdicts = {c["id"]: c["verdict"] for c in claims}
    assert set(verdicts.values()) <= {"inconclusive", "not supported", "not converged",
                                      "not run"}


def test_results_and_resume(smoke_report):
    out, _ = smoke_report
    runs = sorted((out / "runs").glob("*.json"))
    record = json.loads(runs[0].read_text())
    for key in ("config", "metrics", "status", "seed", "wall_time_s", "version"):
        assert key in record
    assert set(record["metrics"]) == {"final", "bma"}
    # a second report trains nothing: every run is already done
    assert main(["plan", "--profile", "smoke", "--outputs", str(out.parent)]) == 0


def _html_outputs(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join("".join(o.get("data", {}).get("text/html", "")) for c in nb["cells"]
                   for o in c.get("outputs", []))


def test_explore_notebook_runs(smoke_report, tmp_path):
    out, _ = smoke_report
    report.run_notebook(NOTEBOOK_DIR / "explore.ipynb", tmp_path / "explore.ipynb",
                        {"profile": "smoke", "outputs_root": str(out.parent)})
    text = _html_outputs(tmp_path / "explore.ipynb")
    n = len(study.load_results(load_profile("smoke"), out.parent))
    assert n == len(study.study_runs(load_profile("smoke"), out.parent))
    assert f"Read {n} stored runs (of {n} planned)" in text and str(out) in text
    # its numbers are static outputs too: papermill and a rendered page show them (issue 23)
    assert text.count("bprior-table") >= 4  # rank, scale, inference, temperature
    assert "NaN" not in text and "None" not in text
    assert "test error %" in text and "4. Inference comparison" in text
    nb = json.loads((tmp_path / "explore.ipynb").read_text())
    images = [o for c in nb["cells"] for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 4


def test_explore_notebook_on_an_empty_folder_says_where_it_looked(tmp_path):
    report.run_notebook(NOTEBOOK_DIR / "explore.ipynb", tmp_path / "explore.ipynb",
                        {"profile": "smoke", "outputs_root": str(tmp_path / "none")})
    text = _html_outputs(tmp_path / "explore.ipynb")
    assert "No stored results" in text and str(tmp_path / "none" / "smoke" / "runs") in text
    assert f"bprior run --profile smoke --outputs {tmp_path / 'none'}" in text


def test_notebooks_are_committed_without_outputs():
    for nb in NOTEBOOK_DIR.glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), nb
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{nb.name} needs exactly one parameters cell"


def test_missing_prior_file_fails_cleanly(tmp_path, capsys):
    rc = main(["report", "--profile", "flowers102-resnet50", "--outputs", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "_mean.pt" in err and "priors.files.ssl" in err
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


def test_the_report_trains_nothing_and_says_what_is_missing(smoke_study, tmp_path):
    """`build_report` over an incomplete study refuses before writing anything, saying what is
    missing (`bprior report` runs the study first)."""
    with pytest.raises(study.StudyError) as info:
        build_report("smoke", root=tmp_path, log=lambda *_: None)
    assert "learned prior" in str(info.value) and "runs" in str(info.value)
    assert list(tmp_path.iterdir()) == [], "nothing may be written"
    root = copy_root(smoke_study, tmp_path / "outputs")
    records = sorted((root / "smoke" / "runs").rglob("*.json"))
    records[-1].unlink()
    with pytest.raises(study.StudyError, match=r"\b1 of \d+ runs missing"):
        build_report("smoke", root=root, log=lambda *_: None)
    assert not (root / "smoke" / "notebooks").exists()


def test_a_report_built_again_keeps_the_studys_timings(tmp_path):
    (tmp_path / "timings.json").write_text(json.dumps(
        {"priors": 3.0, "final runs": 5.5, "02_rank": 9.0, "tuning and single-phase runs": "x"}))
    assert report.status.stored_study_timings(tmp_path) == {"priors": 3.0, "final runs": 5.5}
    assert report.status.stored_study_timings(tmp_path / "absent") == {}
    counts = {"priors_s": 1.0, "planned_s": 2.0, "final_s": 3.0, "ran": 4}
    assert report.study_timings(counts) == {"priors": 1.0, "tuning and single-phase runs": 2.0,
                                            "final runs": 3.0}


def test_bad_profile_fails_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "params" / "smoke.yaml").read_text().replace("train:", "trian:"))
    out = tmp_path / "out"
    rc = main(["report", "--profile", str(bad), "--outputs", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown key trian" in err and "'train'" in err
    assert not out.exists()


def test_plan_lists_gpu_profile(capsys):
    assert main(["plan", "--profile", "flowers102-resnet50"]) == 0
    text = capsys.readouterr().out
    # 2,508 tuning and single-phase runs, then the final runs of the tuned settings: 7 sizes x
    # 5 evaluation seeds x (3 SGD-type runs, 4 samplers (the T = 0 ensemble too) x 4 chains, the
    # deep ensemble's 4 members and one long SGD run)
    finals = 7 * 5 * (3 + 4 * 4 + 4 + 1)
    assert f"{2508 + finals} runs: 2508 planned" in text and "sghmc+learned" in text
    assert f"then {finals} final runs" in text


def test_grid_edges_in_words():
    rows = [{"arm": "sgd+learned", "parameter": "scale", "grid": [1e3, 1e5, 1e7], "choices": 6,
             "at_low": 1, "at_high": 4, "low_gain": 0.05, "high_gain": 0.004},
            {"arm": "sgd+zero", "parameter": "variance", "grid": [0.1, 10.0], "choices": 6,
             "at_low": 0, "at_high": 0, "low_gain": None, "high_gain": None}]
    text = grid_edges_markdown(rows)
    assert ("`sgd+learned` chose the smallest scale of its grid (1000) in 1 of 6 choices, on "
            "average 0.050 nats of validation NLL better than 100000 (still improving)") in text
    assert "largest scale of its grid (1e+07) in 4 of 6 choices" in text and "(flat)" in text
    assert "widen `experiments.inference.tuning`" in text and "sgd+zero" not in text
    flat = grid_edges_markdown([{**rows[0], "at_low": 0}])
    assert "flattened out" in flat and "widen" not in flat
    assert "inside" in grid_edges_markdown(rows[1:]) and grid_edges_markdown([]).startswith("No")


# ----------------------------------------------------------------------------- injection (issue 14)

PAYLOAD = '<img src=x onerror="alert(1)"><script>alert(2)</script>[x](javascript:alert(3))'


class _Elements(HTMLParser):
    """Every tag and attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        self.attributes += [(k, v or "") for k, v in attrs]


def _page_of(outputs: list) -> _Elements:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = outputs
    nb.cells = [cell]
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "page.ipynb"
        nbformat.write(nb, path)
        page = render_html(path, "")
    parser = _Elements()
    parser.feed(page)
    return parser


def test_strings_from_profiles_and_records_are_inert_on_the_pages(tmp_path) -> None:
    """Every string the report did not write itself (profile description, prior file paths, a
    record's device and version, an outputs folder) reaches the page escaped: no script, no
    event handler, no javascript: link."""
    profile = load_profile("smoke")
    profile = profile.replace("description", PAYLOAD)
    profile = profile.replace("priors", dict(source="files",
                                             files={"ssl": PAYLOAD, "supervised": None}))
    records = [{"config": {"experiment": "rank"}, "status": "ok", "device": PAYLOAD,
                "version": PAYLOAD, "wall_time_s": 1.0}]
    md = report.methods_markdown(profile, records)
    html_parts = [report.profile_html(profile),
                  report.results_status_html(profile, Path(PAYLOAD), records, 1),
                  report.results_status_html(profile, Path(PAYLOAD), [], 1, PAYLOAD)]
    injected = _page_of(
        [nbformat.v4.new_output("display_data", {"text/markdown": md, "text/plain": "m"})]
        + [nbformat.v4.new_output("display_data", {"text/html": h, "text/plain": "h"})
           for h in html_parts])
    baseline = _page_of([nbformat.v4.new_output("display_data", {"text/html": "<p>x</p>",
                                                                 "text/plain": "x"})])
    assert injected.tags.count("script") == baseline.tags.count("script")
    assert injected.tags.count("img") == 0
    assert not [k for k, _ in injected.attributes if k.startswith("on")]
    assert not [v for k, v in injected.attributes if "javascript:" in v.lower()]
    assert PAYLOAD[:20] not in md  # escaped, but the text is still there to read
    assert "onerror" in md


@pytest.mark.parametrize("error", ["CellTimeoutError", "DeadKernelError"])
@pytest.mark.parametrize("failures", [1, 2])
def test_a_hung_notebook_runs_again_once(monkeypatch, tmp_path, error, failures) -> None:
    """A cell past CELL_TIMEOUT_S (nbclient waiting on a lost kernel message) or a dead kernel
    reruns the notebook once, then the error propagates."""
    import nbclient.exceptions
    import papermill

    exc = getattr(nbclient.exceptions, error)("stuck")
    calls, said = [], []

    def execute(source, target, **kwargs):
        calls.append(kwargs)
        if len(calls) <= failures:
            raise exc

    monkeypatch.setattr(papermill, "execute_notebook", execute)

    def run():
        report.run_notebook(tmp_path / "a.ipynb", tmp_path / "b.ipynb", {}, log=said.append)

    if failures < report.NOTEBOOK_ATTEMPTS:
        run()
        assert len(calls) == 2 and "running it again" in said[0]
    else:
        with pytest.raises(type(exc)):
            run()
        assert len(calls) == report.NOTEBOOK_ATTEMPTS
    assert all(c["execution_timeout"] == report.cell_timeout_s() for c in calls)


def test_the_cell_limit_comes_from_the_environment_or_the_default(monkeypatch) -> None:
    monkeypatch.delenv("BPRIOR_CELL_TIMEOUT_S", raising=False)
    assert report.cell_timeout_s() == report.CELL_TIMEOUT_S == 900
    monkeypatch.setenv("BPRIOR_CELL_TIMEOUT_S", " 42.5 ")
    assert report.cell_timeout_s() == 42.5
    for bad in ("0", "-3", "soon", "inf", "nan"):
        monkeypatch.setenv("BPRIOR_CELL_TIMEOUT_S", bad)
        with pytest.raises(ValueError, match="must be a positive number of seconds"):
            report.cell_timeout_s()


def test_a_bad_cell_limit_stops_the_report_before_anything_is_written(monkeypatch,
                                                                      tmp_path) -> None:
    monkeypatch.setenv("BPRIOR_CELL_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="BPRIOR_CELL_TIMEOUT_S must be a positive number"):
        build_report("smoke", root=tmp_path, log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


def _tiny_notebooks(folder, cells: dict[str, str]) -> None:
    for name, code in cells.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, folder / f"{name}.ipynb")


def test_notebooks_run_side_by_side_and_a_failure_propagates(tmp_path) -> None:
    """Two kernels at once (each with socket files of its own: with jupyter_client's default
    names neither answered) run with their parameters; a failing notebook's error reaches the
    caller, and the one that ran beside it completes."""
    import papermill

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    _tiny_notebooks(src, {"bad": "raise ValueError(f'cell 2 is wrong: x = {x}')",
                          "good": "assert x == 3"})
    with pytest.raises(papermill.PapermillExecutionError, match="cell 2 is wrong: x = 3"):
        report.run_notebooks(["bad", "good"], out, {"x": 3}, log=lambda *_: None, workers=2,
                             source_dir=src)
    good = nbformat.read(out / "good.ipynb", as_version=4)
    assert good.metadata.papermill.parameters == {"x": 3}
    outputs = [o for cell in good.cells for o in cell.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)


def test_a_failing_cell_is_not_retried(monkeypatch, tmp_path) -> None:
    import papermill

    calls = []

    def execute(source, target, **kwargs):
        calls.append(1)
        raise papermill.PapermillExecutionError(0, 1, "boom", "ValueError", "boom", [])

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    with pytest.raises(papermill.PapermillExecutionError):
        report.run_notebook(tmp_path / "a.ipynb", tmp_path / "b.ipynb", {})
    assert calls == [1]
