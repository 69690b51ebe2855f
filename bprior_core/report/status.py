"""What the report says about the study itself: the profile, how many runs are done, the
choices tuning made, grid edges, and where the time went (`timings.json`, run seconds)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..claims import MARGINS
from .markup import _esc, _md

RELIABILITY_MISSING = (
    "No reliability diagram: these result records hold the ECE but not its per-bin data "
    "(records written before bprior stored `reliability`, the per-bin confidence, accuracy and "
    "count of each prediction on the test set; `tables.reliability_bins`).")


def profile_html(profile: Mapping) -> str:
    """The profile a page was run with, as one line."""
    return (f"<p>Profile <code>{_esc(profile.name)}</code>: "
            f"{_esc(profile.description)}</p>")


def sweep_html(counts: Mapping, experiment: str = "") -> str:
    """`run_sweep`'s counts as one sentence."""
    what = f" of the {_esc(experiment)} experiment" if experiment else ""
    ran, div = counts.get("ran", 0), counts.get("diverged", 0)
    trained = (f"{ran} trained now ({div} diverged) in {counts.get('wall_time_s', 0):g} s"
               if ran else "none trained now")
    return (f"<p>{counts.get('planned', 0)} runs{what} planned: "
            f"{counts.get('skipped', 0)} read from stored results, {trained}.</p>")


def results_status_html(profile: Mapping, folder: Path, records: Sequence, planned: int,
                        profile_arg: str | None = None, root: Path | None = None) -> str:
    """Where the stored results were read from and how many there are; with none, where it
    looked and the command that fills the folder."""
    name = profile_arg or profile.name
    if records:
        return (f"<p>Read {len(records)} stored runs (of {planned} planned) for profile "
                f"<code>{_esc(profile.name)}</code> from <code>{_esc(folder)}</code>.</p>")
    outputs = f" --outputs {root}" if root else ""
    return (f"<p><b>No stored results</b> for profile <code>{_esc(profile.name)}</code>: "
            f"looked in <code>{_esc(Path(folder) / 'runs')}</code>. Fill it with "
            f"<code>bprior run --profile {_esc(name)}{_esc(outputs)}</code> (or "
            f"<code>bprior report --profile {_esc(name)}{_esc(outputs)}</code> for the HTML "
            "report too), or set <code>outputs_root</code> in the parameters cell to the "
            "folder that holds your runs.</p>")


def choice_agreement_markdown(agreement: Mapping | None) -> str:
    """`selection.choice_agreement` in words (empty where it does not apply)."""
    if not agreement:
        return ""
    agree, total = agreement["agree"], agreement["total"]
    return (f"**Held-out split vs fixed validation set.** The tuning runs were scored on each "
            f"training subset's held-out fifth (Harvey et al.'s protocol); the fixed validation "
            f"set would have chosen the same grid point in {agree} of {total} cases "
            f"({100 * agree / total:.0f} %).")


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


TIMINGS = "timings.json"  # wall-clock seconds per stage of `bprior report`, beside the report
NOTEBOOK_SECONDS = "notebook_seconds"  # in TIMINGS: each notebook's own seconds (they overlap)
STUDY_STAGES = {"priors_s": "priors", "planned_s": "tuning and single-phase runs",
                "final_s": "final runs"}


def study_timings(counts: dict[str, float]) -> dict[str, float]:
    """The study's stages for `timings.json`, from `run_study`'s counts."""
    return {stage: counts[key] for key, stage in STUDY_STAGES.items()}


def _read_timings(folder: Path) -> dict | None:
    """The stored `timings.json`, or None where there is no readable one."""
    try:
        timings = json.loads((Path(folder) / TIMINGS).read_text())
    except (OSError, ValueError):
        return None
    return timings if isinstance(timings, dict) else None


def _seconds(timings: dict) -> dict[str, float]:
    return {k: v for k, v in timings.items() if isinstance(v, (int, float))}


def _stored_timings(folder: Path) -> dict[str, float] | None:
    """The stages of the stored `timings.json` with their seconds, or None where there is no
    readable file."""
    timings = _read_timings(folder)
    return None if timings is None else _seconds(timings)


def stored_study_timings(folder: Path) -> dict[str, float]:
    """The study's stages of the stored `timings.json` (none where there is none): a report
    built again without running the study keeps them."""
    timings = _stored_timings(folder) or {}
    return {stage: timings[stage] for stage in STUDY_STAGES.values() if stage in timings}


def timings_markdown(folder: Path) -> str:
    """The wall clock of the report's stages (`timings.json`: priors, runs, the notebooks as they
    finished the last time), or a line saying there is none yet."""
    stored = _read_timings(folder)
    if stored is None:
        return ("No timings yet: `bprior report` writes them (`timings.json`); `bprior run` "
                "alone does not.")
    timings = _seconds(stored)
    rows = "".join(f"| {_md(k)} | {float(v):.0f} s |\n" for k, v in timings.items())
    total = sum(timings.values())
    each = _seconds(stored.get(NOTEBOOK_SECONDS) or {})
    overlap = ("\nEach notebook's own time (they ran side by side): "
               + ", ".join(f"{_md(k)} {float(v):.0f} s" for k, v in each.items()) + ".\n"
               if each else "")
    return ("Wall clock of the stages of `bprior report` (`timings.json`; the notebooks' time "
            "is that of their last run; a stage with nothing left to do takes a "
            "moment):\n\n"
            "| stage | time |\n|---|---|\n" + rows
            + f"| **all of these** | **{total / 60:.1f} min** |\n" + overlap)


def run_seconds_table(records: Sequence[Mapping]) -> object:
    """Where the training time went: per experiment and phase (tuning, final, single), the runs
    and their run-seconds (each run's own time; packs and workers run them side by side)."""
    import pandas as pd

    rows: dict[tuple, list] = {}
    for r in records:
        cfg = r.get("config") or {}
        key = (cfg.get("experiment"), cfg.get("phase") or "single")
        rows.setdefault(key, []).append(float(r.get("wall_time_s") or 0.0))
    return pd.DataFrame([{"experiment": e, "phase": p, "runs": len(v),
                          "run-seconds": round(sum(v)), "per run (s)": round(sum(v) / len(v), 2)}
                         for (e, p), v in sorted(rows.items())])
