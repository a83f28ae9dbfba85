"""``params.yaml: evaluate``: the final evaluation's seeds, execution and preset deviations."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import coerce, make_config
from pipeline.errors import ConfigError, unknown_name_message
from pipeline.evaluate import EXECUTION_KEYS
from pipeline.params.common import checked_section, mapping_param, seed_list

EVALUATE_KEYS = ("seeds", "execution", "preset_set")
PRESET_FIXED = ("method", "dataset", "envs_dir")  # what makes a preset that preset


@dataclass(frozen=True)
class EvaluationSettings:
    seeds: list[int]  # fresh seeds: no search trial used them
    execution: dict  # EXECUTION_KEYS only, for every evaluation
    preset_set: dict  # deviations from the published presets (recorded in each result)


def evaluation_settings(section: dict | None) -> EvaluationSettings:
    """Validate ``params.yaml: evaluate``; every error names the key and the valid choices."""
    section = checked_section("evaluate", section, EVALUATE_KEYS)
    seeds = seed_list("evaluate.seeds", section.get("seeds", [1000, 1001, 1002]))
    execution = mapping_param("evaluate.execution", section.get("execution"))
    for key in execution:
        if key not in EXECUTION_KEYS:
            raise ConfigError(unknown_name_message(
                "key in evaluate.execution (execution settings only; they never change what "
                "a run learns)", key, EXECUTION_KEYS))
    preset_set = mapping_param("evaluate.preset_set", section.get("preset_set"))
    for key in preset_set:
        if key in PRESET_FIXED:  # a preset is a method's published config on a dataset
            raise ConfigError(f"evaluate.preset_set.{key}: a preset's {key} is not a "
                              "deviation it can take; choose another preset or study entry")
        if key in execution:
            raise ConfigError(f"{key} is set in both evaluate.execution and "
                              "evaluate.preset_set; set it in one of them")
    execution = {k: coerce(k, v) for k, v in execution.items()}
    preset_set = {k: coerce(k, v) for k, v in preset_set.items()}
    make_config("erm_paper", **preset_set, **execution)  # ranges and names, before any work
    return EvaluationSettings(seeds, execution, preset_set)
