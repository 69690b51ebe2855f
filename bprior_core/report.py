"""The report: run the notebooks with papermill, render them with nbconvert, link them up.

`build_report` validates the profile and checks prior files BEFORE writing anything, then runs
`notebooks/01_learn_prior` ... `06_report` in order (executed copies in
`outputs/<profile>/notebooks/`), renders each to HTML with code hidden (`outputs/<profile>/html/`),
and writes `outputs/<profile>/report.html`: the rendered `06_report` with links to the
experiment pages. The pages are self-contained: figures are embedded as PNG, tables are plain
HTML, and nbconvert's lab template is rendered without the scripts it loads from a CDN
(require.js, MathJax, mermaid, widgets), so a page reads offline and a published report calls
out to nothing. TeX in markdown shows as source; the report's own prose writes no TeX.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from .atomic import atomic_write_text
from .claim_text import HOLM_RULE, NONLEARNED_TEXT
from .claims import MARGINS
from .config import load_profile, profile_path
from .study import EXPERIMENTS, output_dir, plan, prepare_priors, sweep_study
from .study.preflight import preflight
from .study.ray_backend import connect

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ("01_learn_prior", "02_rank", "03_scale", "04_inference", "05_temperature",
             "06_report")
PAGE_TITLES = {
    "01_learn_prior": "1. Learned priors",
    "02_rank": "2. Rank",
    "03_scale": "3. Scale",
    "04_inference": "4. Inference comparison",
    "05_temperature": "5. Temperature",
    "06_report": "Report",
    "explore": "Explore",
}
VERDICT_COLOURS = {
    "supported": "#1a7f37",
    "not supported": "#9a6700",
    "contradicted": "#cf222e",
    "inconclusive": "#57606a",
}

# ----------------------------------------------------------------------------- HTML pieces


def _esc(text) -> str:
    return html.escape(str(text if text is not None else ""))


def verdict_badge(verdict: str) -> str:
    colour = VERDICT_COLOURS.get(verdict, "#57606a")
    return (f'<span style="background:{colour};color:white;padding:2px 8px;border-radius:10px;'
            f'white-space:nowrap">{_esc(verdict)}</span>')


def verdict_table_html(claims: list[dict]) -> str:
    """One row per claim: the claim, the paper's and the reproduction's findings, this run's
    evidence and the verdict on accuracy, with the verdicts on the other metrics where the
    claims carry them (`claims.evaluate_claims_by_metric`)."""
    others = list((claims[0]["evidence"].get("by_metric") or {}) if claims else {})
    head = ("<tr><th>claim</th><th>paper</th><th>reproduction (MLRC 2022)</th>"
            "<th>this run</th><th>verdict (accuracy)</th>"
            + "".join(f"<th>{_esc(m.upper())}</th>" for m in others) + "</tr>")
    cell = '<td style="text-align:left;vertical-align:top">'

    def other_cells(c: dict) -> str:
        by_metric = c["evidence"].get("by_metric") or {}
        return "".join(f"{cell}{verdict_badge(by_metric[m]['verdict'])}</td>"
                       if m in by_metric else f"{cell}-</td>" for m in others)

    rows = [
        f"<tr>{cell}<b>{_esc(c['id'])}</b> {_esc(c.get('title'))}<br><small>"
        f"{_esc(c.get('statement'))}</small></td>{cell}{_esc(c.get('paper'))}</td>"
        f"{cell}{_esc(c.get('reproduction'))}</td>{cell}{_esc(c.get('summary'))}</td>"
        f"{cell}{verdict_badge(c['verdict'])}</td>{other_cells(c)}</tr>"
        for c in claims
    ]
    return ('<table class="verdicts" border="1" style="border-collapse:collapse;font-size:90%">'
            + head + "".join(rows) + "</table>")


def evidence_html(claims: list[dict]) -> str:
    """How each verdict was decided, and the numbers behind it."""
    parts = []
    for c in claims:
        evidence = json.dumps(c.get("evidence"), indent=1, default=str)
        parts.append(
            f"<h4>{_esc(c['id'])}: {_esc(c.get('title'))} {verdict_badge(c['verdict'])}</h4>"
            f"<p>{_esc(c.get('summary'))}</p><p><i>Rule:</i> {_esc(c.get('rule'))}</p>"
            f"<details><summary>evidence</summary><pre>{_esc(evidence)}</pre></details>"
        )
    return "".join(parts)


def grid_edges_markdown(rows: list[dict], flat: float = MARGINS["nll"]) -> str:
    """`selection.grid_edges` in words: which tuned arms chose an end of their grid, how often,
    and whether the metric still improved there (a validation NLL gain over the next value
    inward of at least `flat` nats, the NLL margin) or had flattened out."""
    if not rows:
        return "No tuned arms in this profile."
    found, improving = [], False
    for r in rows:
        for side, count, value, inward, gain in (
                ("smallest", r["at_low"], r["grid"][0], r["grid"][1:2], r["low_gain"]),
                ("largest", r["at_high"], r["grid"][-1], r["grid"][-2:-1], r["high_gain"])):
            if not count:
                continue
            text = (f"`{r['arm']}` chose the {side} {r['parameter']} of its grid ({value:g}) in "
                    f"{count} of {r['choices']} choices")
            if gain is not None and inward:
                trend = "still improving" if gain >= flat else "flat"
                improving |= gain >= flat
                text += (f", on average {gain:.3f} nats of validation NLL better than "
                         f"{inward[0]:g} ({trend})")
            found.append(text)
    if not found:
        return "**Grid edges.** Every validation choice lies inside its arm's grid."
    advice = ("Where the metric is still improving at the edge, the best value may lie beyond "
              "the grid and that arm is tuned only as well as its grid allows: widen "
              "`experiments.inference.tuning` on that side." if improving else
              f"Every edge gain is below {flat:g} nats (the NLL margin): the metric has "
              "flattened out there, so a wider grid would change little.")
    return "**Grid edges.** " + "; ".join(found) + ". " + advice


def methods_markdown(profile: dict, records: list[dict]) -> str:
    """The settings and conventions that change results, stated from the profile."""
    t, learning, exps = profile["train"], profile["priors"]["learning"], profile["experiments"]
    wall = sum(r.get("wall_time_s") or 0 for r in records)
    diverged = sum(r["status"] != "ok" for r in records)
    devices = sorted({r.get("device", "?") for r in records}) or ["-"]
    versions = sorted({r.get("version", "?") for r in records}) or ["-"]
    draws = profile["priors"]["draws"]
    prior_text = (
        f"learned here with SWAG on the source task ({learning['pretrain_steps']} pre-training "
        f"steps, then {learning['swag_steps']} SWAG steps at lr {learning['swag_lr']} "
        f"({learning['swag_schedule']}), a snapshot every {learning['collect_every']} steps, "
        f"rank {learning['max_rank']}, batch {learning['batch_size']}); **{draws} independent "
        f"draw(s) per source** (prior-learning seeds 0..{draws - 1}); downstream seed s uses draw "
        "s mod the number of draws, so paired differences over seeds carry prior-to-prior "
        "variation too"
        if profile["priors"]["source"] == "learn"
        else f"read from the authors' four-file format: {profile['priors']['files']}, "
        f"non-positive variances clamped to {profile['priors']['variance_floor']} (one draw "
        "per source: prior-to-prior variation is not measured)"
    )
    rule = profile["priors"]["rescaling_rule"]
    rule_text = {
        "same": "Sigma' = s (diag(variance) + F^T F) + eps I: variance and covariance scaled by "
                "the same factor s (the paper's text)",
        "authors": "Sigma' = s^2 F^T F + diag(s variance) + eps I (the authors' code)",
    }[rule]
    clip = ("no gradient clipping" if t["grad_clip"] is None else
            f"backbone gradient clipped at norm {t['grad_clip']}")
    cap = t["prior_step_cap"]
    step_text = ("plain explicit steps on the prior term" if cap is None else
                 f"stiff prior coordinates preconditioned so that no step sees more than "
                 f"lr x curvature = {cap:g} (target density and MAP unchanged)")
    protocol = ("; the reproduction's protocol draws one image from each of the first n classes "
                "for n <= 100 but tests on ALL classes, so few-shot models are scored on classes "
                "they never saw" if profile["data"]["subset_protocol"] == "reproduction" else "")
    val = profile["data"]["val_size"]
    val_text = (f"validation set of {val} images, class-balanced, drawn once from the labelled "
                "pool and removed from it (never in a training subset; Flowers-102: from the "
                "official validation split); it only selects hyper-parameters, ranks and "
                "scales, and the test set only measures the selected runs" if val else
                "no validation set (best ranks and scales are then picked on test means with "
                "Bonferroni-corrected intervals)")
    margins = profile["claims"]["margins"]
    return f"""
