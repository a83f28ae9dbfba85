"""The resolved configuration of a training run (``TrainConfig``), its presets and ``--set``.

``TrainConfig`` is not written out field by field: it is gathered from the hyperparameter
declarations (:class:`pipeline.hparams.HParam`), each made once beside the code that reads it:

- here: what runs (``RUN``), the training loop (``LOOP``) and how it executes (``EXECUTION``);
- ``pipeline.methods``: each method's own keys (``Method.hparams``);
- ``pipeline.augment``: the augmentation's keys; ``pipeline.schedules``: the schedule's keys.

A ``TrainConfig`` is immutable and checked once, when it is built: every value against its
declaration, then what involves several keys. ``python -m pipeline hparams`` lists them all.
Defaults are IRM's ``main.py`` (facebookresearch/InvariantRiskMinimization@fc185d0:
``code/colored_mnist/main.py``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field, make_dataclass
from typing import Any

from pipeline import augment, schedules
from pipeline.errors import ConfigError, as_number, unknown_name_message
from pipeline.hparams import HParam, is_optional, merge
from pipeline.methods import METHODS
from pipeline.models import FORMULATIONS, MODELS
from pipeline.precision import DTYPES

# IRM's search (reproduce_paper_results.sh): hidden int(2**U(6, 9)), l2 10**U(-5, -2),
# lr 10**U(-3.5, -2.5), and the run lengths 101..501 read off each run.
RUN: dict[str, HParam] = {
    "dataset": HParam("colored_mnist", "a saved environment set under envs_dir"),
    "envs_dir": HParam("data/envs", "where the environment sets are"),
    # IRM's main.py and Fishr's script draw fresh environments (shuffle, label noise, colours)
    # for every restart; shared trains every seed on the one saved draw
    "data_draw": HParam("shared", "shared: every seed trains on the saved draw; per_seed: "
                        "each seed its own draw from (data seed, seed), as a restart does",
                        choices=("shared", "per_seed")),
    "model": HParam("mlp", "the model (pipeline.models)", choices=tuple(MODELS)),
    "hidden_dim": HParam(256, "hidden width (LeNet: the last hidden layer)", low=1,
                         search={"log_int": [64, 512]}),
    "method": HParam("erm", "the method (pipeline.methods)", choices=tuple(METHODS)),
    "risk_reduction": HParam("mean", "how the environment risks combine (REx's code sums them)",
                             choices=("mean", "sum")),
}
LOOP: dict[str, HParam] = {
    "jump_rule": HParam("divide_loss", "when the weight jumps: IRM divides the loss by lambda "
                        "when lambda > 1; DomainBed resets Adam",
                        choices=("divide_loss", "reset_adam", "none")),
    "lr": HParam(1e-3, "Adam's learning rate", low=0.0, low_open=True,
                 search={"log_uniform": [3.1623e-4, 3.1623e-3]}),
    "l2_weight": HParam(1e-3, "times the sum of squared parameters, biases included", low=0.0,
                        search={"log_uniform": [1.0e-5, 1.0e-2]}),
    "steps": HParam(501, "training steps", low=1,
                    search={"choice": [101, 201, 301, 401, 501]}),
    "batch_size": HParam(0, "per environment; 0 = full batch (the IRM protocol)", low=0),
    "eval_every": HParam(100, "test environments are evaluated here and at the last step",
                         low=1),
    "holdout_fraction": HParam(0.0, "of each training env, held out as NAME_val (0 = protocol)",
                               low=0.0, high=0.9),
}
# How a run executes (recorded; they may change the last bits of the numbers, not what it learns)
EXECUTION: dict[str, HParam] = {
    "device": HParam("auto", "auto | cpu | cuda | cuda:N"),
    "dtype": HParam("fp32", "fp32 | bf16 | tf32 (CUDA) | auto; see pipeline.precision",
                    choices=DTYPES),
    "threads": HParam(0, "torch threads; 0 = torch's default for this machine", low=0),
    "formulation": HParam("auto", "stacked matmuls: bmm | linear | auto (timed per machine)",
                          choices=FORMULATIONS),
}

# name -> (owner, declaration), in TrainConfig's field order
HPARAMS: dict[str, tuple[str, HParam]] = merge(
    ("pipeline.config", RUN),
    *((f"method {name} (pipeline.methods)", cls.hparams) for name, cls in METHODS.items()),
    ("pipeline.augment", augment.HPARAMS),
    ("pipeline.schedules", schedules.HPARAMS),
    ("pipeline.config", LOOP),
    ("pipeline.config", EXECUTION),
)


def _field(hp: HParam):
    """A field of the declared type; a list-valued key is held as a tuple (immutable)."""
    if typing.get_origin(hp.type) is list:
        (inner,) = typing.get_args(hp.type)
        return tuple[inner, ...], field(default=tuple(hp.default))
    return hp.type, field(default=hp.default)


def _post_init(self) -> None:
    for name in HPARAMS:  # frozen: set once, here, to the declared type
        value = coerce(name, getattr(self, name))
        object.__setattr__(self, name, tuple(value) if isinstance(value, list) else value)
    # built (and so checked) once; not a field: to_dict and equality see only the keys
    object.__setattr__(self, "_schedule", validate(self))


def _schedule_obj(self) -> schedules.Schedule:
    return self._schedule


def _to_dict(self) -> dict:
    """The config as plain JSON types (lists for the list-valued keys)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}


