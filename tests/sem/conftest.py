"""The SEM dataset and study rows the SEM tests share, built once for the package."""

from __future__ import annotations

import pytest

from pipeline.environments import EnvSet
from pipeline.sem.study import run_sem_study
from tests.sem._common import IRM_FAST, make_sem


@pytest.fixture(scope="package")
def sem(tmp_path_factory) -> EnvSet:
    return make_sem(tmp_path_factory.mktemp("sem"))


@pytest.fixture(scope="package")
def rows(sem) -> list[dict]:
    return run_sem_study(sem, ["erm", "irm"], **IRM_FAST)


@pytest.fixture(scope="package")
def icp_rows(sem) -> list[dict]:
    return run_sem_study(sem, ["icp"])
