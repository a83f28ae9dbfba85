"""The trials table's columns that figures read instead of rebuilding configs."""

from __future__ import annotations

import math

from pipeline.config import make_config
from pipeline.schedules import curve
from pipeline.search.table import final_penalty_weight


def test_final_penalty_weight_is_the_recorded_weight_at_the_runs_last_step():
    cfg = make_config(None, method="irm", schedule="polynomial", poly_k=2.0, poly_power=1.5,
                      anneal_iters=3, steps=30)
    weights = curve(cfg.schedule_obj(), cfg.steps)
    result = {"curves": {"penalty_weight": weights}}
    assert final_penalty_weight(result, 30) == weights[29] == 2.0 * 27 ** 1.5
    assert final_penalty_weight(result, 10) == weights[9]  # a shorter run length read off it
    assert final_penalty_weight(result, 31) is None  # stopped before: not a number
    assert final_penalty_weight({}, 10) is None  # no done record
    # an exponential schedule with penalty_cap=inf overflows: the trainer stores None (JSON has
    # no inf), and the table says inf, not a crash
    assert final_penalty_weight({"curves": {"penalty_weight": [1.0, None]}}, 2) == math.inf


def test_a_trials_config_is_built_and_checked_once(monkeypatch, tiny_envs_dir, tmp_path):
    """A trial checks each hyperparameter once, not once per helper that rebuilds its config
    (the penalty weight used to be checked five times in every trial)."""
    from pipeline.environments import load_envs
    from pipeline.hparams import HParam
    from pipeline.search.trial import TrialSetup, train_trial

    base = make_config(None, dataset="colored_fashion_mnist", envs_dir=str(tiny_envs_dir),
                       method="irm", hidden_dim=8, steps=6, anneal_iters=2, threads=1,
                       device="cpu").to_dict()
    sha = load_envs(tiny_envs_dir / "colored_fashion_mnist").manifest_sha256
    setup = TrialSetup(base=base, seeds=(0,), record_at=(), selection="oracle",
                       records_dir=str(tmp_path), search_hash="x", data_sha256=sha)
    checked = []
    original = HParam.check
    monkeypatch.setattr(HParam, "check", lambda self, name, value: (
        checked.append(name), original(self, name, value))[1])
    cfg = setup.config({"penalty_weight": 10.0})
    record = train_trial(setup, {"penalty_weight": 10.0}, cfg=cfg)  # as run_trial calls it
    assert checked.count("penalty_weight") == 1 and checked.count("lr") == 1
    assert record["key"] == setup.key({"penalty_weight": 10.0})  # the same key, rebuilt
