"""Report figures from real measured results: PNG and PDF, non-empty, reproducible bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.report import figures

MEASURED = Path(__file__).parent.parent.parent / "reports" / "measured"


@pytest.fixture(scope="module")
def trials() -> pd.DataFrame:
    table = pd.read_csv(MEASURED / "search_demo_cfmnist_irm" / "trials.csv")
    # the search records the penalty weight each trial's schedule reached at its last step;
    # this table predates that column. Its schedules are all constant: weight_before_anneal
    # until anneal_iters, penalty_weight from then on.
    assert (table["config.schedule"] == "constant").all()
    reached = table["steps"] - 1 >= table["config.anneal_iters"]
    table["final_penalty_weight"] = table["config.penalty_weight"].where(
        reached, table["config.weight_before_anneal"])
    return table


def _check(paths: list[Path]) -> None:
    png, pdf = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


def test_trial_figures(trials, tmp_path):
    _check(figures.accuracy_vs_penalty(trials, tmp_path / "fig1"))
    _check(figures.train_vs_test(trials, tmp_path / "fig5"))


def test_figure_1_plots_the_recorded_final_penalty_weight(trials, tmp_path, monkeypatch):
    drawn = {}
    scatterplot = figures.sns.scatterplot

    def spy(data, **kwargs):
        drawn["data"] = data
        return scatterplot(data=data, **kwargs)

    monkeypatch.setattr(figures.sns, "scatterplot", spy)
    marked = trials.assign(final_penalty_weight=trials["final_penalty_weight"] * 3)
    figures.accuracy_vs_penalty(marked, tmp_path / "fig1")
    data = drawn["data"]
    assert len(data) and (data["penalty weight"] == marked.loc[data.index,
                                                               "final_penalty_weight"]).all()
    with pytest.raises(KeyError, match="final_penalty_weight"):
        figures.accuracy_vs_penalty(trials.drop(columns="final_penalty_weight"),
                                    tmp_path / "fig1b")


def test_schedule_and_curve_figures(tmp_path):
    configs = [{"schedule": "constant", "penalty_weight": 1e4, "anneal_iters": 100},
               {"schedule": "polynomial", "poly_k": 1.0, "poly_power": 2.0, "anneal_iters": 50,
                "penalty_cap": 1e5}]
    _check(figures.schedules_used(configs, 501, tmp_path / "fig2"))
    results = {m: json.loads((MEASURED / f"cfmnist_{m}_paper_bf16.json").read_text())
               for m in ("erm", "irm")}
    _check(figures.training_curves(results, tmp_path / "fig3"))


def test_figures_are_byte_identical_when_redrawn(trials, tmp_path):
    first = figures.train_vs_test(trials, tmp_path / "a")
    second = figures.train_vs_test(trials, tmp_path / "b")
    for x, y in zip(first, second, strict=True):
        assert x.read_bytes() == y.read_bytes()


def test_sem_figure(sem_rows, sem_icp_rows, tmp_path):
    _check(figures.sem_errors(sem_rows, tmp_path / "fig6"))
    png, _ = figures.sem_errors(sem_rows + sem_icp_rows, tmp_path / "fig6_icp")
    assert png.stat().st_size > 10_000


def test_protocol_figure(protocol_results, tmp_path):
    _, results = protocol_results
    _check(figures.protocol_accuracy(results, tmp_path / "fig7"))


def test_protocol_figure_is_the_same_file_each_run(protocol_results, tmp_path):
    """Its dots are jittered: with the jitter seeded, two drawings are byte-identical (PNG)."""
    _, results = protocol_results
    first = figures.protocol_accuracy(results, tmp_path / "a")[0].read_bytes()
    second = figures.protocol_accuracy(results, tmp_path / "b")[0].read_bytes()
    assert first == second
