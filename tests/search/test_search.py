"""Searches on real Ray Tune and real Optuna (local, in this process), on a tiny real dataset."""

from __future__ import annotations

import json
import math

import optuna
import pandas as pd
import pytest
import ray

from pipeline.__main__ import main
from pipeline.search.runner import run_search
from pipeline.search.spec import SearchSpec

SPACES = {"irm": {"lr": {"log_uniform": [1e-3, 1e-2]},
                  "penalty_weight": {"log_uniform": [10.0, 1000.0]},
                  "steps": {"choice": [10, 20]}}}
FIXED = {"hidden_dim": 16, "anneal_iters": 5}


def _spec(out, envs_dir, **overrides) -> SearchSpec:
    values = {"dataset": "colored_fashion_mnist", "method": "irm", "spaces": SPACES,
              "out": str(out), "envs_dir": str(envs_dir), "trials": 4, "seeds": [0, 1],
              "fixed": dict(FIXED), "report_every": 5}
    return SearchSpec(**{**values, **overrides})


_RUNS: dict[str, object] = {}


@pytest.fixture(params=["tpe", "random"])
def finished_search(request, local_ray, tmp_path_factory, tiny_envs_dir):
    """A finished 4-trial search per sampler, run once and shared by the tests below."""
    sampler = request.param
    if sampler not in _RUNS:
        out = tmp_path_factory.mktemp(f"search-{sampler}")
        _RUNS[sampler] = run_search(_spec(out, tiny_envs_dir, sampler=sampler))
    return _RUNS[sampler]


def test_local_search_trains_every_trial_and_selects_by_the_named_rule(finished_search):
    out = finished_search.out
    table = pd.read_parquet(out / "trials.parquet")
    assert table["trial"].nunique() == 4
    assert (table["status"] == "ok").all()
    # steps is read off one run per trial: one row per trial and run length
    assert sorted(table.groupby("trial")["steps"].apply(sorted).iloc[0]) == [10, 20]
    assert len(table) == 8
    assert set(table["selection"]) == {"train_domain_val"}
    assert (table["config.holdout_fraction"] == 0.2).all()  # DomainBed's validation split
    assert (table["config.device"] == "cpu").all()  # no GPU share: never a GPU
    assert table["val_acc.mean"].notna().all() and table["test_acc.std"].notna().all()
    assert set(table["seeds"]) == {"0,1"}
    # the weight the trial reached, as the trainer recorded it (after the anneal: lambda)
    assert (table["final_penalty_weight"] == table["config.penalty_weight"]).all()
    assert pd.read_csv(out / "trials.csv")["trial_key"].tolist() == table["trial_key"].tolist()
    best = json.loads((out / "best.json").read_text())
    assert best["selection"] == "train_domain_val" and best["uses_test_data"] is False
    assert best["score"] == table["score"].max()
    assert best["config"]["lr"] == best["searched"]["lr"]
    assert best["config"]["steps"] == best["steps"]
    described = json.loads((out / "search.json").read_text())
    assert described["versions"]["ray"] == ray.__version__
    assert described["versions"]["optuna"] == optuna.__version__


def test_optuna_study_is_stored_with_every_trial(finished_search):
    described = json.loads((finished_search.out / "search.json").read_text())
    study = optuna.load_study(study_name=described["optuna_study"],
                              storage=described["optuna_storage"])
    assert len(study.trials) == 4
    assert study.user_attrs["selection"] == "train_domain_val"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    table = finished_search.table
    best_per_trial = max(r["score"] for r in table)  # a trial's value is its best run length
    assert study.best_value == pytest.approx(best_per_trial)


def test_rerun_reproduces_a_trial_bit_for_bit(finished_search, capsys, tmp_path):
    out = finished_search.out
    row = finished_search.table[0]
    assert main(["rerun", "--trial", row["trial"], "--search", str(out)]) == 0
    assert "identical to the stored trial, bit for bit" in capsys.readouterr().out
    # and the comparison can fail: a stored number that differs is caught
    record = json.loads((out / "trials" / f"{row['trial_key']}.json").read_text())
    record["result"]["at_steps"]["10"]["members"][1]["metrics"]["test_acc"] += 1e-7
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(record))
    assert main(["rerun", "--trial", str(tampered)]) == 1
    assert "DIFFERENT from the stored trial at: steps=10" in capsys.readouterr().out


def test_diverged_trial_is_recorded_as_diverged_and_the_search_goes_on(
        local_ray, tmp_path, tiny_envs_dir):
    # lambda = rate ** t, uncapped: rate 1e6 overflows within a few steps, 1.0001 stays ~1
    spaces = {"irm": {"exp_rate": {"choice": [1.0001, 1.0e6]}}}
    fixed = {**FIXED, "schedule": "exponential", "penalty_cap": math.inf, "anneal_iters": 2,
             "steps": 30}
    outcome = run_search(_spec(tmp_path, tiny_envs_dir, spaces=spaces, fixed=fixed,
                               sampler="grid", trials=None, selection="oracle"))
    rows = {json.loads(r["searched"])["exp_rate"]: r for r in outcome.table}
    assert rows[1.0e6]["status"] == "diverged"
    assert rows[1.0e6]["n_diverged"] == 2 and rows[1.0e6]["score"] is None
    assert rows[1.0001]["status"] == "ok" and rows[1.0001]["score"] > 0
    csv = pd.read_csv(tmp_path / "trials.csv")
    assert csv.loc[csv["status"] == "diverged", "score"].isna().all()  # no number for it
    assert outcome.best["trial"] == rows[1.0001]["trial"]
    assert outcome.best["uses_test_data"] is True  # oracle selection says so
    described = json.loads((tmp_path / "search.json").read_text())
    study = optuna.load_study(study_name=described["optuna_study"],
                              storage=described["optuna_storage"])
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "FAIL"]  # never a NaN value, never left RUNNING


