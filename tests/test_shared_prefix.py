"""Sharing the steps runs agree on (pipeline.shared_prefix): every result is the run alone."""

from __future__ import annotations

import math

import pytest

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.shared_prefix import check_shareable, controls, train_shared
from pipeline.training import train


def _cfg(**overrides):
    base = {"method": "irm", "hidden_dim": 16, "steps": 14, "anneal_iters": 5,
            "penalty_weight": 100.0, "eval_every": 4, "lr": 1e-3, "l2_weight": 1e-3}
    return make_config(None, **{**base, **overrides})


def _same_as_alone(results, cfgs, seeds, envs, record_at=()):
    for cfg, shared in zip(cfgs, results, strict=True):
        alone = train(cfg, seeds, envset=envs, record_at=record_at)
        assert shared.config == alone.config
        assert shared.members == alone.members  # every metric, bit for bit
        assert shared.curves == alone.curves  # every step's records and evaluations
        assert shared.at_steps == alone.at_steps
        assert shared.runtime["steps_run"] == alone.runtime["steps_run"]


def test_grid_of_weights_and_anneals_equals_runs_alone(tiny_envs):
    # IRM's constant schedule: weight 1 before each anneal, so the anneals share prefixes
    cfgs = [_cfg(penalty_weight=w, anneal_iters=a) for a in (0, 3, 7) for w in (1e2, 1e4)]
    cfgs.append(_cfg(penalty_weight=1e4, anneal_iters=7, steps=10))  # a shorter run too
    results, sharing = train_shared(cfgs, [1, 2], envset=tiny_envs, record_at=[6])
    _same_as_alone(results, cfgs, [1, 2], tiny_envs, record_at=[6])
    assert sharing.steps_alone == 6 * 14 + 10
    assert sharing.steps_trained == (
        2 * 14  # anneal 0: the weight differs from step 0 on
        + 3 + 2 * (14 - 3)  # the trunk at weight 1 to step 3, anneal 3's two weights
        + 4 + (14 - 7)  # the trunk on to step 7, anneal 7 at 1e2
        + 2 + 1 + 5)  # 1e4: together to step 9, the 10-step run's last forward, the 14-step run
    assert results[3].runtime["shared_steps"] == 3  # forked from anneal 3 at 1e2, at step 3
    assert results[5].runtime["shared_steps"] == 7


@pytest.mark.parametrize("overrides", [
    {"batch_size": 32},  # minibatches: the samplers' generators are forked too
    {"jump_rule": "reset_adam"},  # Adam re-created at the anneal
    {"method": "vrex"},
])
def test_families_and_options_equal_runs_alone(tiny_envs, overrides):
    cfgs = [_cfg(**overrides, schedule="constant", anneal_iters=4),
            _cfg(**overrides, schedule="linear", anneal_iters=4, ramp_iters=5),
            _cfg(**overrides, schedule="polynomial", anneal_iters=4, poly_power=1.5),
            _cfg(**overrides, schedule="polynomial", anneal_iters=4, poly_power=2.5),
            _cfg(**overrides, schedule="step", step_milestones=[4, 9],
                 step_values=[1e2, 1e4])]
    results, sharing = train_shared(cfgs, [0, 3], envset=tiny_envs)
    _same_as_alone(results, cfgs, [0, 3], tiny_envs)
    assert sharing.forks == 4 and sharing.steps_trained < sharing.steps_alone


def test_diverging_runs_stop_where_they_would_alone(tiny_envs):
    # an infinite weight sends the loss to inf at the anneal: the members diverge there
    cfgs = [_cfg(jump_rule="none", penalty_weight=w, anneal_iters=a, eval_every=3)
            for a in (2, 6) for w in (math.inf, 1e2)]
    results, _ = train_shared(cfgs, [0, 1], envset=tiny_envs)
    assert results[0].members[0]["status"] == "diverged"
    assert results[0].runtime["steps_run"] == 4  # diverged at 2, stopped at the evaluation at 3
    assert results[1].members[0]["status"] == "ok"
    _same_as_alone(results, cfgs, [0, 1], tiny_envs)


def test_identical_runs_are_trained_once(tiny_envs):
    # ERM has no penalty: its schedule keys change nothing, so the three are one run
    cfgs = [_cfg(method="erm", penalty_weight=w) for w in (1e2, 1e3, 1e4)]
    results, sharing = train_shared(cfgs, [0], envset=tiny_envs)
    assert sharing.steps_trained == 14 and sharing.steps_alone == 3 * 14
    assert [r.config["penalty_weight"] for r in results] == [1e2, 1e3, 1e4]
    assert results[0].members == results[2].members


def test_only_schedule_keys_and_steps_may_differ():
    with pytest.raises(ConfigError, match=r"differ in lr \(0.001 vs 0.002\)"):
        check_shareable([_cfg(), _cfg(lr=2e-3)])
    check_shareable([_cfg(), _cfg(anneal_iters=9, steps=20, schedule="linear")])


def test_controls_are_the_weights_and_adam_resets():
    assert controls(_cfg(steps=8, anneal_iters=3, penalty_weight=50.0)) == [
        (1.0, False)] * 3 + [(50.0, False)] * 4 + [(50.0, -1)]  # -1: the last step
    assert controls(_cfg(steps=6, anneal_iters=3, jump_rule="reset_adam"))[3] == (100.0, True)
    assert controls(_cfg(method="erm", steps=4)) == [(0.0, False)] * 3 + [(0.0, -1)]


def test_runs_that_differ_only_in_the_last_steps_weight_are_not_twins(tiny_envs):
    # every update agrees (anneal at the last step or after it), but the last step's
    # objective differs: an infinite weight there diverges one run, not the other
    cfgs = [_cfg(anneal_iters=13, penalty_weight=math.inf, jump_rule="none"),
            _cfg(anneal_iters=20, penalty_weight=math.inf, jump_rule="none")]
    results, sharing = train_shared(cfgs, [0], envset=tiny_envs)
    assert results[0].members[0]["status"] == "diverged"
    assert results[1].members[0]["status"] == "ok"
    assert sharing.steps_trained == 13 + 1 + 1  # the updates once, each last step apart
    _same_as_alone(results, cfgs, [0], tiny_envs)


def test_minibatch_train_accuracy_is_each_runs_own_under_sharing(tiny_envs):
    # different lengths: each run evaluates the whole environments at its own last step,
    # and records a minibatch's accuracy at the other's
    cfgs = [_cfg(batch_size=32, steps=9, eval_every=50), _cfg(batch_size=32, steps=14,
                                                              eval_every=50)]
    results, _ = train_shared(cfgs, [0, 1], envset=tiny_envs)
    _same_as_alone(results, cfgs, [0, 1], tiny_envs)


def test_a_failing_branch_fails_alone(tiny_envs, monkeypatch):
    from pipeline import training

    real = training.Trainer.fork

    def fork(self, cfg, record_at=()):
        if cfg.penalty_weight == 7.0:
            raise RuntimeError("boom")
        return real(self, cfg, record_at)

    monkeypatch.setattr(training.Trainer, "fork", fork)
    cfgs = [_cfg(penalty_weight=w) for w in (100.0, 7.0, 300.0)]
    kept = []
    results, _ = train_shared(cfgs, [0], envset=tiny_envs,
                              on_result=lambda i, r: kept.append(i))
    assert isinstance(results[1], RuntimeError)
    assert sorted(kept) == [0, 2]
    _same_as_alone([results[0], results[2]], [cfgs[0], cfgs[2]], [0], tiny_envs)
