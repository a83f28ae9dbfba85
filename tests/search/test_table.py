"""The trials table's columns that figures read instead of rebuilding configs."""

from __future__ import annotations

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
