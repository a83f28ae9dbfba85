"""``params.yaml: study``: what the DVC stages run, checked against the registries."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import PRESETS
from pipeline.environments import DATASETS
from pipeline.errors import ConfigError, unknown_name_message
from pipeline.methods import METHODS
from pipeline.params.common import checked_section, name_list

STUDY_KEYS = ("datasets", "methods", "presets")


@dataclass(frozen=True)
class Study:
    """What the study runs (``params.yaml: study``): the matrix of the DVC stages."""

    datasets: list[str]
    methods: list[str]
    presets: list[str]


def study_settings(section: dict | None) -> Study:
    """Validate ``params.yaml: study`` against the registries, naming any bad key or value."""
    section = checked_section("study", section, STUDY_KEYS)
    values = {}
    for key, registry in (("datasets", DATASETS), ("methods", METHODS), ("presets", PRESETS)):
        names = name_list(f"study.{key}", section.get(key, []))
        for name in names:
            if name not in registry:
                raise ConfigError(unknown_name_message(f"name in study.{key}:", name, registry))
        values[key] = list(names)
    return Study(**values)


