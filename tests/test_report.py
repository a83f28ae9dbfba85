"""The report's parts that need no pipeline run: golden tables, metrics, provenance, HTML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.report import (
    Inputs,
    headline_metrics,
    inputs_hash,
    scale_down,
    study_settings,
    to_html,
)
from pipeline.sem_study import sem_table_latex, sem_table_markdown

DATA = Path(__file__).parent / "data"


def _sem_rows() -> list[dict]:
    return json.loads((DATA / "sem_rows.json").read_text())


def _inputs() -> Inputs:
    results = {p.stem: json.loads(p.read_text())
               for p in sorted((DATA / "eval_results").glob("*.json"))}
    return Inputs(results, {}, {}, {}, _sem_rows(), {"reps": 3})


def test_sem_tables_match_the_committed_golden_output():
    # regenerate with the snippet in tests/data/README.md after an intended change
    assert sem_table_markdown(_sem_rows()) == (DATA / "golden" / "sem.md").read_text()
    assert sem_table_latex(_sem_rows()) == (DATA / "golden" / "sem.tex").read_text()


def test_headline_metrics_are_the_tables_numbers_and_nothing_run_specific():
    metrics = headline_metrics(_inputs())
    fashion = metrics["accuracy"]["colored_fashion_mnist"]
    assert set(fashion) == {"irm_selected_by_train_domain_val"}
    entry = fashion["irm_selected_by_train_domain_val"]
    assert set(entry) == {"train", "test", "test_std", "seeds", "diverged"}
    assert set(metrics["sem"]) == {"FOU", "FOS", "FEU", "FES", "POU", "POS", "PEU", "PES"}
    feu = [r for r in _sem_rows() if r["setup"] == "FEU" and r["method"] == "irm"]
    expected = sum(r["causal_error"] for r in feu) / len(feu)
    assert metrics["sem"]["FEU"]["irm"]["causal_error"] == pytest.approx(expected, abs=1e-6)
    text = json.dumps(metrics)
    for run_specific in ("wall", "git", "time", "/"):
        assert run_specific not in text  # two runs from scratch must give the same bytes


def test_scale_down_lists_every_difference_from_the_paper_profile():
    ours = {"search": {"trials": 4, "set": {"dtype": "bf16"}}, "study": {"a": [1]}}
    paper = {"search": {"trials": 50, "set": {}}, "study": {"a": [1]}}
    assert scale_down(ours, paper) == ['`search.set.dtype`: "bf16" (paper profile: not set)',
                                       "`search.trials`: 4 (paper profile: 50)"]
    assert scale_down(paper, paper) == []


def test_inputs_hash_ignores_the_report_stage_itself(tmp_path):
    lock = {"schema": "2.0", "stages": {"search": {"outs": [{"md5": "a"}]},
                                        "report": {"outs": [{"md5": "b"}]}}}
    path = tmp_path / "dvc.lock"
    path.write_text(yaml.safe_dump(lock))
    first = inputs_hash(path)
    lock["stages"]["report"]["outs"][0]["md5"] = "c"
    path.write_text(yaml.safe_dump(lock))
    assert inputs_hash(path) == first
    lock["stages"]["search"]["outs"][0]["md5"] = "d"
    path.write_text(yaml.safe_dump(lock))
    assert inputs_hash(path) != first
    assert inputs_hash(tmp_path / "missing.lock") is None


@pytest.mark.parametrize("section, needle", [
    ({"datasets": ["colored_mnsit"]}, "colored_mnsit.*colored_mnist"),
    ({"methods": ["irmv2"]}, "irmv2"),
    ({"presets": ["irm_papr"]}, "irm_papr"),
    ({"dataset": ["sem"]}, "dataset"),
    ({"methods": "irm"}, "study.methods"),
])
def test_bad_study_names_the_key_and_the_choices(section, needle):
    with pytest.raises(ConfigError, match=needle):
        study_settings(section)


def test_html_rendering_keeps_tables_and_figures():
    html = to_html("# T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![cap](figures/f.png)\n")
    assert "<table>" in html and '<img src="figures/f.png" alt="cap"' in html
    assert html.startswith("<!DOCTYPE html>")
