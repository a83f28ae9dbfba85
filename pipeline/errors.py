"""User-facing errors: each names the parameter at fault and what would be valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """Invalid user input (a name, a value, a missing file), raised before heavy work starts."""


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``registry[name]`` or fail with the list of valid names (and a close match)."""
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise ConfigError(unknown_name_message(kind, name, registry)) from None


def unknown_name_message(kind: str, name: object, valid: Iterable[str]) -> str:
    valid = sorted(valid)
    hint = difflib.get_close_matches(str(name), valid, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"unknown {kind} {name!r}{did_you_mean}; valid choices: {', '.join(valid)}"


def as_number(key: str, value, kind: type = float) -> float | int:
    """``value`` as a float (or a whole int), else an error naming ``key``."""
    try:
        number = float(value)
        if kind is int:
            if number != int(number):
                raise ValueError
            return int(number)
        return number
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key} = {value!r} is not a valid {kind.__name__}") from None


def check_range(key: str, value: float, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False) -> None:
    """Fail with a message naming ``key`` and the allowed range when ``value`` is outside it."""
    bad = value != value  # NaN is never in range
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{key} = {value!r} is out of range; allowed: {left}{lo}, {hi}{right}")