TrainConfig = make_dataclass(
    "TrainConfig",
    [(name, *_field(hp)) for name, (_, hp) in HPARAMS.items()],
    frozen=True,
    namespace={"__post_init__": _post_init, "schedule_obj": _schedule_obj, "to_dict": _to_dict,
               "__doc__": "Everything that determines a run's numbers (with the seeds); "
                          "see pipeline.config.HPARAMS.",
               "__module__": __name__},
)


def validate(cfg: Any) -> schedules.Schedule:
    """Every value against its declaration, then the checks that involve several keys; returns
    the config's schedule (which checks the schedule's keys)."""
    for name, (owner, hp) in HPARAMS.items():
        if owner != "pipeline.schedules":  # the Schedule below checks its own keys
            hp.check(name, getattr(cfg, name))
    if not (cfg.device in ("auto", "cpu") or cfg.device.startswith("cuda")):
        raise ConfigError(f"device = {cfg.device!r}; valid choices: auto, cpu, cuda, cuda:N")
    if cfg.irm_estimator == "two_half" and cfg.batch_size == 1:
        raise ConfigError("irm_estimator = 'two_half' needs batch_size >= 2 (or 0 = full batch)")
    if cfg.aug_scale_max < cfg.aug_scale_min:
        raise ConfigError(f"aug_scale_max = {cfg.aug_scale_max!r} is out of range; allowed: "
                          f"[{cfg.aug_scale_min:g}, inf] (at least aug_scale_min)")
    return schedules.Schedule.of(cfg)  # its keys, and what each family needs (milestones)


# -- presets: published fixed configurations, with how they were chosen ----------------------

# facebookresearch/InvariantRiskMinimization@fc185d0: code/colored_mnist/reproduce_paper_results.sh
# (main.py draws the environments afresh for every restart: data_draw = per_seed)
PRESETS: dict[str, dict] = {
    "irm_paper": {"method": "irm", "hidden_dim": 390, "l2_weight": 0.00110794568,
                  "lr": 0.0004898536566546834, "anneal_iters": 190,
                  "penalty_weight": 91257.18613115903, "steps": 501, "data_draw": "per_seed"},
    "erm_paper": {"method": "erm", "hidden_dim": 256, "l2_weight": 0.001, "lr": 0.001,
                  "anneal_iters": 0, "penalty_weight": 0.0, "steps": 501,
                  "data_draw": "per_seed"},
    "gray_paper": {"method": "erm", "model": "mlp_gray", "hidden_dim": 83,
                   "l2_weight": 0.0008602868865288383, "lr": 0.0028171488133821726,
                   "anneal_iters": 0, "penalty_weight": 0.0, "steps": 101,
                   "data_draw": "per_seed"},
}
# How each preset's values were chosen, and whether test data chose them (same source).
PRESET_PROVENANCE: dict[str, tuple[str, bool]] = {
    "irm_paper": ("IRM paper's search, selected by min(train env 0, train env 1, test)", True),
    "erm_paper": ("IRM paper's 'reasonable' ERM hyperparameters, not searched", False),
    "gray_paper": ("IRM paper's search for the grayscale model, same test-using criterion",
                   True),
}


def field_type(name: str):
    """The declared Python type of config key ``name``."""
    return HPARAMS[name][1].type


def coerce(key: str, value):
    """Convert ``value`` (a string from the CLI, or a YAML value) to the key's declared type."""
    if key not in HPARAMS:
        raise ConfigError(unknown_name_message("config key", key, HPARAMS))
    kind = HPARAMS[key][1].type
    if is_optional(kind):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if typing.get_origin(kind) is list:
            (inner,) = typing.get_args(kind)
            if isinstance(value, str):
                value = [v for v in value.strip("[]").split(",") if v.strip()]
            return [as_number(key, v, int) if inner is int else inner(v) for v in value]
        if kind is int:
            return as_number(key, value, int)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):  # int("inf") overflows
        name = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{key} = {value!r} is not a valid {name}") from None
    return value


def parse_set(items: list[str] | None, convert=coerce) -> dict:
    """``["lr=0.01", "steps=60"]`` -> ``{"lr": 0.01, "steps": 60}``, each value through
    ``convert(key, text)`` (default: the config key's declared type, checked)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = convert(key.strip(), value.strip())
    return out


def make_config(preset: str | None = None, **overrides) -> TrainConfig:
    """A checked config: defaults, then the preset, then the overrides (None: not given)."""
    values = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(unknown_name_message("preset", preset, PRESETS))
        values.update(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in values:
        if key not in HPARAMS:
            raise ConfigError(unknown_name_message("config key", key, HPARAMS))
    return TrainConfig(**values)
