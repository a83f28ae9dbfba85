"""Shared helpers of the SEM tests: a small SEM dataset and the rows' errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.environments import EnvSet, load_envs, make_envs

REPS = 8
SETUPS = ["FOU", "FOS", "FEU"]
IRM_FAST = {"irm_iterations": 1000}  # far from the 100000 of main.py, enough to leave ERM behind


def make_sem(out: Path) -> EnvSet:
    """Three setups, REPS reps, main.py's defaults otherwise (dim 10, n 1000, sigmas .2, 2, 5)."""
    return load_envs(make_envs("sem", seed=0, out_dir=out,
                               params={"setups": SETUPS, "reps": REPS}))


def errors_of(rows: list[dict], setup: str, method: str, kind: str) -> np.ndarray:
    return np.array([r[f"{kind}_error"] for r in rows
                     if r["setup"] == setup and r["method"] == method])
