"""What the section checkers share: a section's keys, a mapping of config keys, a list of
names, a list of seeds; each error names the key as params.yaml spells it."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.errors import ConfigError, unknown_name_message
from pipeline.seeds import check_seeds


def checked_section(name: str, section: dict | None, keys: Sequence[str]) -> dict:
    """A copy of ``params.yaml: NAME``, refused if a key is not one of ``keys``."""
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"params.yaml '{name}' must be a mapping, got {section!r}")
    section = dict(section or {})
    for key in section:
        if key not in keys:
            raise ConfigError(unknown_name_message(f"key in params.yaml '{name}'", key, keys))
    return section


def mapping_param(key: str, value) -> dict:
    """A mapping (of config keys to values) or nothing; ``key`` as params.yaml spells it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} = {value!r} must be a mapping of config keys to values")
    return dict(value)


def name_list(key: str, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} = {value!r} must be a list of names")
    return list(value)


def seed_list(key: str, value) -> list[int]:
    """A list of distinct seeds >= 0 (see :func:`pipeline.seeds.check_seeds`)."""
    if not isinstance(value, list):
        raise ConfigError(f"{key} = {value!r} must be a list of integers, e.g. "
                          "[1000, 1001, 1002]")
    return check_seeds(value, key)