def test_asha_stops_weak_trials_after_the_grace_period(local_ray, tmp_path, tiny_envs_dir):
    spaces = {"irm": {"lr": {"log_uniform": [1e-4, 1e-2]},
                      "penalty_weight": {"log_uniform": [10.0, 1000.0]},
                      "steps": {"choice": [40, 80]}}}
    fixed = {"hidden_dim": 32, "anneal_iters": 10}
    outcome = run_search(_spec(tmp_path, tiny_envs_dir, spaces=spaces, fixed=fixed, trials=8,
                               report_every=10, asha_grace=20))
    rows = outcome.table
    stopped = [r for r in rows if r["status"] == "stopped"]
    finished = [r for r in rows if r["status"] == "ok"]
    assert stopped and finished
    assert all(20 < r["steps"] < 80 and r["score"] is None for r in stopped)
    assert {r["steps"] for r in finished} == {40, 80}  # survivors ran to the end
    described = json.loads((tmp_path / "search.json").read_text())
    study = optuna.load_study(study_name=described["optuna_study"],
                              storage=described["optuna_storage"])
    states = {t.state.name for t in study.trials}
    assert states == {"COMPLETE", "PRUNED"}  # stopped early is pruned, not failed


def _one_dim(trial):
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)


def test_optuna_searcher_survives_a_restore_that_replays_a_finished_trial(tmp_path):
    """After a kill, Ray may restart a trial that Optuna already has as COMPLETE (Ray's own
    state lagged); the trial then reports from its done record. That must not crash."""
    from pipeline.search.ray_optuna import NoNaNOptunaSearch

    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def searcher():
        return NoNaNOptunaSearch(space=_one_dim, metric="score", mode="max",
                                 storage=optuna.storages.RDBStorage(storage),
                                 study_name="s", sampler=optuna.samplers.RandomSampler(0))

    before_kill = searcher()
    assert before_kill.suggest("t1") is not None
    before_kill.save(str(tmp_path / "state.pkl"))  # Ray's last saved state: t1 running
    final = {"score": 0.7, "status": "ok", "finished": True, "training_iteration": 1}
    before_kill.on_trial_complete("t1", final)
    restored = searcher()
    restored.restore(str(tmp_path / "state.pkl"))
    restored.on_trial_result("t1", final)  # replayed from the done record
    restored.on_trial_complete("t1", final)
    study = optuna.load_study(study_name="s", storage=storage)
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 0.7)]
    nan = {"score": math.nan, "status": "ok", "finished": True, "training_iteration": 1}
    assert restored.suggest("t2") is not None
    restored.on_trial_result("t2", nan)  # ignored: Optuna never sees a NaN
    restored.on_trial_complete("t2", nan)
    states = [t.state.name for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert states == ["COMPLETE", "FAIL"]


def test_progress_line_counts_trials_and_names_the_best():
    from types import SimpleNamespace as Trial

    from pipeline.search.ray_optuna import SearchProgress

    trials = [
        Trial(status="TERMINATED", trial_id="a", config={"lr": 0.01},
              last_result={"finished": True, "status": "ok", "score": 0.71}),
        Trial(status="TERMINATED", trial_id="b", config={"lr": 0.1},
              last_result={"finished": True, "status": "diverged"}),
        Trial(status="TERMINATED", trial_id="c", config={"lr": 0.02},
              last_result={"finished": False, "score": 0.9}),  # stopped by ASHA: not best
        Trial(status="ERROR", trial_id="d", config={"lr": 0.03}, last_result={}),
        Trial(status="RUNNING", trial_id="e", config={"lr": 0.04}, last_result={"step": 151}),
    ]
    line = SearchProgress(8, "irm_paper", steps=501)._line(trials)
    assert "4/8 finished (1 ok, 1 diverged, 1 failed, 1 stopped early)" in line
    assert "1 running (steps 151/501)" in line
    assert "best irm_paper: 0.7100 (a: lr=0.01)" in line


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_crashing_trial_is_retried_then_recorded_as_failed(local_ray, tmp_path, tiny_envs_dir):
    # device cuda:0 passes validation (a name) but raises in the trial on a CPU-only machine
    spaces = {"irm": {"device": {"choice": ["cpu", "cuda:0"]}}}
    fixed = {**FIXED, "steps": 10}
    outcome = run_search(_spec(tmp_path, tiny_envs_dir, spaces=spaces, fixed=fixed,
                               sampler="grid", trials=None, max_failures=1, selection="oracle"))
    rows = {json.loads(r["searched"])["device"]: r for r in outcome.table}
    assert rows["cpu"]["status"] == "ok"
    assert rows["cuda:0"]["status"] == "failed"
    assert "CUDA is not available" in rows["cuda:0"]["error"]
    attempts = [json.loads(line)["key"] for line in
                (tmp_path / "trials" / "executions.jsonl").read_text().splitlines()]
    assert attempts.count(rows["cuda:0"]["trial_key"]) == 2  # the first try and one retry
    assert outcome.best["trial"] == rows["cpu"]["trial"]
