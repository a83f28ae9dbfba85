"""Penalty-weight schedules: pure functions of the step, in a registry.

Every schedule holds ``weight_before_anneal`` (the weight before ``anneal_iters``; 1.0 in IRM's
code, 0 in DomainBed's Fishr and BIRM) and then follows its family (``schedule``). The fields
are the config keys of the same names. Let ``t = step - anneal_iters``:

- ``constant``:    penalty_weight                 (IRM's step from weight_before_anneal to lambda)
- ``step``:        step_values[i] from step_milestones[i] on          (e.g. 1 -> 1e4 -> 1e6)
- ``linear``:      before + (penalty_weight - before) * min(1, (t + 1) / ramp_iters)
- ``polynomial``:  poly_k * (t + 1) ** poly_power, capped at penalty_cap  (t counted from 1)
- ``exponential``: poly_k * exp_rate ** t, capped at penalty_cap   (uncapped overflows to inf)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.errors import ConfigError, lookup
from pipeline.hparams import HParam


@dataclass(frozen=True)
class Schedule:
    """A penalty-weight schedule; its fields are the config keys of the same names."""

    schedule: str = "constant"
    penalty_weight: float = 0.0
    anneal_iters: int = 0
    weight_before_anneal: float = 1.0
    ramp_iters: int = 100
    poly_k: float = 1.0
    poly_power: float = 1.6
    exp_rate: float = 1.05
    penalty_cap: float | None = None
    step_milestones: tuple[int, ...] = field(default_factory=tuple)
    step_values: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Coerce so that integer inputs (from YAML or the CLI) never produce Python big ints.
        for name in ("penalty_weight", "weight_before_anneal", "poly_k", "poly_power",
                     "exp_rate"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "anneal_iters", int(self.anneal_iters))
        object.__setattr__(self, "ramp_iters", int(self.ramp_iters))
        object.__setattr__(self, "step_milestones", tuple(int(m) for m in self.step_milestones))
        object.__setattr__(self, "step_values", tuple(float(v) for v in self.step_values))
        if self.penalty_cap is not None:
            object.__setattr__(self, "penalty_cap", float(self.penalty_cap))
        validate(self)

    @classmethod
    def of(cls, config) -> Schedule:
        """The schedule of a config (anything with the schedule's keys as attributes)."""
        return cls(**{name: getattr(config, name) for name in HPARAMS})

    def __call__(self, step: int) -> float:
        if self.schedule != "step" and step < self.anneal_iters:
            return self.weight_before_anneal
        return SCHEDULES[self.schedule](self, step)

    def jump_steps(self) -> tuple[int, ...]:
        """Steps where the weight leaves its previous regime (where DomainBed resets Adam)."""
        return self.step_milestones if self.schedule == "step" else (self.anneal_iters,)


def _capped(schedule: Schedule, value: float) -> float:
    return value if schedule.penalty_cap is None else min(value, schedule.penalty_cap)


def constant(s: Schedule, step: int) -> float:
    return s.penalty_weight


def step_schedule(s: Schedule, step: int) -> float:
    value = s.weight_before_anneal
    for milestone, v in zip(s.step_milestones, s.step_values, strict=True):
        if step >= milestone:
            value = v
    return value


def linear(s: Schedule, step: int) -> float:
    fraction = min(1.0, (step - s.anneal_iters + 1) / s.ramp_iters)
    before = s.weight_before_anneal
    return before + (s.penalty_weight - before) * fraction


def polynomial(s: Schedule, step: int) -> float:
    return _capped(s, s.poly_k * float(step - s.anneal_iters + 1) ** s.poly_power)


def exponential(s: Schedule, step: int) -> float:
    try:
        value = s.poly_k * s.exp_rate ** (step - s.anneal_iters)
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


# The schedule's hyperparameters: the config keys, and the Schedule's fields of the same names.
HPARAMS: dict[str, HParam] = {
    "schedule": HParam("constant", "penalty-weight schedule family",
                       choices=tuple(SCHEDULES)),
    "penalty_weight": HParam(0.0, "lambda: the penalty weight after the anneal", low=0.0,
                             search={"log_uniform": [1.0e2, 1.0e6]}),  # IRM's 10**U(2, 6)
    "anneal_iters": HParam(0, "steps before the schedule starts (IRM's penalty_anneal_iters)",
                           low=0, search={"int": [50, 249]}),  # IRM's randint(50, 250)
    "weight_before_anneal": HParam(1.0, "the weight before anneal_iters (IRM 1.0, DomainBed 0)",
                                   low=0.0),
    "ramp_iters": HParam(100, "linear: steps from the first weight to penalty_weight", low=1,
                         search={"int": [10, 200]}),
    "poly_k": HParam(1.0, "polynomial: k in k * t^p; exponential: the first weight", low=0.0,
                     search={"log_uniform": [1.0e-2, 1.0e2]}),
    "poly_power": HParam(1.6, "polynomial: p in k * t^p", low=0.0,
                         search={"uniform": [1.0, 3.0]}),
    "exp_rate": HParam(1.05, "exponential: the weight's factor per step", low=0.0,
                       low_open=True, search={"uniform": [1.005, 1.1]}),
    "penalty_cap": HParam(None, "the largest weight (polynomial, exponential; None: no cap)",
                          low=0.0, kind=float | None, search={"log_uniform": [1.0e3, 1.0e6]}),
    "step_milestones": HParam([], "step: the steps where the weight changes", low=0,
                              kind=list[int]),
    "step_values": HParam([], "step: the weight from each milestone on", low=0.0,
                          kind=list[float]),
}


def validate(s: Schedule) -> None:
    """Each key against its declaration, then what a family needs."""
    lookup(SCHEDULES, s.schedule, "schedule")
    for name, hp in HPARAMS.items():
        if name != "schedule":
            hp.check(name, getattr(s, name))
    if s.penalty_cap is None and s.schedule == "exponential":
        raise ConfigError("schedule 'exponential' needs penalty_cap (the largest weight; "
                          "penalty_cap=inf lets it overflow, as in the course project)")
    if s.schedule == "step":
        if not s.step_milestones or len(s.step_milestones) != len(s.step_values):
            raise ConfigError(
                "schedule 'step' needs step_milestones and step_values of equal, non-zero length "
                f"(got {list(s.step_milestones)} and {list(s.step_values)})")
        if list(s.step_milestones) != sorted(s.step_milestones):
            raise ConfigError(f"step_milestones must be increasing and >= 0 (got "
                              f"{list(s.step_milestones)})")


def curve(schedule: Schedule, steps: int) -> list[float]:
    """The weight at every step, for plots and for the training loop's records."""
    return [schedule(t) for t in range(steps)]
