"""pipeline.config: presets, ``key=value`` parsing and validation messages."""

from __future__ import annotations

import pytest

from pipeline.config import PRESETS, TrainConfig, make_config, parse_set
from pipeline.errors import ConfigError


def test_irm_paper_preset():
    cfg = make_config("irm_paper")
    assert isinstance(cfg, TrainConfig)
    assert cfg.method == "irm"
    assert cfg.hidden_dim == 390
    assert cfg.l2_weight == 0.00110794568
    assert cfg.lr == 0.0004898536566546834
    assert cfg.anneal_iters == 190
    assert cfg.penalty_weight == 91257.18613115903
    assert cfg.steps == 501
    schedule = cfg.schedule_obj()
    assert schedule(189) == 1.0
    assert schedule(190) == 91257.18613115903


def test_erm_paper_preset():
    cfg = make_config("erm_paper")
    assert cfg.method == "erm"
    assert cfg.hidden_dim == 256
    assert cfg.l2_weight == 0.001
    assert cfg.lr == 0.001
    assert cfg.penalty_weight == 0.0


def test_overrides_beat_the_preset_and_presets_are_not_mutated():
    before = dict(PRESETS["irm_paper"])
    cfg = make_config("irm_paper", steps=60, lr=0.01)
    assert (cfg.steps, cfg.lr, cfg.hidden_dim) == (60, 0.01, 390)
    assert PRESETS["irm_paper"] == before


def test_unknown_preset():
    with pytest.raises(ConfigError, match="irm_paper"):
        make_config("irm_papr")


def test_parse_set_types():
    out = parse_set(["lr=0.01", "steps=60", "step_milestones=[10,20]", "penalty_cap=none"])
    assert out == {"lr": 0.01, "steps": 60, "step_milestones": [10, 20], "penalty_cap": None}
    assert type(out["lr"]) is float
    assert type(out["steps"]) is int
    assert all(type(m) is int for m in out["step_milestones"])


def test_parse_set_more_types():
    out = parse_set(["step_values=[1, 1e4]", "penalty_cap=1e6", "steps=1e3", "method=vrex"])
    assert out == {"step_values": [1.0, 1e4], "penalty_cap": 1e6, "steps": 1000,
                   "method": "vrex"}
    assert type(out["steps"]) is int
    assert parse_set(None) == {}


def test_parse_set_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError) as info:
        parse_set(["stepz=10"])
    message = str(info.value)
    assert "unknown config key" in message
    assert "did you mean 'steps'" in message


@pytest.mark.parametrize("item", ["steps=1.5", "lr=abc", "hidden_dim=x", "steps=inf",
                                  "step_milestones=[1,2.5]", "step_milestones=[1,inf]"])
def test_parse_set_bad_values(item):
    key = item.split("=")[0]
    with pytest.raises(ConfigError, match=key):
        parse_set([item])


def test_parse_set_needs_equals():
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["steps"])


@pytest.mark.parametrize("overrides, needles", [
    ({"steps": 0}, ["steps", "[1, inf]"]),
    ({"penalty_weight": -1}, ["penalty_weight", "[0, inf]"]),
    ({"method": "foo"}, ["method", "'foo'", "irm", "vrex", "erm"]),
    ({"model": "bar"}, ["model", "'bar'", "mlp"]),
    ({"dtype": "fp16"}, ["dtype", "'fp16'", "bf16", "fp32"]),
    ({"schedule": "cosine"}, ["schedule", "'cosine'", "constant", "step", "linear",
                              "polynomial", "exponential"]),
    ({"poly_power": -1}, ["poly_power", "[0, inf]"]),
    ({"lr": 0}, ["lr", "(0, inf]"]),
    ({"hidden_dim": 0}, ["hidden_dim"]),
    ({"jump_rule": "x"}, ["jump_rule", "reset_adam"]),
    ({"device": "tpu"}, ["device", "cuda"]),
    ({"irm_estimator": "two_half", "batch_size": 1}, ["two_half", "batch_size"]),
])
def test_make_config_errors_name_the_key(overrides, needles):
    with pytest.raises(ConfigError) as info:
        make_config(**overrides)
    message = str(info.value)
    for needle in needles:
        assert needle in message, (needle, message)


def test_make_config_unknown_override_key():
    with pytest.raises(ConfigError, match="unknown config key"):
        make_config(stepz=3)
