"""Penalty-weight schedules: pure functions of the step, in a registry.

Every schedule holds ``before`` (the weight before ``anneal_iters``; 1.0 in IRM's code, 0 in
DomainBed's Fishr and BIRM) and then follows its family. Let ``t = step - anneal_iters``:

- ``constant``:    weight                                  (IRM's step from ``before`` to lambda)
- ``step``:        values[i] from milestones[i] on          (e.g. 1 -> 1e4 -> 1e6)
- ``linear``:      before + (weight - before) * min(1, (t + 1) / ramp_iters)
- ``polynomial``:  k * (t + 1) ** power, capped at ``cap``  (lambda = k * t^p, t counted from 1)
- ``exponential``: k * rate ** t, capped at ``cap``         (uncapped growth overflows to inf)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.errors import ConfigError, check_range, lookup


@dataclass(frozen=True)
class Schedule:
    family: str = "constant"
    weight: float = 0.0
    anneal_iters: int = 0
    before: float = 1.0
    ramp_iters: int = 100
    k: float = 1.0
    power: float = 1.6
    rate: float = 1.05
    cap: float | None = None
    milestones: tuple[int, ...] = field(default_factory=tuple)
    values: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Coerce so that integer inputs (from YAML or the CLI) never produce Python big ints.
        for name in ("weight", "before", "k", "power", "rate"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "anneal_iters", int(self.anneal_iters))
        object.__setattr__(self, "ramp_iters", int(self.ramp_iters))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        if self.cap is not None:
            object.__setattr__(self, "cap", float(self.cap))
        validate(self)

    def __call__(self, step: int) -> float:
        if self.family != "step" and step < self.anneal_iters:
            return self.before
        return SCHEDULES[self.family](self, step)

    def jump_steps(self) -> tuple[int, ...]:
        """Steps where the weight leaves its previous regime (where DomainBed resets Adam)."""
        return self.milestones if self.family == "step" else (self.anneal_iters,)


def _capped(schedule: Schedule, value: float) -> float:
    return value if schedule.cap is None else min(value, schedule.cap)


def constant(s: Schedule, step: int) -> float:
    return s.weight


def step_schedule(s: Schedule, step: int) -> float:
    value = s.before
    for milestone, v in zip(s.milestones, s.values, strict=True):
        if step >= milestone:
            value = v
    return value


def linear(s: Schedule, step: int) -> float:
    fraction = min(1.0, (step - s.anneal_iters + 1) / s.ramp_iters)
    return s.before + (s.weight - s.before) * fraction


def polynomial(s: Schedule, step: int) -> float:
    return _capped(s, s.k * float(step - s.anneal_iters + 1) ** s.power)


def exponential(s: Schedule, step: int) -> float:
    try:
        value = s.k * s.rate ** (step - s.anneal_iters)
    except OverflowError:
        value = math.inf
    return _capped(s, value)


SCHEDULES: dict[str, Callable[[Schedule, int], float]] = {
    "constant": constant,
    "step": step_schedule,
    "linear": linear,
    "polynomial": polynomial,
    "exponential": exponential,
}


def validate(s: Schedule) -> None:
    lookup(SCHEDULES, s.family, "schedule")
    check_range("penalty_weight", s.weight, 0.0)
    check_range("anneal_iters", s.anneal_iters, 0)
    check_range("weight_before_anneal", s.before, 0.0)
    check_range("ramp_iters", s.ramp_iters, 1)
    check_range("poly_k", s.k, 0.0)
    check_range("poly_power", s.power, 0.0)
    check_range("exp_rate", s.rate, 0.0, low_open=True)
    if s.cap is not None:
        check_range("penalty_cap", s.cap, 0.0)
    elif s.family == "exponential":
        raise ConfigError("schedule 'exponential' needs penalty_cap (the largest weight; "
                          "penalty_cap=inf lets it overflow, as in the course project)")
    if s.family == "step":
        if not s.milestones or len(s.milestones) != len(s.values):
            raise ConfigError(
                "schedule 'step' needs step_milestones and step_values of equal, non-zero length "
                f"(got {list(s.milestones)} and {list(s.values)})")
        if list(s.milestones) != sorted(s.milestones) or s.milestones[0] < 0:
            raise ConfigError(f"step_milestones must be increasing and >= 0 (got "
                              f"{list(s.milestones)})")
        for i, v in enumerate(s.values):
            check_range(f"step_values[{i}]", v, 0.0)


def curve(schedule: Schedule, steps: int) -> list[float]:
    """The weight at every step, for plots and for the training loop's records."""
    return [schedule(t) for t in range(steps)]
