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


# ---------------------------------------------------------------- declared once, checked once

def test_a_config_is_immutable_and_checked_when_it_is_built():
    import dataclasses

    cfg = make_config("irm_paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 0.5
    with pytest.raises(ConfigError, match=r"lr = -1.0 is out of range; allowed: \(0, inf\]"):
        TrainConfig(lr=-1.0)  # built directly, not through make_config: checked all the same
    with pytest.raises(ConfigError, match="andmask_tau"):
        dataclasses.replace(cfg, andmask_tau=2.0)  # a copy is a new config: checked too
    assert TrainConfig(steps="60").steps == 60  # values take their declared type


def test_every_key_is_declared_once_with_its_owner_default_and_range():
    import dataclasses

    from pipeline.config import HPARAMS
    from pipeline.methods import METHODS
    from pipeline.schedules import HPARAMS as SCHEDULE_HPARAMS

    assert [f.name for f in dataclasses.fields(TrainConfig)] == list(HPARAMS)
    for cls in METHODS.values():
        for key, hp in cls.hparams.items():
            assert HPARAMS[key][1] is hp and getattr(TrainConfig(), key) == hp.default, key
    for key in SCHEDULE_HPARAMS:
        assert HPARAMS[key][0] == "pipeline.schedules"


def test_every_declared_search_distribution_is_a_valid_space():
    from pipeline.config import HPARAMS
    from pipeline.methods import METHODS
    from pipeline.search.space import parse_space

    for key, (owner, hp) in HPARAMS.items():
        if hp.search is None:
            continue
        method = next((n for n, c in METHODS.items() if key in c.hparams), "irm")
        schedule = {"penalty_cap": "polynomial", "exp_rate": "exponential"}.get(key, "constant")
        base = make_config(None, method=method, schedule=schedule,
                           penalty_cap=1e6 if schedule != "constant" else None).to_dict()
        space = parse_space({key: "default"}, base, {})
        assert space.steps or space.describe()[key] == hp.search, (owner, key)


ADD_ONE_HYPERPARAMETER = """
from pipeline.hparams import HParam
from pipeline.methods.rex import VREx

# the one declaration: a new V-REx hyperparameter, its default, range and search distribution
VREx.hparams = {**VREx.hparams, "vrex_demo": HParam(0.5, "a demo", low=0.0, high=1.0,
                                                    search={"uniform": [0.1, 0.9]})}

from pipeline.config import TrainConfig, make_config
from pipeline.errors import ConfigError
from pipeline.search.space import parse_space

assert TrainConfig().vrex_demo == 0.5
assert make_config(None, method="vrex", vrex_demo="0.25").vrex_demo == 0.25
try:
    make_config(None, method="vrex", vrex_demo=2.0)
    raise SystemExit("not checked")
except ConfigError as exc:
    assert "vrex_demo = 2.0 is out of range" in str(exc), exc
space = parse_space({"vrex_demo": "default"}, make_config(None, method="vrex").to_dict(), {})
print(space.describe())
"""


def test_adding_a_hyperparameter_to_a_method_is_one_declaration():
    """The declaration alone makes it a config key with its default and range, and a search
    space may take its declared distribution (docs/methods.md shows the same example)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", ADD_ONE_HYPERPARAMETER], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "{'vrex_demo': {'uniform': [0.1, 0.9]}}" in run.stdout


def test_list_valued_keys_are_held_as_tuples_and_given_back_as_lists():
    cfg = make_config(None, schedule="step", step_milestones=[10, 20], step_values=[1.0, 2.0])
    assert cfg.step_milestones == (10, 20)  # no .append: the checked config stays checked
    assert cfg.to_dict()["step_milestones"] == [10, 20]  # JSON, hashes and tables: lists
    assert make_config(None, **cfg.to_dict()) == cfg
