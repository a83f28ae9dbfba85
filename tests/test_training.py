"""The batched trainer: member equivalence, faithfulness to IRM's code, divergence, options."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.plain_loop import train_plain
from pipeline.training import Trainer, train


def _cfg(**overrides):
    base = {"method": "irm", "hidden_dim": 16, "steps": 12, "anneal_iters": 5,
            "penalty_weight": 100.0, "eval_every": 4, "lr": 1e-3, "l2_weight": 1e-3}
    return make_config(None, **{**base, **overrides})


def _member_weights(trainer: Trainer, i: int) -> list[torch.Tensor]:
    return [p.detach()[i] for p in trainer.model.member_parameters()]


@pytest.mark.parametrize("formulation", ["bmm", "linear"])
def test_member_of_batched_run_equals_single_seed_run(tiny_envs, formulation):
    cfg = _cfg(formulation=formulation)
    batched = Trainer(cfg, [3, 5, 7], envset=tiny_envs)
    batched_result = batched.run()
    single = Trainer(cfg, [5], envset=tiny_envs)
    single_result = single.run()
    for a, b in zip(_member_weights(batched, 1), _member_weights(single, 0), strict=True):
        # batched and plain matmuls round differently, so equal up to float tolerance only
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert batched_result.curves["nll"][1] == pytest.approx(single_result.curves["nll"][0],
                                                            rel=1e-4)
    # and the members really are different models
    assert not torch.allclose(_member_weights(batched, 0)[0], _member_weights(batched, 1)[0])


@pytest.mark.parametrize("method,estimator,weight", [
    ("irm", "closed_form", 1000.0), ("irm", "autograd", 1000.0), ("erm", "closed_form", 0.0),
    ("erm", "closed_form", 1000.0),  # ERM with IRM's schedule: no penalty, no division
])
def test_trainer_matches_plain_loop_written_like_irm_main(tiny_envs, method, estimator, weight):
    cfg = _cfg(method=method, irm_estimator=estimator, steps=25, anneal_iters=10,
               penalty_weight=weight)
    result = train(cfg, [11], envset=tiny_envs)
    record: dict[str, list[float]] = {}
    expected = train_plain(cfg, 11, tiny_envs, record=record)
    keys = ("nll", "penalty", "objective") if method == "irm" else ("nll", "objective")
    for key in keys:  # step by step, before and after the anneal
        got = result.curves[key][0]
        assert got == pytest.approx(record[key], rel=1e-5, abs=1e-9), key
    metrics = result.members[0]["metrics"]
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1.0 / 256), name


def test_same_config_and_seeds_give_identical_numbers(tiny_envs):
    cfg = _cfg()
    first, second = train(cfg, [0, 1], envset=tiny_envs), train(cfg, [0, 1], envset=tiny_envs)
    assert first.members == second.members
    assert first.curves["objective"] == second.curves["objective"]


def test_result_carries_config_seeds_provenance_and_aggregates(tiny_envs):
    result = train(_cfg(), [0, 1, 2], envset=tiny_envs).to_dict()
    assert result["seeds"] == [0, 1, 2]
    assert result["config"]["penalty_weight"] == 100.0
    assert result["data"]["manifest_sha256"] == tiny_envs.manifest_sha256
    assert result["data"]["reduced"] is False
    assert result["runtime"]["threads"] == torch.get_num_threads()
    assert "torch" in result["versions"]
    per_seed = [m["metrics"]["test_acc"] for m in result["members"]]
    mean = sum(per_seed) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in per_seed) / 3)  # ddof = 0
    assert result["metrics"]["test_acc"]["mean"] == pytest.approx(mean)
    assert result["metrics"]["test_acc"]["std"] == pytest.approx(std)
    train_mean = (result["metrics"]["train0_acc"]["mean"] + result["metrics"]["train1_acc"]["mean"])
    assert result["metrics"]["train_acc"]["mean"] == pytest.approx(train_mean / 2)
    # penalty weight curve: 1.0 before the anneal, then the weight
    assert result["curves"]["penalty_weight"][4] == 1.0
    assert result["curves"]["penalty_weight"][5] == 100.0
    assert result["curves"]["eval_step"] == [0, 4, 8, 11]


def test_final_metrics_are_the_last_steps_forward_pass_before_its_update(tiny_envs):
    short = train(_cfg(steps=9, eval_every=100), [0], envset=tiny_envs)
    longer = train(_cfg(steps=10, eval_every=8), [0], envset=tiny_envs)
    assert short.curves["eval_step"] == [0, 8]
    assert longer.curves["eval_step"] == [0, 8, 9]
    final = short.members[0]["metrics"]
    # the 9-step run's final numbers are the 10-step run's numbers at step 8 (0-based)
    assert final["train0_acc"] == longer.curves["train0_acc"][0][8]
    assert final["test_acc"] == longer.curves["test_acc"][0][1]
    assert final["nll"] == longer.curves["nll"][0][8]
    assert final["nll"] != longer.members[0]["metrics"]["nll"]


def test_member_that_diverges_is_reported_and_does_not_touch_the_others(tiny_envs):
    cfg = _cfg()
    trainer = Trainer(cfg, [0, 1], envset=tiny_envs)
    with torch.no_grad():
        trainer.model.member_parameters()[0][0].fill_(math.nan)  # member 0 only
    result = trainer.run()
    assert result.members[0]["status"] == "diverged"
    assert result.members[0]["diverged_step"] == 0
    assert result.members[0]["metrics"] == {}
    alone = train(cfg, [1], envset=tiny_envs)
    assert result.members[1]["status"] == "ok"
    for name, value in alone.members[0]["metrics"].items():
        assert result.members[1]["metrics"][name] == pytest.approx(value, abs=1e-5)
    assert result.metrics["test_acc"]["n"] == 1
    assert result.metrics["test_acc"]["n_diverged"] == 1
    assert result.curves["nll"][0][0] is None  # no number is recorded for a diverged member


def test_overflowing_schedule_diverges_every_member_and_stops(tiny_envs):
    cfg = _cfg(schedule="exponential", exp_rate=1e6, poly_k=1.0, anneal_iters=2, steps=200,
               penalty_cap=math.inf)
    result = train(cfg, [0, 1], envset=tiny_envs)
    assert [m["status"] for m in result.members] == ["diverged", "diverged"]
    assert all(m["diverged_step"] < 200 for m in result.members)
    assert result.runtime["steps_run"] < 200  # stopped early: nothing left to train
    assert result.metrics == {}


@pytest.mark.parametrize("overrides", [
    {"dtype": "bf16"},
    {"batch_size": 32},
    {"jump_rule": "reset_adam"},
    {"schedule": "polynomial", "poly_k": 2.0, "poly_power": 1.6},
    {"schedule": "step", "step_milestones": [3, 8], "step_values": [10.0, 1000.0]},
    {"method": "vrex", "risk_reduction": "sum"},
    {"irm_estimator": "two_half"},
    {"model": "mlp_gray"},
    {"model": "lenet", "steps": 4},
])
def test_options_train_and_give_finite_accuracies(tiny_envs, overrides):
    result = train(_cfg(**overrides), [0, 1], envset=tiny_envs)
    assert all(m["status"] == "ok" for m in result.members)
    for m in result.members:
        assert 0.0 <= m["metrics"]["test_acc"] <= 1.0
        assert math.isfinite(m["metrics"]["nll"])


def test_minibatch_mode_samples_batch_size_examples_per_environment(tiny_envs):
    trainer = Trainer(_cfg(batch_size=32), [0, 1], envset=tiny_envs)
    batch = trainer._forward_train(0)
    assert [tuple(lg.shape) for lg in batch.logits] == [(2, 32), (2, 32)]
    assert [tuple(y.shape) for y in batch.labels] == [(2, 32), (2, 32)]
    assert not torch.equal(batch.labels[0][0], batch.labels[0][1])  # per-member batches


def test_bf16_autocast_stays_close_to_fp32(tiny_envs):
    fp32 = train(_cfg(steps=30), [0, 1], envset=tiny_envs)
    bf16 = train(_cfg(steps=30, dtype="bf16"), [0, 1], envset=tiny_envs)
    assert bf16.runtime["dtype"] == "bf16"
    assert bf16.curves["nll"][0] != fp32.curves["nll"][0]  # autocast really ran
    for name in ("train_acc", "test_acc"):
        assert bf16.metrics[name]["mean"] == pytest.approx(fp32.metrics[name]["mean"], abs=0.03)
    assert bf16.metrics["nll"]["mean"] == pytest.approx(fp32.metrics["nll"]["mean"], rel=0.02)


def test_erm_ignores_the_penalty_schedule(tiny_envs):
    plain = train(_cfg(method="erm", penalty_weight=0.0), [0], envset=tiny_envs)
    scheduled = train(_cfg(method="erm", penalty_weight=1e4), [0], envset=tiny_envs)
    assert plain.curves["objective"] == scheduled.curves["objective"]
    assert set(scheduled.curves["penalty_weight"]) == {0.0}


def test_regression_datasets_are_rejected_by_the_classifier_trainer(tmp_path):
    from pipeline.environments import load_envs, make_envs

    envs = load_envs(make_envs("sem", out_dir=tmp_path / "sem"))
    with pytest.raises(ConfigError, match="regression"):
        train(_cfg(), [0], envset=envs)


def test_minibatch_member_equals_single_seed_run(tiny_envs):
    cfg = _cfg(batch_size=32)
    batched = Trainer(cfg, [4, 9], envset=tiny_envs)
    batched.run()
    single = Trainer(cfg, [9], envset=tiny_envs)
    single.run()
    for a, b in zip(_member_weights(batched, 1), _member_weights(single, 0), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_reset_adam_changes_the_trajectory_after_the_jump(tiny_envs):
    divide = train(_cfg(), [0], envset=tiny_envs)
    reset = train(_cfg(jump_rule="reset_adam"), [0], envset=tiny_envs)
    none = train(_cfg(jump_rule="none"), [0], envset=tiny_envs)
    # up to the jump at step 5 the parameters are the same for the three rules ...
    assert divide.curves["nll"][0][:6] == reset.curves["nll"][0][:6] == none.curves["nll"][0][:6]
    # ... the update at step 5 already uses a fresh Adam, and the loss is divided from step 5
    assert reset.curves["nll"][0][6] != none.curves["nll"][0][6]
    assert divide.curves["objective"][0][5] == pytest.approx(none.curves["objective"][0][5] / 100)


def test_duplicate_or_missing_seeds_are_rejected(tiny_envs):
    with pytest.raises(ConfigError, match="distinct"):
        train(_cfg(), [1, 1], envset=tiny_envs)
    with pytest.raises(ConfigError, match="seed"):
        train(_cfg(), [], envset=tiny_envs)


def test_missing_environments_name_the_make_envs_command(tmp_path):
    cfg = make_config(None, dataset="nowhere", envs_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="make-envs"):
        train(cfg, [0])


def test_irm_beats_erm_out_of_distribution_on_a_small_run(fashion_envs):
    """The qualitative result of the IRM paper on 2,000 examples per environment."""
    envs = fashion_envs.head(2000)
    common = {"hidden_dim": 64, "steps": 200, "lr": 1e-3, "l2_weight": 1e-3, "eval_every": 50}
    erm = train(make_config(None, method="erm", **common), [0, 1], envset=envs)
    irm = train(make_config(None, method="irm", anneal_iters=100, penalty_weight=1e4, **common),
                [0, 1], envset=envs)
    erm_test, irm_test = erm.metrics["test_acc"]["mean"], irm.metrics["test_acc"]["mean"]
    assert erm_test < 0.35  # ERM follows the colour, which flips in the test environment
    assert irm_test > erm_test + 0.20


@pytest.mark.parametrize("batch_size", [0, 32])
def test_shorter_runs_read_off_a_longer_one_are_bit_identical(tiny_envs, batch_size):
    cfg = _cfg(steps=14, eval_every=5, batch_size=batch_size)
    longer = train(cfg, [0, 1], envset=tiny_envs, record_at=[6, 14])
    short = train(_cfg(steps=6, eval_every=5, batch_size=batch_size), [0, 1], envset=tiny_envs)
    assert longer.at_steps["6"]["members"] == short.members  # exact, not approximate
    assert longer.at_steps["6"]["metrics"] == short.metrics
    assert longer.at_steps["14"]["members"] == longer.members
    assert longer.at_steps["6"]["metrics"] != longer.metrics


def test_record_at_outside_the_run_is_an_error(tiny_envs):
    with pytest.raises(ConfigError, match="record_at"):
        Trainer(_cfg(steps=10), [0], envset=tiny_envs, record_at=[5, 11])


def test_progress_reports_mean_and_std_per_environment(tiny_envs):
    seen = []
    train(_cfg(steps=9, eval_every=4), [0, 1, 2], envset=tiny_envs, progress=seen.append)
    assert [info["step"] for info in seen] == [0, 4, 8]
    last = seen[-1]["metrics"]
    assert {"train0_acc", "train1_acc", "train_acc", "test_acc"} <= set(last)
    assert all(0.0 <= v["mean"] <= 1.0 and v["std"] >= 0.0 for v in last.values())
