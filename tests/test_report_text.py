"""Report text generated from the profile that ran, and values in words where a number cannot
be given (issue 23)."""

from __future__ import annotations

import copy
import json

import pandas as pd

from bprior_core import report, tables
from bprior_core.config import load_profile
from bprior_core.formatting import interval_cell
from bprior_core.report import NOTEBOOK_DIR


def test_the_intros_describe_the_study_that_ran():
    cpu = load_profile("cpu")
    rank = report.experiment_intro(cpu, "rank")
    assert rank.startswith("SGD with the learned ssl prior in its loss (MAP")
    assert "scales 1e2, 1e3, 1e5" in rank and "ranks 0, 1, 10" in rank
    scale = report.experiment_intro(cpu, "scale")
    assert "no run from scratch" in scale and "1e0, 1e2, 1e4, 1e6, 1e8" in scale
    temperature = report.experiment_intro(cpu, "temperature")
    assert "these chains hold 3, so they are not computed" in temperature
    assert "one seed: one value per temperature" in temperature
    longer = copy.deepcopy(cpu)
    longer = longer.replace("train", dict(cycles=8))
    assert "the dashed line marks R-hat = 1.05" in report.experiment_intro(longer, "temperature")
    off = copy.deepcopy(cpu)
    off = off.replace("experiments.rank.enabled", False)
    assert report.experiment_intro(off, "rank") == "The rank experiment is not run in this profile."


def test_a_chain_set_without_r_hat_says_why_in_words():
    assert tables.too_short_text(4, 3) == ("not computed: 3 draws per chain (R-hat needs 4 or "
                                           "more)")
    assert tables.too_short_text(1, 40).startswith("not computed: one chain")


def test_intervals_past_what_accuracy_allows_are_cut_and_say_so():
    wide = {"ci_low": -2.9, "ci_high": 3.04}
    assert interval_cell(wide, "accuracy") == ("-100.00 .. +100.00 (cut: wider than accuracy "
                                                 "allows)")
    assert interval_cell({"ci_low": None, "ci_high": None}, "accuracy").startswith("no interval")
    rows = [{"claim": "C3", "comparison": "a vs b", "n_train": 10, "effect": 0.1,
             "ci_low": -2.9, "ci_high": 0.4, "level": 0.99, "n_seeds": 2}]
    table = tables.gains_table(rows)
    assert table["interval low"][0].startswith("-100 (cut")
    assert table["interval high"][0] == "+40.0"


def test_the_timings_table_reads_timings_json(tmp_path):
    assert "No timings yet" in report.timings_markdown(tmp_path)
    (tmp_path / "timings.json").write_text(json.dumps({"priors": 60.0, "runs": 120.0}))
    text = report.timings_markdown(tmp_path)
    assert "| priors | 60 s |" in text and "**3.0 min**" in text
    assert "side by side" not in text
    (tmp_path / "timings.json").write_text(json.dumps(
        {"priors": 60.0, "notebooks": 30.0,
         "notebook_seconds": {"02_rank": 20.0, "03_scale": 19.0}}))
    text = report.timings_markdown(tmp_path)
    assert "| notebooks | 30 s |" in text and "**1.5 min**" in text  # own times are not added
    assert r"side by side): 02\_rank 20 s, 03\_scale 19 s." in text


def test_every_notebook_cell_has_an_id():
    """nbformat warned once per notebook (MissingIDFieldWarning) where cells had none."""
    for path in NOTEBOOK_DIR.glob("*.ipynb"):
        nb = json.loads(path.read_text())
        ids = [c.get("id") for c in nb["cells"]]
        assert all(ids) and len(set(ids)) == len(ids), path.name


def test_the_settings_table_shows_one_row_per_fixed_setting():
    selection = {"parameter": "scale", "value": 10.0, "lr": 0.01, "val_nll": 0.5,
                 "tuning_seeds": [0, 1, 2],
                 "candidates": [{"value": v, "lr": lr, "val_nll": 1.0}
                                for v in (10.0, 1e3) for lr in (0.01, 0.03)]}
    records = [{"config": {"experiment": "inference", "arm": "sgd+learned", "n_train": 10},
                "seed": s, "selection": selection, "diagnostics": {"free_share": 0.25}}
               for s in (100, 101)]
    table = tables.settings_table(records)
    assert len(table) == 1 and isinstance(table, pd.DataFrame)
    row = table.iloc[0]
    assert row["evaluation seeds"] == 2 and row["on a grid edge"] == "value, lr"
    assert row["free share"] == "0.250" and row["value"] == "10"


def test_run_seconds_are_summed_per_experiment_and_phase():
    records = [{"config": {"experiment": "inference", "phase": p}, "wall_time_s": t}
               for p, t in (("tune", 1.0), ("tune", 2.0), ("final", 4.0))]
    records.append({"config": {"experiment": "rank"}, "wall_time_s": 0.5})
    table = report.run_seconds_table(records)
    rows = {(r["experiment"], r["phase"]): (r["runs"], r["run-seconds"])
            for _, r in table.iterrows()}
    assert rows == {("inference", "final"): (1, 4), ("inference", "tune"): (2, 3),
                    ("rank", "single"): (1, 0)}
