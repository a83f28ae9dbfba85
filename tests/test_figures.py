"""Report figures from real measured results: PNG and PDF, non-empty, reproducible bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline import figures

MEASURED = Path(__file__).parent.parent / "reports" / "measured"


@pytest.fixture(scope="module")
def trials() -> pd.DataFrame:
    return pd.read_csv(MEASURED / "search_demo_cfmnist_irm" / "trials.csv")


def _check(paths: list[Path]) -> None:
    png, pdf = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


def test_trial_figures(trials, tmp_path):
    _check(figures.accuracy_vs_penalty(trials, tmp_path / "fig1"))
    _check(figures.accuracy_heatmap(trials, tmp_path / "fig4"))
    _check(figures.train_vs_test(trials, tmp_path / "fig5"))


def test_schedule_and_curve_figures(tmp_path):
    configs = [{"schedule": "constant", "penalty_weight": 1e4, "anneal_iters": 100},
               {"schedule": "polynomial", "poly_k": 1.0, "poly_power": 2.0, "anneal_iters": 50,
                "penalty_cap": 1e5}]
    _check(figures.schedules_used(configs, 501, tmp_path / "fig2"))
    results = {m: json.loads((MEASURED / f"cfmnist_{m}_paper_bf16.json").read_text())
               for m in ("erm", "irm")}
    _check(figures.training_curves(results, tmp_path / "fig3"))


def test_final_penalty_weight_follows_the_schedule(trials):
    row = trials[trials["status"] == "ok"].iloc[0]
    expected = row["config.penalty_weight"] if row["steps"] > row["config.anneal_iters"] else 1.0
    assert figures.final_penalty_weight(row) == pytest.approx(expected)


def test_figures_are_byte_identical_when_redrawn(trials, tmp_path):
    first = figures.train_vs_test(trials, tmp_path / "a")
    second = figures.train_vs_test(trials, tmp_path / "b")
    for x, y in zip(first, second, strict=True):
        assert x.read_bytes() == y.read_bytes()