- **Data**: `{profile['data']['dataset']}`,
  subsets `{profile['data']['subset_protocol']}`{protocol},
  test set of {profile['data']['test_size'] or 'all'} images (fixed); {val_text}.
  Model `{profile['model']}`.
- **Seeds**: {profile['seeds']} per point unless an experiment says otherwise (seed = training
  subset = head init = sampler noise); mean ± standard error over seeds; claims use paired
  differences over seeds with Student-t intervals.
- **Priors**: {prior_text}. Covariance diag(variance) + F^T F; rank r keeps the top r principal
  directions of the SWAG deviations.
- **Rescaling rule**: `{rule}`: {rule_text}; eps = {profile['priors']['eps']:g}. The scale
  experiment also sweeps the conventions listed below; the headline C2 verdict uses this one.
- **Downstream training**: {t['steps']} steps, batch {t['batch_size']}, lr {t['lr']},
  momentum {t['momentum']}, weight decay {t['weight_decay']} (head only when a prior is used),
  {clip}; {step_text}. Loss = mean cross-entropy minus log p(theta) / N (N = training-set
  size). Samplers and SGD take the same number of gradient steps.
- **Samplers**: `{exps['inference']['bayes_method']}` with a cyclical cosine step size,
  {t['cycles']} cycles, exploration fraction {t['explore_fraction']} (no noise), then sampling;
  {t['samples_per_cycle']} sample(s) per cycle, {t['cycles'] * t['samples_per_cycle']} in all.
  **Temperature T = {t['temperature']:g}** (posterior proportional to exp(-U/T); T = 1 is the
  Bayes posterior; the authors' default 2e-8 corresponds to T = 4e-8 here). The `ensemble`
  arm is the same schedule and samples at T = 0 (a cyclical snapshot ensemble): the control that
  separates "Bayesian" from "ensembling".
- **Prediction**: samplers predict with the Bayesian model average (mean of softmax
  probabilities over samples, each with its own BatchNorm statistics); SGD arms with the final
  iterate. Metrics: accuracy (shown as error %), NLL (mean per example), ECE (15 equal-width bins
  over top-label confidence), Brier (sum over classes, mean over examples).
{_experiments_text(profile)}
- **Verdicts**: each claim's effect is oriented so that positive = the claim's direction and
  compared with a margin, the smallest effect that matters (accuracy {margins['accuracy']:g},
  NLL {margins['nll']:g}, ECE {margins['ece']:g}): *supported* if the interval's lower bound
  > 0, *contradicted* if its upper bound < 0, *not supported* if it contains 0 and stays below
  the margin, *inconclusive* if it contains 0 and reaches the margin (or too few seeds).
  {HOLM_RULE} Each claim's adjusted level is in its evidence (`holm`).
- **Non-learned comparison**: {NONLEARNED_TEXT}
- **This run**: {len(records)} runs ({diverged} diverged), {wall / 60:.1f} min of training time
  in all, device {', '.join(devices)}, bprior {', '.join(versions)}.
"""


def _experiments_text(profile: dict) -> str:
    """One bullet per enabled experiment: what it varies and at which settings."""
    exps, seeds = profile["experiments"], profile["seeds"]
    lines = []

    def n(value: int) -> str:
        return str(value) if value else "full"

    if exps["rank"]["enabled"]:
        e = exps["rank"]
        lines.append(f"- **Rank** (C1): ranks {e['ranks']} at scale {e['scale']:g}, n = "
                     f"{n(e['n_train'])}, {e['seeds'] or seeds} seeds"
                     + (", also at the full-rank prior's total variance (fixed trace)"
                        if e["fixed_trace"] else "") + "; the best rank is chosen on validation.")
    if exps["scale"]["enabled"]:
        e = exps["scale"]
        rules = e["rules"] or [profile["priors"]["rescaling_rule"]]
        eps = e["eps"] or [profile["priors"]["eps"]]
        lines.append(
            f"- **Scale** (C2): scales {', '.join(f'{s:g}' for s in e['scales'])} at rank "
            f"{e['rank']}, n = {n(e['n_train'])}, {e['seeds'] or seeds} seeds, priors "
            f"{', '.join(e['priors'])}; rules {', '.join(rules)} x eps "
            f"{', '.join(f'{x:g}' for x in eps)}"
            + ("; plus a run from scratch per seed (no pretraining, SGD, no prior)"
               if e["scratch"] else "") + "; best scales chosen on validation.")
    if exps["inference"]["enabled"]:
        e = exps["inference"]
        tuning = e["tuning"]
        if tuning["enabled"]:
            tuned = (f"every arm tuned on validation over the same number of values "
                     f"({len(tuning['scales'])}): learned prior scale "
                     f"{', '.join(f'{x:g}' for x in tuning['scales'])}; zero-mean and isotropic "
                     f"prior variance {', '.join(f'{x:g}' for x in tuning['variances'])}; `sgd` "
                     f"weight decay {', '.join(f'{x:g}' for x in tuning['weight_decays'])}; per "
                     "size and seed the run with the lowest validation NLL enters the claims")
        else:
            v = e["nonlearned_variance"]
            tuned = (f"untuned: learned prior at scale {e['scale']:g}; baselines with variance "
                     + (f"{v:g}" if v is not None else "trace-matched to the rescaled learned "
                        "prior"))
        lines.append(f"- **Inference** (C3-C5, H1): arms {', '.join(e['arms'])} at rank "
                     f"{e['rank']}, sizes {', '.join(n(x) for x in e['sizes'])}, "
                     f"{e['seeds'] or seeds} seeds; {tuned}. All arms start from the pretrained "
                     "backbone.")
    if exps["temperature"]["enabled"]:
        e = exps["temperature"]
        lines.append(f"- **Temperature**: `{e['method']}` + learned prior at scale {e['scale']:g}, "
                     f"n = {n(e['n_train'])}, T in "
                     f"{', '.join(f'{x:g}' for x in e['temperatures'])}, {e['chains']} chains "
                     f"per temperature on the same subset ({e['seeds'] or seeds} seed(s)); split "
                     "R-hat of the per-sample test NLL over the chains.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- building


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


def render_html(notebook_path: Path, nav: str) -> str:
    """Executed notebook -> self-contained HTML with code hidden and a navigation bar."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", raw_template=OFFLINE_TEMPLATE)
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(notebook_path, as_version=4))
    return _insert_after_body(body, nav)


