"""Search spaces (``params.yaml: search_spaces``), validated before any trial.

A profile writes the ranges every method shares once, under ``shared``; a method's space is
``shared`` with the method's own entries on top (an entry replaces the shared one; ``null``
leaves the key out of the search). A space maps config keys to distributions::

    penalty_weight: {log_uniform: [1.0e2, 1.0e6]}   # 10**U(2, 6)
    anneal_iters:   {int: [50, 249]}                 # both ends included
    hidden_dim:     {log_int: [64, 512]}
    lr:             {uniform: [1.0e-4, 1.0e-3]}
    steps:          {choice: [101, 201, 301, 401, 501]}
    schedule:                                        # a categorical whose options have
      choice:                                        # their own parameters
        constant: {}
        polynomial: {poly_k: {log_uniform: [1.0e-3, 1.0]}, poly_power: {uniform: [1.0, 3.0]}}

``KEY: default`` takes the distribution declared with the key (its ``HParam.search``: the IRM
paper's or DomainBed's range; ``python -m pipeline hparams`` lists them). ``steps`` is special:
it is never sampled. Each trial trains to the largest value and records the metrics at every
value asked for (as the IRM search read 101..501 off its runs).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pipeline.config import HPARAMS, TrainConfig, coerce, field_type, make_config
from pipeline.errors import ConfigError, unknown_name_message

KINDS = ("uniform", "log_uniform", "int", "log_int", "choice")
CONFIG_KEYS = tuple(HPARAMS)
SHARED = "shared"  # search_spaces.shared: the ranges every method's space starts from
DEFAULT = "default"  # KEY: default -> the distribution declared with the key


@dataclass(frozen=True)
class Dimension:
    """One searched config key: a range (``low``..``high``) or a list of choices.

    A ``choice`` whose options are names with their own sub-spaces (``branches``) is
    conditional: e.g. the schedule family and each family's parameters.
    """

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()
    branches: Mapping[str, tuple[Dimension, ...]] = field(default_factory=dict)

    @property
    def is_range(self) -> bool:
        return self.kind != "choice"

    def bounds(self) -> list:
        """The values that validation tries: both ends of a range, or every choice."""
        return [self.low, self.high] if self.is_range else list(self.choices)

    def suggest(self, trial) -> dict:
        """Draw this dimension (and a chosen branch's sub-dimensions) from an Optuna trial."""
        if self.kind in ("uniform", "log_uniform"):
            value = trial.suggest_float(self.key, self.low, self.high,
                                        log=self.kind == "log_uniform")
        elif self.kind in ("int", "log_int"):
            value = trial.suggest_int(self.key, self.low, self.high, log=self.kind == "log_int")
        else:
            value = trial.suggest_categorical(self.key, list(self.choices))
        out = {self.key: value}
        for sub in self.branches.get(value, ()):
            out.update(sub.suggest(trial))
        return out

    def describe(self) -> dict:
        if self.branches:
            return {"choice": {name: {d.key: d.describe() for d in dims}
                               for name, dims in self.branches.items()}}
        if self.is_range:
            return {self.kind: [self.low, self.high]}
        return {"choice": list(self.choices)}


@dataclass(frozen=True)
class SearchSpace:
    """The validated dimensions of a search, plus the run lengths to read off each trial."""

    dims: tuple[Dimension, ...]
    steps: tuple[int, ...] = ()  # empty: steps is not searched

    def suggest(self, trial) -> dict:
        out = {}
        for dim in self.dims:
            out.update(dim.suggest(trial))
        return out

    def describe(self) -> dict:
        out = {d.key: d.describe() for d in self.dims}
        if self.steps:
            out["steps"] = {"choice": list(self.steps)}
        return out

    def all_dims(self) -> Iterator[Dimension]:
        for dim in self.dims:
            yield dim
            for subs in dim.branches.values():
                yield from subs

    def grid(self) -> dict[str, list]:
        """Optuna's grid: every dimension must be a plain choice."""
        for dim in self.dims:
            if dim.is_range or dim.branches:
                what = "has per-option parameters" if dim.branches else f"is a {dim.kind} range"
                raise ConfigError(
                    f"sampler 'grid' needs every dimension to be a list of choices, but "
                    f"{dim.key!r} {what}; use sampler tpe or random, or fix it with --set")
        return {d.key: list(d.choices) for d in self.dims}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def largest(self, key: str, base: TrainConfig) -> float:
        """The largest value ``key`` can take in this search (the fixed value if not searched)."""
        values = [getattr(base, key)]
        for dim in self.all_dims():
            if dim.key == key:
                values += [v for v in dim.bounds() if isinstance(v, int | float)]
        return max(values)


def compose(spaces: Mapping, name: str) -> dict:
    """``search_spaces.shared`` with ``search_spaces.NAME`` on top: an entry of NAME replaces
    the shared one in place (the order of the dimensions is the order they are sampled in), a
    new one comes after, and ``null`` takes the key out of the search."""
    if not isinstance(spaces, Mapping):
        raise ConfigError(f"search_spaces must be a mapping of space names to spaces, got "
                          f"{spaces!r}")
    if name == SHARED:
        raise ConfigError(f"search space {SHARED!r} is the part every space shares, not a space "
                          "of its own; name a method's space")
    if name not in spaces:
        valid = [k for k in spaces if k != SHARED]
        raise ConfigError(unknown_name_message(
            "search space (declare it under search_spaces in params.yaml)", name, valid)
            if valid else f"no search spaces declared; add search_spaces.{name} to params.yaml")
    shared, own = spaces.get(SHARED) or {}, spaces[name] or {}
    for where, part in ((SHARED, shared), (name, own)):
        if not isinstance(part, Mapping):
            raise ConfigError(f"search_spaces.{where} must be a mapping of config keys to "
                              f"distributions, got {part!r}")
    for key, value in own.items():
        if value is None and key not in shared:
            raise ConfigError(unknown_name_message(
                f"key in search_spaces.{name} set to null (null leaves out a key of "
                f"search_spaces.{SHARED}):", key, shared))
    merged = {**shared, **own}
    return {k: v for k, v in merged.items() if v is not None}


def with_declared(spaces: Mapping) -> dict:
    """``search_spaces`` with every ``KEY: default`` written out as the declared distribution
    (choice branches included), to show or compare what a profile searches."""
    def resolve(space):
        out = {}
        for key, spec in (space or {}).items():
            if spec == DEFAULT and key in HPARAMS and HPARAMS[key][1].search is not None:
                spec = HPARAMS[key][1].search
            elif isinstance(spec, Mapping) and isinstance(spec.get("choice"), Mapping):
                spec = {"choice": {option: resolve(sub) for option, sub in spec["choice"].items()}}
            out[key] = spec
        return out

    return {name: resolve(space) if isinstance(space, Mapping) else space
            for name, space in spaces.items()}


def parse_space(raw: Mapping | None, base: dict, fixed: Mapping) -> SearchSpace:
    """Validate ``raw`` against the config and return the space.

    ``base`` is the config every trial starts from; keys in ``fixed`` (``--set``) are taken
    out of the space. Every range end and every choice is tried as a real config, so a value
    the trainer would refuse (``lr <= 0``, an unknown schedule) fails here, before any trial.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"search space must be a mapping of config keys, got {raw!r}")
    dims, steps = [], ()
    for key, spec in raw.items():
        if key in fixed:
            continue  # --set fixes it for every trial
        if key == "steps":
            steps = _parse_steps(_declared(key) if spec == DEFAULT else spec)
            continue
        dims.append(_parse_dimension(key, spec, fixed))
    _check(tuple(dims), base, {})
    return SearchSpace(tuple(dims), steps)


def _first_point(dims: tuple[Dimension, ...]) -> dict:
    """Every dimension at its first value (low end / first choice), branches included."""
    point = {}
    for dim in dims:
        point[dim.key] = dim.bounds()[0]
        if dim.branches:
            point.update(_first_point(dim.branches[point[dim.key]]))
    return point


def _check(dims: tuple[Dimension, ...], base: dict, context: dict) -> None:
    """Try every end and every choice as a real config, the other dimensions at their first
    value, so that a value the trainer would refuse fails now, not in every trial."""
    first = _first_point(dims)
    for dim in dims:
        own = {sub.key for subs in dim.branches.values() for sub in subs}
        others = {k: v for k, v in first.items() if k not in own}
        for value in dim.bounds():
            point = {**others, dim.key: value,
                     **(_first_point(dim.branches[value]) if dim.branches else {})}
            try:
                make_config(None, **{**base, **context, **point})
            except ConfigError as exc:
                raise ConfigError(f"search space {dim.key!r}: the value {value!r} is not "
                                  f"valid: {exc}") from None
        for option, subs in dim.branches.items():
            _check(subs, base, {**context, **others, dim.key: option})


def _parse_steps(spec) -> tuple[int, ...]:
    if not (isinstance(spec, Mapping) and set(spec) == {"choice"}
            and isinstance(spec["choice"], list) and spec["choice"]):
        raise ConfigError(
            "search space 'steps' must be {choice: [...]} (e.g. [101, 201, 301, 401, 501]): "
            "each trial trains to the largest and records the others on the way")
    values = sorted({coerce("steps", v) for v in spec["choice"]})
    if values[0] < 1:
        raise ConfigError(f"search space 'steps': every choice must be >= 1 (got {values})")
    return tuple(values)


def _declared(key: str) -> dict:
    """The search distribution declared with ``key`` (``KEY: default`` in a space)."""
    if key not in HPARAMS:
        raise ConfigError(unknown_name_message("config key in the search space", key,
                                               CONFIG_KEYS))
    owner, hp = HPARAMS[key]
    if hp.search is None:
        raise ConfigError(f"search space {key!r}: 'default' but {owner} declares no search "
                          f"distribution for {key}; write one, e.g. {{uniform: [low, high]}}")
    return hp.search


def _parse_dimension(key: str, spec, fixed: Mapping) -> Dimension:
    where = f"search space {key!r}"
    if spec == DEFAULT:
        spec = _declared(key)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(KINDS)} "
                          f"(e.g. {{log_uniform: [1.0e2, 1.0e6]}}), got {spec!r}")
    ((kind, args),) = spec.items()
    if kind not in KINDS:
        raise ConfigError(f"{where}: " + unknown_name_message("distribution", kind, KINDS))
    if key not in CONFIG_KEYS:
        raise ConfigError(unknown_name_message("config key in the search space", key,
                                               CONFIG_KEYS))
    if kind == "choice":
        return _parse_choice(key, args, fixed, where)
    if kind in ("uniform", "log_uniform") and field_type(key) is int:
        raise ConfigError(f"{where}: {key} is a whole number; use int or log_int, not {kind}")
    return _parse_range(key, kind, args, where)


def _parse_range(key: str, kind: str, args, where: str) -> Dimension:
    if not (isinstance(args, list | tuple) and len(args) == 2):
        raise ConfigError(f"{where}: {kind} needs [low, high], got {args!r}")
    number = int if kind in ("int", "log_int") else float
    low, high = (coerce(key, v) for v in args)
    try:
        low, high = number(low), number(high)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {kind} bounds must be numbers, got {args!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"{where}: bounds must be finite, got [{low}, {high}]")
    if low >= high:
        what = "empty" if low == high else "inverted"
        raise ConfigError(f"{where}: the range [{low}, {high}] is {what}; give low < high "
                          f"(or fix the value with --set {key}={low})")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(f"{where}: {kind} needs low > 0, got [{low}, {high}]")
    return Dimension(key, kind, low, high)


def _parse_choice(key: str, args, fixed: Mapping, where: str) -> Dimension:
    if isinstance(args, Mapping):  # options with their own parameters
        if not args:
            raise ConfigError(f"{where}: choice needs at least one option")
        branches = {}
        for option, sub in args.items():
            sub = sub or {}
            if not isinstance(sub, Mapping):
                raise ConfigError(f"{where}: option {option!r} needs a mapping of its own "
                                  f"parameters (or {{}}), got {sub!r}")
            branches[coerce(key, option)] = tuple(  # --set wins here too
                _parse_dimension(k, s, fixed) for k, s in sub.items() if k not in fixed)
        return Dimension(key, "choice", choices=tuple(branches), branches=branches)
    if not isinstance(args, list | tuple) or not args:
        raise ConfigError(f"{where}: choice needs a non-empty list, got {args!r}")
    values = [coerce(key, v) for v in args]
    if typing.get_origin(field_type(key)) is list:  # Optuna's categoricals are scalars: a
        values = [",".join(map(str, v)) for v in values]  # list is chosen as "50,150"
    if any(not isinstance(v, bool | int | float | str) for v in values):
        raise ConfigError(f"{where}: choices must be numbers or names (Optuna categoricals), "
                          f"got {args!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: choices repeat a value: {args!r}")
    return Dimension(key, "choice", choices=tuple(values))
