"""The finished results a report is made from, read where the DVC stages write them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.outputs import (
    evaluation_file,
    protocol_file,
    read_json,
    schedule_evaluation_file,
    schedule_grid_dir,
    schedule_search_dir,
    search_dir,
)
from pipeline.params.study import Study
from pipeline.search.finished import read_best, read_table


@dataclass
class Inputs:
    """The finished results a report is made from (paths as the DVC stages write them)."""

    evaluations: dict[str, dict]  # "dataset-config" -> evaluation result
    searches: dict[str, pd.DataFrame]  # "dataset-method" -> trials table
    best: dict[str, dict]  # "dataset-method" -> best.json
    manifests: dict[str, dict]  # dataset -> environment manifest
    sem_rows: list[dict] = field(default_factory=list)
    sem_meta: dict = field(default_factory=dict)
    protocol: dict[str, dict] = field(default_factory=dict)  # "dataset-row" -> result
    protocol_preset: str = "irm_paper"
    # the schedule study: "dataset-method-family" -> (trials table, best.json) and evaluation;
    # "GRID-dataset" -> the grid's trials table (landscape, power_sweep); what it fixed
    schedule_searches: dict[str, tuple[pd.DataFrame, dict]] = field(default_factory=dict)
    schedule_evaluations: dict[str, dict] = field(default_factory=dict)
    schedule_grids: dict[str, pd.DataFrame] = field(default_factory=dict)
    schedule_fixed: dict = field(default_factory=dict)
    schedule_sharing: dict[str, dict] = field(default_factory=dict)  # search -> its savings
    pica: dict | None = None  # the PICA study's result (results/pica/pica.json)


def load_inputs(study: Study, results: Path, envs: Path, sem: Path | None,
                protocol=None, schedules=None, pica: Path | None = None) -> Inputs:
    """Read every finished result; ``protocol`` (ProtocolSettings) adds the protocol table's
    rows from ``results/protocol/DATASET-ROW.json``, ``schedules`` (ScheduleStudy) the
    schedule study's searches, evaluations and grids, ``pica`` the PICA study's result."""
    evaluations, searches, best, manifests = {}, {}, {}, {}
    for dataset in study.datasets:
        manifests[dataset] = read_json(envs / dataset / "manifest.json")
        for config in [*study.methods, *study.presets]:
            evaluations[f"{dataset}-{config}"] = read_json(
                evaluation_file(results, dataset, config))
        for method in study.methods:
            name, search = f"{dataset}-{method}", search_dir(results, dataset, method)
            best[name] = read_best(search, dataset)  # checked: this search's, untouched
            searches[name] = read_table(search, best[name])
    sem_rows, sem_meta = [], {}
    if sem is not None:
        loaded = read_json(sem)
        sem_rows, sem_meta = loaded["rows"], loaded["meta"]
        manifests["sem"] = read_json(envs / "sem" / "manifest.json")
    protocol_results = {}
    if protocol is not None:
        for dataset in protocol.datasets:
            manifests[dataset] = read_json(envs / dataset / "manifest.json")
            for row in protocol.rows:
                protocol_results[f"{dataset}-{row}"] = read_json(
                    protocol_file(results, dataset, row))
    inputs = Inputs(evaluations, searches, best, manifests, sem_rows, sem_meta,
                    protocol_results, protocol.preset if protocol is not None else "irm_paper")
    if schedules is not None:
        load_schedules(inputs, schedules, results, envs)
    if pica is not None:
        inputs.pica = read_json(pica)
        for dataset in inputs.pica["settings"]["datasets"]:
            inputs.manifests[dataset] = read_json(envs / dataset / "manifest.json")
    return inputs


def load_schedules(inputs: Inputs, schedules, results: Path, envs: Path) -> None:
    """Add the schedule study (ScheduleStudy) to ``inputs``: its searches, evaluations, grids."""
    inputs.schedule_fixed = dict(schedules.fixed)
    for dataset in schedules.datasets:
        inputs.manifests[dataset] = read_json(envs / dataset / "manifest.json")
        for method in schedules.methods:
            for family in schedules.families:
                key = f"{dataset}-{method}-{family}"
                search = schedule_search_dir(results, dataset, method, family)
                chosen = read_best(search, dataset)
                inputs.schedule_searches[key] = (read_table(search, chosen), chosen)
                inputs.schedule_evaluations[key] = read_json(
                    schedule_evaluation_file(results, dataset, method, family))
        for grid in ("landscape", "power_sweep"):
            where = schedule_grid_dir(results, grid, dataset)
            inputs.schedule_grids[f"{grid}-{dataset}"] = read_table(where)
            if (where / "shared_prefix.json").is_file():
                inputs.schedule_sharing[f"{grid}-{dataset}"] = read_json(
                    where / "shared_prefix.json")
