"""The report's build without a pipeline run: metrics.json and the HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.report.build import headline_metrics, to_html
from pipeline.report.inputs import Inputs

DATA = Path(__file__).parent.parent / "data"


def _sem_rows() -> list[dict]:
    return json.loads((DATA / "sem_rows.json").read_text())


def _inputs() -> Inputs:
    results = {p.stem: json.loads(p.read_text())
               for p in sorted((DATA / "eval_results").glob("*.json"))}
    return Inputs(results, {}, {}, {}, _sem_rows(), {"reps": 3})


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


def test_html_rendering_keeps_tables_and_figures():
    html = to_html("# T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![cap](figures/f.png)\n")
    assert "<table>" in html and '<img src="figures/f.png" alt="cap"' in html
    assert html.startswith("<!DOCTYPE html>")
