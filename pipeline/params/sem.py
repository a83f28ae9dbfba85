"""``params.yaml: sem_study``: the SEM study's settings."""

from __future__ import annotations

import copy

from pipeline.params.common import checked_section
from pipeline.sem.study import SEM_STUDY_DEFAULTS, check_sem_arguments


def sem_settings(section: dict | None) -> dict:
    """``params.yaml: sem_study`` over :data:`~pipeline.sem.study.SEM_STUDY_DEFAULTS`, checked
    and normalised, as keyword arguments of :func:`~pipeline.sem.study.run_sem_study` (plain JSON
    types, so results can record them)."""
    section = checked_section("sem_study", section, SEM_STUDY_DEFAULTS)
    return check_sem_arguments(**{**copy.deepcopy(SEM_STUDY_DEFAULTS), **section})
