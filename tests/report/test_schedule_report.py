"""The schedule study's table and figures, from a real tiny study: every family searched with
the same budget (planned searches on a local Ray), the grids, the selections retrained."""

from __future__ import annotations

import json

import pytest
import ray

from pipeline.evaluate import evaluate_selected
from pipeline.params.schedule_study import schedule_study_settings, study_search_spec
from pipeline.report import schedule_figures
from pipeline.report.inputs import Inputs, load_schedules
from pipeline.report.schedule_table import (
    best_family,
    schedule_latex,
    schedule_markdown,
    schedule_rows,
)
from pipeline.search.runner import run_search
from tests.dvc_stages.project_copy import tiny_params


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_envs_dir):
    """results/ of the tiny profile's schedule study (dvc.yaml's layout), and its settings."""
    params = tiny_params()
    params["schedule_study"]["families"] = ["constant", "step", "polynomial"]
    params["search"]["selection"] = "irm_paper"
    results = tmp_path_factory.mktemp("schedule-results")
    settings = schedule_study_settings(params["schedule_study"])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        for family in settings.families:
            out = results / "schedules" / "search" / f"colored_fashion_mnist-irm-{family}"
            run_search(study_search_spec(params, family, "colored_fashion_mnist", "irm",
                                         str(tiny_envs_dir), str(out)), log=lambda _: None)
            evaluation = evaluate_selected(out, [1000, 1001], str(tiny_envs_dir))
            path = results / "schedules" / "evaluate" / f"colored_fashion_mnist-irm-{family}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(evaluation))
        for grid in ("landscape", "power_sweep"):
            run_search(study_search_spec(params, grid, "colored_fashion_mnist", "irm",
                                         str(tiny_envs_dir),
                                         str(results / "schedules" / grid /
                                             "colored_fashion_mnist")), log=lambda _: None)
    finally:
        ray.shutdown()
    inputs = Inputs({}, {}, {}, {})
    load_schedules(inputs, settings, results, tiny_envs_dir)
    return inputs, settings, results


def _check(paths):
    png, pdf = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_every_family_had_the_same_budget_and_the_table_has_a_row_each(study):
    inputs, settings, _ = study
    rows = schedule_rows(inputs.schedule_searches, inputs.schedule_evaluations)
    assert [r["family"] for r in rows] == ["constant", "step", "polynomial"]
    assert {r["trials"] for r in rows} == {settings.trials}
    for r in rows:
        assert 1 <= r["near"] <= r["trials"] or r["test"] is None
        assert r["n_eval"] == 2 and r["selection"] == "irm_paper"
    markdown = schedule_markdown(rows, inputs.schedule_fixed)
    assert "USES TEST DATA" in markdown and "(REDUCED" not in markdown  # said in the figures
    assert markdown.count("| constant |") == 1
    latex = schedule_latex(rows, inputs.schedule_fixed)
    assert r"\begin{tabular}{llrr}" in latex and "±" not in latex and "_" not in latex.replace(
        r"\_", "")
    assert set(best_family(rows).values()) <= {"constant", "step", "polynomial"}


def test_figures_name_their_data_and_selection(study, tmp_path):
    inputs, _, _ = study
    searches = inputs.schedule_searches
    _check(schedule_figures.family_trials(searches, tmp_path / "fig8"))
    configs = {f"irm, {k.rsplit('-', 1)[1]}": best["config"] for k, (_, best) in
               searches.items()}
    _check(schedule_figures.selected_schedules(configs, tmp_path / "fig9", "selection: x"))
    landscape = inputs.schedule_grids["landscape-colored_fashion_mnist"]
    assert len(landscape) == 4  # the 2 x 2 grid, each point once
    _check(schedule_figures.landscape(landscape, tmp_path / "fig4"))
    power = inputs.schedule_grids["power_sweep-colored_fashion_mnist"]
    assert sorted(power["config.poly_power"]) == [1.0, 2.0]
    _check(schedule_figures.power_sweep(power, tmp_path / "fig10"))


def test_titles_say_data_and_rule(study, monkeypatch, tmp_path):
    inputs, _, _ = study
    titles = []
    real = schedule_figures.save

    def spy(fig, path, title_size=9):
        titles.extend(ax.get_title() for ax in fig.axes if ax.get_title())
        return real(fig, path, title_size)

    monkeypatch.setattr(schedule_figures, "save", spy)
    schedule_figures.family_trials(inputs.schedule_searches, tmp_path / "a")
    schedule_figures.landscape(inputs.schedule_grids["landscape-colored_fashion_mnist"],
                               tmp_path / "b")
    schedule_figures.power_sweep(inputs.schedule_grids["power_sweep-colored_fashion_mnist"],
                                 tmp_path / "c")
    configs = {k: best["config"] for k, (_, best) in inputs.schedule_searches.items()}
    schedule_figures.selected_schedules(configs, tmp_path / "d", "colored_fashion_mnist, "
                                        "selection: " + schedule_figures.rule_text("irm_paper"))
    flat = [t.replace("\n", " ") for t in titles]
    assert "irm_paper (USES TEST DATA)" in flat[0] and "REDUCED" in flat[0]
    assert "no selection" in flat[1] and "REDUCED" in flat[1] and "irm_paper" in flat[1]
    assert "no selection" in flat[2] and "REDUCED" in flat[2]
    assert "USES TEST DATA" in flat[3]



def test_the_power_sweep_trains_lambda_t_to_the_p_after_the_anneal(study):
    _, settings, results = study
    grid = settings.grids["power_sweep"]
    anneal, k = grid["set"]["anneal_iters"], grid["set"]["poly_k"]
    records = sorted((results / "schedules" / "power_sweep" / "colored_fashion_mnist" /
                      "trials").glob("*.json"))
    records = [json.loads(r.read_text()) for r in records]
    assert sorted(r["result"]["config"]["poly_power"] for r in records) == [1.0, 2.0]
    for record in records:
        p = record["result"]["config"]["poly_power"]
        weights = record["result"]["curves"]["penalty_weight"]
        assert weights[:anneal] == [1.0] * anneal  # IRM's weight before the anneal
        assert weights[anneal:] == pytest.approx([k * (t + 1) ** p
                                                  for t in range(len(weights) - anneal)])
