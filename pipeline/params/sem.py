"""``params.yaml: sem_study``: the SEM study's settings."""

from __future__ import annotations

import copy

from pipeline.errors import ConfigError, unknown_name_message
from pipeline.sem.study import SEM_STUDY_DEFAULTS, check_sem_arguments


def sem_settings(section: dict | None) -> dict:
    """``params.yaml: sem_study`` over :data:`~pipeline.sem.study.SEM_STUDY_DEFAULTS`, checked
    and normalised, as keyword arguments of :func:`~pipeline.sem.study.run_sem_study` (plain JSON
    types, so results can record them)."""
    settings = copy.deepcopy(SEM_STUDY_DEFAULTS)
    for key, value in (section or {}).items():
        if key not in settings:
            raise ConfigError(unknown_name_message("sem_study setting", key, settings))
        settings[key] = value
    return check_sem_arguments(**settings)
