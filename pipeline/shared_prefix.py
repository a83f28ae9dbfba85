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

from collections.abc import Callable, Sequence
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


def controls(cfg: TrainConfig) -> list[tuple]:
    """The controls of every step of a run: of each update, then the weight of the last step,
    whose forward has no update but whose objective (and so its record and divergence)
    depends on it."""
    schedule = cfg.schedule_obj()
    updates = [step_control(cfg, schedule, t) for t in range(cfg.steps - 1)]
    # -1 in the reset's place marks the last step: never equal to an update's, and
    # comparable with it (the search sorts trials by their controls)
    return [*updates, (step_control(cfg, schedule, cfg.steps - 1)[0], -1)]


def _agreed(ctrls: list[list[tuple]], start: int) -> int:
    """The first step at or after ``start`` where the controls of the group part."""
    shortest = min(len(c) for c in ctrls)
    t = start
    while t < shortest and all(c[t] == ctrls[0][t] for c in ctrls[1:]):
        t += 1
    return t


def train_shared(cfgs: Sequence[TrainConfig], seeds: Sequence[int], envset: EnvSet | None = None,
                 progress: ProgressFn | None = None, record_at: Sequence[int] = (),
                 on_result: Callable[[int, TrainResult], None] | None = None
                 ) -> tuple[list[TrainResult | Exception], Sharing]:
    """Train every configuration in ``cfgs`` for ``seeds``, sharing the steps they agree on.

    Returns the results in the order of ``cfgs`` (an exception in place of a result whose
    training raised: the others still train) and what sharing saved. ``on_result(i, result)``
    is called as each result is finished, so that a caller can keep it before the rest end.
    """
    check_shareable(cfgs)
    ctrls = [controls(cfg) for cfg in cfgs]
    results: list[TrainResult | Exception | None] = [None] * len(cfgs)
    root = Trainer(cfgs[0], seeds, envset, progress, record_at)
    stats = Sharing(0, 0, 0)
    done = on_result or (lambda i, r: None)
    with root.precision.active(root.device):
        _grow(root, list(range(len(cfgs))), _Tree(cfgs, ctrls, record_at, results, stats, done))
    stats.steps_alone = sum(r.runtime["steps_run"] for r in results
                            if isinstance(r, TrainResult))
    return results, stats


@dataclass
class _Tree:
    """What every node of the tree shares."""

    cfgs: Sequence[TrainConfig]
    ctrls: list[list[tuple]]
    record_at: Sequence[int]
    results: list
    stats: Sharing
    done: Callable[[int, TrainResult], None]


def _grow(trainer: Trainer, group: list[int], tree: _Tree) -> None:
    """Train ``group`` (indices into ``tree.cfgs``; its first is ``trainer``'s own
    configuration), all of which agree with ``trainer``'s updates so far. A group whose
    training raises gets the exception as its results; its siblings go on."""
    try:
        _grow_or_raise(trainer, group, tree)
    except Exception as exc:  # noqa: BLE001 (recorded per configuration, never swallowed)
        _failed(group, exc, tree)


def _failed(group: list[int], exc: Exception, tree: _Tree) -> None:
    for i in group:
        if tree.results[i] is None:
            tree.results[i] = exc


def _grow_or_raise(trainer: Trainer, group: list[int], tree: _Tree) -> None:
    cfgs, ctrls, stats = tree.cfgs, tree.ctrls, tree.stats
    if all(ctrls[i] == ctrls[group[0]] for i in group):  # one run; the rest are the same run
        trainer.extra_eval_steps = set()  # under other names (e.g. ERM's lambdas)
        trainer.advance(trainer.cfg.steps)
        stats.steps_trained += trainer.steps_trained
        for i in group:
            twin = trainer if i == group[0] else trainer.fork(cfgs[i], tree.record_at)
            twin.finished = True
            tree.results[i] = twin.result()
            tree.done(i, tree.results[i])
        return
    parted = _agreed([ctrls[i] for i in group], trainer.next_step)
    # the forks evaluate where any of them would (an evaluation never changes the state)
    trainer.extra_eval_steps = set().union(*(eval_steps(cfgs[i], tree.record_at)
                                             for i in group))
    trainer.advance(parted, stop_when_diverged=False)
    stats.steps_trained += trainer.steps_trained
    trainer.steps_trained = 0
    children: dict[tuple, list[int]] = {}
    for i in group:  # by the control of step `parted`; the trainer's own part comes first
        children.setdefault(ctrls[i][parted], []).append(i)  # (dicts keep their order)
    own, *others = children.values()
    for part in others:  # forks of the state at `parted`; then the trainer goes on itself
        stats.forks += 1
        try:
            child = trainer.fork(cfgs[part[0]], tree.record_at)
        except Exception as exc:  # noqa: BLE001 (this part fails; its siblings go on)
            _failed(part, exc, tree)
            continue
        _grow(child, part, tree)
    _grow(trainer, own, tree)
