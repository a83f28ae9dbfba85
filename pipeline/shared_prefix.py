"""Runs that agree on their first updates train those updates once (a prefix tree of runs).

Two runs of the same seeds, data, model, method and optimiser settings whose controls agree up
to step t (the penalty weight of every step and whether Adam is re-created:
:func:`pipeline.training.step_control`) are in the same state after step t, bit for bit. IRM's
constant schedule is the common case: the weight is 1 before ``anneal_iters``, so a grid of
penalty weights x anneal iterations shares everything before each anneal.

:func:`train_shared` trains a list of such configurations as a tree: the steps a group agrees
on once, then a fork (a deep copy of the model, Adam's state, the method's state and every
random generator, :meth:`Trainer.fork`) where their controls part. Each configuration's result
is the one it gets alone (``tests/test_shared_prefix.py`` checks this bit for bit), except for
its wall time, which counts the shared steps in every run that shares them, and
``runtime.shared_steps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline import schedules
from pipeline.config import TrainConfig
from pipeline.environments import EnvSet
from pipeline.errors import ConfigError
from pipeline.training import ProgressFn, Trainer, TrainResult, eval_steps, step_control

# the keys that may differ between runs that share a prefix: every other key changes the
# updates from the first step on
SHAREABLE = frozenset(schedules.HPARAMS) | {"steps"}


@dataclass
class Sharing:
    """What sharing saved: the steps trained against the steps of every run alone."""

    steps_trained: int
    steps_alone: int
    forks: int

    @property
    def saving(self) -> float:
        """The fraction of the runs' steps that were not trained."""
        return 1.0 - self.steps_trained / self.steps_alone if self.steps_alone else 0.0

    def to_dict(self) -> dict:
        return {"steps_trained": self.steps_trained, "steps_alone": self.steps_alone,
                "forks": self.forks, "saving": self.saving}


def check_shareable(cfgs: Sequence[TrainConfig]) -> None:
    """Every key outside :data:`SHAREABLE` must be the same in every configuration."""
    if not cfgs:
        raise ConfigError("train_shared needs at least one configuration")
    first = cfgs[0].to_dict()
    for i, cfg in enumerate(cfgs[1:], 1):
        for key, value in cfg.to_dict().items():
            if key not in SHAREABLE and value != first[key]:
                raise ConfigError(
                    f"configurations 0 and {i} differ in {key} ({first[key]!r} vs {value!r}); "
                    f"runs that share a prefix may differ only in {', '.join(sorted(SHAREABLE))}")


def controls(cfg: TrainConfig) -> list[tuple[float, bool]]:
    """The controls of every update of a run (its last step has none)."""
    schedule = cfg.schedule_obj()
    return [step_control(cfg, schedule, t) for t in range(cfg.steps - 1)]


def _agreed(ctrls: list[list[tuple[float, bool]]], start: int) -> int:
    """The first update at or after ``start`` where the controls of the group part (or one ends)."""
    shortest = min(len(c) for c in ctrls)
    t = start
    while t < shortest and all(c[t] == ctrls[0][t] for c in ctrls[1:]):
        t += 1
    return t


def train_shared(cfgs: Sequence[TrainConfig], seeds: Sequence[int], envset: EnvSet | None = None,
                 progress: ProgressFn | None = None, record_at: Sequence[int] = ()
                 ) -> tuple[list[TrainResult], Sharing]:
    """Train every configuration in ``cfgs`` for ``seeds``, sharing the steps they agree on.

    Returns the results in the order of ``cfgs`` and what sharing saved.
    """
    check_shareable(cfgs)
    ctrls = [controls(cfg) for cfg in cfgs]
    results: list[TrainResult | None] = [None] * len(cfgs)
    root = Trainer(cfgs[0], seeds, envset, progress, record_at)
    stats = Sharing(0, 0, 0)
    with root.precision.active(root.device):
        _grow(root, list(range(len(cfgs))), cfgs, ctrls, record_at, results, stats)
    stats.steps_alone = sum(r.runtime["steps_run"] for r in results)
    return results, stats


def _grow(trainer: Trainer, group: list[int], cfgs, ctrls, record_at, results, stats) -> None:
    """Train ``group`` (indices into ``cfgs``; its first is ``trainer``'s own configuration),
    all of which agree with ``trainer``'s updates so far."""
    same = all(ctrls[i] == ctrls[group[0]] for i in group)
    if same:  # one run (the rest are the same run under other names: e.g. ERM's lambdas)
        trainer.advance(trainer.cfg.steps)
        stats.steps_trained += trainer.steps_trained
        results[group[0]] = trainer.result()
        for i in group[1:]:
            twin = trainer.fork(cfgs[i], record_at)
            twin.finished = True
            results[i] = twin.result()
        return
    parted = _agreed([ctrls[i] for i in group], trainer.next_step)
    # the forks evaluate where any of them would (an evaluation never changes the state)
    trainer.extra_eval_steps = set().union(*(eval_steps(cfgs[i], record_at) for i in group))
    trainer.advance(parted, stop_when_diverged=False)
    stats.steps_trained += trainer.steps_trained
    trainer.steps_trained = 0
    children: dict[tuple, list[int]] = {}
    for i in group:  # by the control of update `parted`, or the run's end; the trainer's own
        key = ctrls[i][parted] if parted < len(ctrls[i]) else ("end", cfgs[i].steps)
        children.setdefault(key, []).append(i)  # part comes first (dicts keep their order)
    own, *others = children.values()
    for part in others:  # forks of the state at `parted`; then the trainer goes on itself
        stats.forks += 1
        _grow(trainer.fork(cfgs[part[0]], record_at), part, cfgs, ctrls, record_at, results,
              stats)
    _grow(trainer, own, cfgs, ctrls, record_at, results, stats)
