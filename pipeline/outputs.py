"""Where results live and how they are written.

The layout below is the one ``dvc.yaml`` writes and the report reads; every file is written
atomically (a temporary file in the same directory, then a rename), so a reader (DVC, the
report, a resumed search, another trial) sees a file completely or not at all.

    results/search/DATASET-METHOD/     one search (trials table, best.json, done records)
    results/evaluate/DATASET-CONFIG.json   a final evaluation (CONFIG: a method or preset)
    results/curves/DATASET-CONFIG.csv      its accuracy curve (dvc plots)
    results/protocol/DATASET-ROW.json      one row of the protocol table
    results/sem/sem.json                   the SEM study
    results/schedules/search/DATASET-METHOD-FAMILY/   the schedule study: one search per family
    results/schedules/evaluate/DATASET-METHOD-FAMILY.json   its selection, fresh seeds
    results/schedules/GRID/DATASET/        a grid of the study (landscape, power_sweep)
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` so that no reader ever sees it half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: writers never mix
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: Path | str, obj, *, indent: int = 1, sort_keys: bool = False,
               default=None) -> Path:
    """``obj`` as JSON (one trailing newline), written atomically."""
    return write_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys,
                                         default=default) + "\n")


def read_json(path: Path | str):
    return json.loads(Path(path).read_text())


# -- the results layout (dvc.yaml spells the same paths) --------------------------------------

def search_dir(results: Path | str, dataset: str, method: str) -> Path:
    return Path(results) / "search" / f"{dataset}-{method}"


def evaluation_file(results: Path | str, dataset: str, config: str) -> Path:
    return Path(results) / "evaluate" / f"{dataset}-{config}.json"


def curves_file(results: Path | str, dataset: str, config: str) -> Path:
    return Path(results) / "curves" / f"{dataset}-{config}.csv"


def protocol_file(results: Path | str, dataset: str, row: str) -> Path:
    return Path(results) / "protocol" / f"{dataset}-{row}.json"


def sem_file(results: Path | str) -> Path:
    return Path(results) / "sem" / "sem.json"


def schedule_search_dir(results: Path | str, dataset: str, method: str, family: str) -> Path:
    return Path(results) / "schedules" / "search" / f"{dataset}-{method}-{family}"


def schedule_evaluation_file(results: Path | str, dataset: str, method: str,
                             family: str) -> Path:
    return Path(results) / "schedules" / "evaluate" / f"{dataset}-{method}-{family}.json"


def schedule_grid_dir(results: Path | str, grid: str, dataset: str) -> Path:
    return Path(results) / "schedules" / grid / dataset
