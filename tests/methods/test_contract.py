"""The method contract: one parametrised suite that every registered method must pass.

Every method (1) trains on the tiny real environments and moves the model, (2) is deterministic
under its seeds, (3) works in the batched K-seed trainer, where member k equals a run of seed
k alone, and (4) rejects an invalid value of each of its own hyperparameters with an error
that names the key. A method added to ``METHODS`` is tested here without a line of new test.
"""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.methods import METHODS, Method
from pipeline.training import Trainer, train

ALL = sorted(METHODS)


def _cfg(name: str, **overrides):
    base = {"method": name, "hidden_dim": 16, "steps": 8, "anneal_iters": 3,
            "penalty_weight": 10.0, "eval_every": 4, "lr": 1e-3, "l2_weight": 1e-3}
    return make_config(None, **{**base, **overrides})


def _method_tensors(method) -> list[torch.Tensor]:
    """Every parameter the method holds, its own optimizers' included (heads, statistics
    networks): member axis first."""
    found: list[torch.Tensor] = []

    def walk(value):
        if isinstance(value, torch.nn.Parameter):
            found.append(value)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    for value in vars(method).values():
        walk(value)
    return found


# methods whose own tensors have directions the objective does not see: MINE's DV bound is the
# same for T + c, so T's parameters that only add a constant to T (the output bias, the last
# LayerNorm's shift of units in ELU's linear range) move by rounding noise that Adam
# normalises; tests/methods/test_mine.py compares T itself (up to that constant) instead
NULL_DIRECTIONS = {"mine"}


def _weights(trainer: Trainer, i: int) -> list[torch.Tensor]:
    own = [] if trainer.cfg.method in NULL_DIRECTIONS else _method_tensors(trainer.method)
    return [p.detach()[i].clone() for p in [*trainer.model.member_parameters(), *own]]


def test_every_method_is_a_method_with_a_description():
    assert {"erm", "irm", "vrex"} <= set(METHODS)
    for name, cls in METHODS.items():
        assert issubclass(cls, Method)
        assert cls.name == name
        assert cls.description


@pytest.mark.parametrize("name", ALL)
def test_contract_trains_on_the_tiny_environments(tiny_envs, name):
    trainer = Trainer(_cfg(name), [0, 1], envset=tiny_envs)
    before = _weights(trainer, 0)
    result = trainer.run()
    assert [m["status"] for m in result.members] == ["ok", "ok"]
    for member in result.members:
        for key in ("train_acc", "test_acc", "nll", "penalty"):
            assert math.isfinite(member["metrics"][key]), key
    after = _weights(trainer, 0)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("name", ALL)
def test_contract_is_deterministic_under_its_seeds(tiny_envs, name):
    first = train(_cfg(name), [3, 4], envset=tiny_envs).to_dict()
    second = train(_cfg(name), [3, 4], envset=tiny_envs).to_dict()
    assert first["members"] == second["members"]
    assert first["curves"] == second["curves"]


@pytest.mark.parametrize("name", ALL)
def test_contract_batched_member_equals_its_seed_alone(tiny_envs, name):
    cfg = _cfg(name, steps=6)
    batched = Trainer(cfg, [3, 5, 7], envset=tiny_envs)
    batched.run()
    single = Trainer(cfg, [5], envset=tiny_envs)
    single.run()
    for a, b in zip(_weights(batched, 1), _weights(single, 0), strict=True):
        # batched and plain matmuls round differently: equal up to float tolerance only
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # and the members are different models
    assert not torch.equal(_weights(batched, 0)[0], _weights(batched, 1)[0])


def _invalid_values(cls: type[Method]) -> list[tuple[str, float]]:
    """An out-of-range value for each of the method's own hyperparameters (or the shared
    learning rate for a method that has none)."""
    out = []
    for key, valid in cls.hparams.items():
        if valid.low is not None:
            out.append((key, valid.low if valid.low_open else valid.low - 1))
        if valid.high is not None:
            out.append((key, valid.high if valid.high_open else valid.high + 1))
    return out or [("lr", 0.0)]


@pytest.mark.parametrize("name", ALL)
def test_contract_rejects_invalid_hyperparameters(name):
    cls = METHODS[name]
    for key, value in _invalid_values(cls):
        with pytest.raises(ConfigError, match=key):
            make_config(None, method=name, **{key: value})
    make_config(None, method=name)  # the defaults are valid


@pytest.mark.parametrize("name", ALL)
def test_contract_declared_hyperparameters_are_config_keys(name):
    from pipeline.config import TrainConfig

    for key in METHODS[name].hparams:
        assert hasattr(TrainConfig, key) or key in TrainConfig.__dataclass_fields__, key
