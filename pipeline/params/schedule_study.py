"""``params.yaml: schedule_study``: which penalty-weight schedule works, under equal budgets.

Every search of the study is a search as ``params.yaml: search`` configures it (its selection
rule, search seed, Ray resources and ``set``), with these differences:

- ``family F``: one search per schedule family, ``trials`` trials each (the same budget for
  every family), sampled at random from ``spaces.F`` with everything else fixed by ``set``
  (so the schedule alone differs between trials, and trials share their steps before the
  schedules part: ``share_prefix``);
- ``landscape``: IRM's constant schedule on a grid of penalty weight x anneal iterations;
- ``power_sweep``: lambda = k * t^p after the anneal on a grid of p (the course project's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.config import coerce
from pipeline.errors import ConfigError, as_number, unknown_name_message
from pipeline.params.common import checked_section, mapping_param, name_list
from pipeline.params.search import seeds_from, spec_from_params
from pipeline.schedules import SCHEDULES
from pipeline.search.spec import SearchSpec

STUDY_KEYS = ("datasets", "methods", "families", "trials", "seeds", "set", "spaces",
              "landscape", "power_sweep")
GRID_KEYS = ("axes", "set", "seeds")
GRIDS = ("landscape", "power_sweep")


@dataclass(frozen=True)
class ScheduleStudy:
    datasets: list[str]
    methods: list[str]
    families: list[str]
    trials: int
    seeds: list[int]
    fixed: dict  # every trial's values besides the schedule's
    spaces: dict  # family -> its space (search_spaces syntax)
    grids: dict  # landscape / power_sweep -> {"axes", "set", "seeds"}


def schedule_study_settings(section: dict | None) -> ScheduleStudy:
    """Validate ``params.yaml: schedule_study``; every error names its key."""
    section = checked_section("schedule_study", section, STUDY_KEYS)
    families = name_list("schedule_study.families", section.get("families", list(SCHEDULES)))
    for family in families:
        if family not in SCHEDULES:
            raise ConfigError(unknown_name_message("name in schedule_study.families:", family,
                                                   SCHEDULES))
    spaces = mapping_param("schedule_study.spaces", section.get("spaces"))
    for family in families:
        if family not in spaces:
            raise ConfigError(f"schedule_study.spaces.{family}: the family is in "
                              "schedule_study.families but has no space")
    fixed = {k: coerce(k, v) for k, v in
             mapping_param("schedule_study.set", section.get("set")).items()}
    if "schedule" in fixed:
        raise ConfigError("schedule_study.set.schedule: the family is what the study varies; "
                          "list families in schedule_study.families")
    grids = {}
    for name in GRIDS:
        grid = checked_section(f"schedule_study.{name}", section.get(name), GRID_KEYS)
        axes = mapping_param(f"schedule_study.{name}.axes", grid.get("axes"))
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"schedule_study.{name}.axes.{key} = {values!r}: expected a "
                                  "non-empty list of values")
        grids[name] = {"axes": axes, "seeds": seeds_from(grid.get("seeds", 1)),
                       "set": {k: coerce(k, v) for k, v in
                               mapping_param(f"schedule_study.{name}.set",
                                             grid.get("set")).items()}}
    return ScheduleStudy(
        datasets=name_list("schedule_study.datasets", section.get("datasets", [])),
        methods=name_list("schedule_study.methods", section.get("methods", ["irm"])),
        families=families,
        trials=as_number("schedule_study.trials", section.get("trials", 4), int),
        seeds=seeds_from(section.get("seeds", 2)), fixed=fixed, spaces=spaces, grids=grids)


def study_fixed(params: dict) -> dict:
    """What every trial of the study fixes: ``search.set``, then ``schedule_study.set``."""
    study = schedule_study_settings(params.get("schedule_study"))
    return {**((params.get("search") or {}).get("set") or {}), **study.fixed}


def study_search_spec(params: dict, which: str, dataset: str, method: str, envs_dir: str,
                      out: str) -> SearchSpec:
    """The search of family ``which`` (a name in ``families``) or of grid ``which``
    (``landscape`` / ``power_sweep``), from the whole params.yaml."""
    study = schedule_study_settings(params.get("schedule_study"))
    search = dict(params.get("search") or {})
    search.pop("asha_grace", None)  # no early stopping: every trial of a family runs its length
    base_set = study_fixed(params)
    # leave_one_env_out retrains each trial without each environment: not shared, so through
    # Tune; every other rule asks the trials up front and shares their prefixes
    share = search.get("selection") != "leave_one_env_out"
    if which in study.families:
        spaces = {"shared": {}, which: {"schedule": {"choice": [which]},
                                        **(study.spaces[which] or {})}}
        return spec_from_params(search, spaces=spaces, space=which, dataset=dataset,
                                method=method, envs_dir=envs_dir, out=out, sampler="random",
                                trials=study.trials, seeds=study.seeds, fixed=base_set,
                                share_prefix=share)
    if which in GRIDS:
        grid = study.grids[which]
        if not grid["axes"]:
            raise ConfigError(f"schedule_study.{which}.axes: give the grid's axes")
        spaces = {"shared": {}, which: {k: {"choice": v} for k, v in grid["axes"].items()}}
        return spec_from_params(search, spaces=spaces, space=which, dataset=dataset,
                                method=method, envs_dir=envs_dir, out=out, sampler="grid",
                                trials=math.prod(len(v) for v in grid["axes"].values()),
                                seeds=grid["seeds"],
                                fixed={**base_set, **grid["set"]}, share_prefix=share)
    raise ConfigError(unknown_name_message("schedule study search (a family or a grid)", which,
                                           [*study.families, *GRIDS]))
