"""Checkpoints (pipeline.training): a run stopped between two steps and resumed in a new trainer
from its saved state gives the uninterrupted run's numbers bit for bit."""

from __future__ import annotations

import pytest

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.training import Trainer, load_checkpoint, save_checkpoint, train


def _cfg(**overrides):
    base = {"method": "irm", "hidden_dim": 16, "steps": 23, "anneal_iters": 8,
            "penalty_weight": 100.0, "eval_every": 5, "lr": 1e-3, "l2_weight": 1e-3}
    return make_config(None, **{**base, **overrides})


def _resumed(cfg, seeds, envs, tmp_path, every: int, stop_after: int, record_at=()):
    """Train with a checkpoint every ``every`` steps; 'kill' the run after its
    ``stop_after``-th checkpoint and finish it in a fresh trainer from the file."""
    path = tmp_path / "state.pt"
    saved = []

    class Killed(Exception):
        pass

    def on_checkpoint(trainer):
        save_checkpoint(trainer, path)
        saved.append(trainer.next_step)
        if len(saved) == stop_after:
            raise Killed

    with pytest.raises(Killed):
        Trainer(cfg, seeds, envset=envs, record_at=record_at).run(every, on_checkpoint)
    fresh = Trainer(cfg, seeds, envset=envs, record_at=record_at)
    load_checkpoint(fresh, path)
    assert fresh.next_step == saved[-1] == every * stop_after
    return fresh.run(every, lambda t: saved.append(t.next_step)), saved


@pytest.mark.parametrize("overrides", [
    {},  # full batch, IRM's schedule across the anneal
    {"batch_size": 32, "jump_rule": "reset_adam"},  # the samplers' generators, Adam reset
    {"method": "groupdro"},  # a method with state of its own (the group weights)
    # methods with optimizers and generators of their own (heads, statistics network)
    {"method": "invrat"}, {"method": "irmgame"}, {"method": "mine", "mine_steps": 2},
    {"method": "perturbation"},
    {"method": "fishr", "batch_size": 16},  # its moving averages
])
def test_a_run_resumed_from_a_checkpoint_equals_the_run_alone(tiny_envs, tmp_path, overrides):
    cfg = _cfg(**overrides)
    alone = train(cfg, [0, 4], envset=tiny_envs, record_at=[11])
    resumed, saved = _resumed(cfg, [0, 4], tiny_envs, tmp_path, every=6, stop_after=2,
                              record_at=[11])
    assert saved == [6, 12, 18]  # none after the last update: the run ends at step 22
    assert resumed.members == alone.members  # every metric, bit for bit
    assert resumed.curves == alone.curves
    assert resumed.at_steps == alone.at_steps


def test_a_checkpoint_of_another_run_is_refused(tiny_envs, tmp_path):
    trainer = Trainer(_cfg(), [0, 1], envset=tiny_envs)
    trainer.advance(4)
    save_checkpoint(trainer, tmp_path / "state.pt")
    for other in (Trainer(_cfg(lr=2e-3), [0, 1], envset=tiny_envs),
                  Trainer(_cfg(), [0, 2], envset=tiny_envs)):
        with pytest.raises(ConfigError, match="not this run's"):
            load_checkpoint(other, tmp_path / "state.pt")
