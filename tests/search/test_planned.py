"""Searches asked up front and trained as prefix trees (share_prefix) on real Ray and Optuna."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest

from pipeline.errors import ConfigError
from pipeline.search.runner import run_search
from pipeline.search.spec import SearchSpec, resolve
from pipeline.search.trial import read_record, rerun

GRID = {"landscape": {"penalty_weight": {"choice": [1e2, 1e4]},
                      "anneal_iters": {"choice": [2, 5, 8]}}}
FAMILY = {"step": {"schedule": {"choice": ["step"]},
                   "step_milestones": {"choice": [[3, 6], [5, 8]]},
                   "step_values": {"choice": [[1e4, 1e6], [1e2, 1e4]]}}}
FIXED = {"hidden_dim": 8, "steps": 12, "lr": 1e-3, "l2_weight": 1e-3}


def _spec(out, envs_dir, **overrides) -> SearchSpec:
    values = {"dataset": "colored_fashion_mnist", "method": "irm", "spaces": GRID,
              "space": "landscape", "out": str(out), "envs_dir": str(envs_dir),
              "sampler": "grid", "seeds": [0, 1], "fixed": dict(FIXED), "report_every": 4,
              "selection": "irm_paper", "share_prefix": True}
    return SearchSpec(**{**values, **overrides})


@pytest.fixture(scope="module")
def grid_search(local_ray, tmp_path_factory, tiny_envs_dir):
    out = tmp_path_factory.mktemp("planned-grid")
    lines: list[str] = []
    return run_search(_spec(out, tiny_envs_dir), log=lines.append), lines


def test_grid_sampler_asks_every_point_once_and_optuna_is_told_each_score(grid_search,
                                                                          tiny_envs_dir):
    outcome, _ = grid_search
    table = pd.read_parquet(outcome.out / "trials.parquet")
    points = sorted(zip(table["config.penalty_weight"], table["config.anneal_iters"],
                        strict=True))
    assert points == sorted((w, a) for w in (1e2, 1e4) for a in (2, 5, 8))
    assert (table["status"] == "ok").all() and set(table["selection"]) == {"irm_paper"}
    study = optuna.load_study(study_name=resolve(_spec(outcome.out, tiny_envs_dir)).study_name,
                              storage=f"sqlite:///{outcome.out / 'study.db'}")
    done = {t.number: t.value for t in study.trials}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    by_trial = dict(zip(table["trial"], table["score"], strict=True))
    assert done == {int(k.split("-")[1]): v for k, v in by_trial.items()}
    assert json.loads((outcome.out / "best.json").read_text())["selection"] == "irm_paper"


def test_shared_steps_are_saved_and_every_trial_reruns_alone_bit_for_bit(grid_search):
    outcome, lines = grid_search
    records = [read_record(outcome.out / "trials", k) for k in
               pd.read_parquet(outcome.out / "trials.parquet")["trial_key"]]
    totals = json.loads((outcome.out / "shared_prefix.json").read_text())
    trained, alone = totals["steps_trained"], totals["steps_alone"]
    assert alone == 6 * 12 and trained < alone  # the anneals' weight-1 steps were shared
    assert sum(c["trials"] for c in totals["chunks"]) == 6
    assert trained == sum(c["steps_trained"] for c in totals["chunks"])
    assert any(f"prefix sharing: {trained} steps trained" in line for line in lines)
    for record in records:
        again = rerun(record)
        assert again.members == record["result"]["members"]
        assert again.curves == record["result"]["curves"]
    assert any("prefix-sharing task" in line for line in lines)


def test_a_rerun_trains_nothing_again(grid_search, tiny_envs_dir):
    outcome, _ = grid_search
    executions = (outcome.out / "trials" / "executions.jsonl").read_text().splitlines()
    lines: list[str] = []
    again = run_search(_spec(outcome.out, tiny_envs_dir), log=lines.append)
    assert any("6 done before), 0 prefix-sharing tasks" in line for line in lines), lines
    assert (outcome.out / "trials" / "executions.jsonl").read_text().splitlines() == executions
    assert again.best["trial_key"] == outcome.best["trial_key"]


def test_random_sampler_with_list_valued_choices(local_ray, tmp_path, tiny_envs_dir):
    outcome = run_search(_spec(tmp_path, tiny_envs_dir, spaces=FAMILY, space="step",
                               sampler="random", trials=3))
    table = pd.read_parquet(outcome.out / "trials.parquet")
    assert len(table) == 3 and (table["status"] == "ok").all()
    assert set(table["config.step_milestones"]) <= {"[3, 6]", "[5, 8]"}
    assert set(table["config.schedule"]) == {"step"}


@pytest.mark.parametrize("overrides,match", [
    ({"sampler": "tpe"}, "random or grid"),
    ({"asha_grace": 9}, "no ASHA"),
])
def test_share_prefix_refuses_what_it_cannot_do(tiny_envs_dir, tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve(_spec(tmp_path, tiny_envs_dir, **overrides))