def _insert_after_body(page: str, block: str) -> str:
    start = page.find("<body")
    end = page.find(">", start) + 1
    return page[:end] + block + page[end:]


def build_report(
    profile_arg: str | Path, root: Path | None = None, log=print, kernel_name: str | None = None,
    progress: bool = True, pack: int | None = None, backend: str | None = None,
    address: str | None = None,
) -> Path:
    """Run every notebook for a profile and write `outputs/<profile>/report.html`.

    `pack` overrides the profile's runs per pack (the CLI's --pack); `backend` its back end, on
    the Ray cluster at `address` for `ray` (`study.ray_backend`)."""
    import papermill

    path = profile_path(profile_arg)
    profile = load_profile(path)  # raises ProfileError before anything is written
    backend = backend or profile["backend"]
    connect(backend, address)  # a back end that is not ready fails before anything is written
    # outputs writable and owned by this file, device, prior files, training sizes
    preflight(profile, root, profile_file=path)
    out = output_dir(profile, root)
    nb_dir, html_dir = out / "notebooks", out / "html"
    nb_dir.mkdir(parents=True, exist_ok=True)
    html_dir.mkdir(parents=True, exist_ok=True)
    runs = plan(profile)
    log(f"profile {profile['name']}: {len(runs)} runs planned; outputs in {out}")
    # train first, with progress bars and a time estimate here; the notebooks then find every
    # run done and only read results
    start = time.perf_counter()
    prepare_priors(profile, root, progress=progress)
    timings = {"priors": round(time.perf_counter() - start, 1)}
    counts = sweep_study(profile, EXPERIMENTS, root, progress=progress, pack=pack,
                         backend=backend, address=address)
    timings["runs"] = counts["wall_time_s"]
    log(f"runs: {counts}")
    params = {"profile": str(path.resolve()), "outputs_root": str(out.parent.resolve()),
              "progress": False}
    for name in NOTEBOOKS:
        start = time.perf_counter()
        log(f"[{name}] running ...")
        papermill.execute_notebook(
            str(NOTEBOOK_DIR / f"{name}.ipynb"), str(nb_dir / f"{name}.ipynb"),
            parameters=params, progress_bar=False, kernel_name=kernel_name,
            cwd=str(Path.cwd()),
        )
        timings[name] = round(time.perf_counter() - start, 1)
        log(f"[{name}] done in {timings[name]} s")
    for name in NOTEBOOKS:
        is_report = name == "06_report"
        page = render_html(nb_dir / f"{name}.ipynb",
                           _nav(profile["name"], name, "html/" if is_report else ""))
        atomic_write_text(out / "report.html" if is_report else html_dir / f"{name}.html", page)
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=1))
    log(f"report: {out / 'report.html'}")
    return out / "report.html"
