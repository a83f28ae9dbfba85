"""``params.yaml: pica_study``: the PICA study's settings."""

from __future__ import annotations

import copy

from pipeline.params.common import checked_section
from pipeline.pica.study import PICA_STUDY_DEFAULTS, check_pica_arguments


def pica_settings(section: dict | None) -> dict:
    """``params.yaml: pica_study`` over :data:`~pipeline.pica.study.PICA_STUDY_DEFAULTS`,
    checked and normalised, as keyword arguments of :func:`~pipeline.pica.study.run_pica_study`
    (plain JSON types, so results can record them)."""
    section = checked_section("pica_study", section, PICA_STUDY_DEFAULTS)
    return check_pica_arguments(**{**copy.deepcopy(PICA_STUDY_DEFAULTS), **section})
