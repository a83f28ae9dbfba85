"""A hyperparameter, declared once: its default, its valid values and its search distribution.

Every config key is one :class:`HParam`, declared beside the code that reads it (DomainBed's
``hparams_registry``, with the ranges checked): the training loop's in ``pipeline.config``, the
schedules' in ``pipeline.schedules``, augmentation's in ``pipeline.augment`` and each method's
in its class (``Method.hparams``). ``pipeline.config`` gathers them into ``TrainConfig``, which
checks every value against its declaration when it is built, and a search space may write
``KEY: default`` for the declared search distribution. Adding a hyperparameter to a method is
one line in its class (docs/methods.md shows one).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError, check_range, unknown_name_message


@dataclass(frozen=True)
class HParam:
    """One config key. ``low``/``high`` bound a number (None: unbounded; ``*_open``: the end
    itself is excluded); ``choices`` lists the valid names; ``search`` is the default search
    distribution in the search-space syntax (e.g. ``{"log_uniform": [1.0e-5, 1.0e-2]}``)."""

    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    search: dict | None = None
    kind: Any = None  # the Python type; default: the default's type

    @property
    def type(self) -> Any:
        return self.kind if self.kind is not None else type(self.default)

    def check(self, name: str, value) -> None:
        """Fail with an error naming ``name`` and the valid values when ``value`` is not one."""
        if self.choices:
            if value not in self.choices:
                raise ConfigError(unknown_name_message(name, value, self.choices))
            return
        if self.low is None and self.high is None or value is None:
            return
        if isinstance(value, list | tuple):
            for i, v in enumerate(value):
                check_range(f"{name}[{i}]", v, self.low, self.high, low_open=self.low_open,
                            high_open=self.high_open)
            return
        check_range(name, value, self.low, self.high, low_open=self.low_open,
                    high_open=self.high_open)

    def valid(self) -> str:
        """The valid values, as the docs and ``python -m pipeline hparams`` print them."""
        if self.choices:
            return " | ".join(self.choices)
        if self.low is None and self.high is None:
            return "any"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{lo}, {hi}{right}"


def is_optional(kind) -> bool:
    return isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)


def merge(*groups: tuple[str, dict[str, HParam]]) -> dict[str, tuple[str, HParam]]:
    """Declarations from every owner, as ``{name: (owner, HParam)}``; a name declared by two
    owners is an error (a config key means one thing), unless it is the same declaration (IB-IRM
    shares IRM's estimator)."""
    out: dict[str, tuple[str, HParam]] = {}
    for owner, declared in groups:
        for name, hp in declared.items():
            if name in out and out[name][1] is not hp:
                raise ConfigError(f"hyperparameter {name!r} is declared by both "
                                  f"{out[name][0]} and {owner}; declare it once")
            out.setdefault(name, (owner, hp))
    return out
