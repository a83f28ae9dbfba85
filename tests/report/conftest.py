"""Results the report's tests draw and tabulate: a small SEM study and two protocol rows."""

from __future__ import annotations

import pytest

from pipeline.params.protocol import protocol_settings
from pipeline.protocol import evaluate_protocol_row
from pipeline.sem.study import run_sem_study
from tests.sem._common import IRM_FAST, make_sem

# two rows of the protocol table on the tiny Fashion-MNIST slice (the preset's 501 steps are too
# long for a test)
PROTOCOL_SECTION = {"datasets": ["colored_fashion_mnist"], "rows": ["erm", "vrex"],
                    "preset": "irm_paper", "seeds": [0, 1],
                    "row_set": {"erm": {"steps": 3},
                                "vrex": {"vrex_penalty": "squared_difference", "steps": 3}},
                    "execution": {"dtype": "fp32", "eval_every": 50}}


@pytest.fixture(scope="package")
def sem_envs(tmp_path_factory):
    return make_sem(tmp_path_factory.mktemp("sem"))


@pytest.fixture(scope="package")
def sem_rows(sem_envs) -> list[dict]:
    """ERM and IRM rows of three setups x 8 reps."""
    return run_sem_study(sem_envs, ["erm", "irm"], **IRM_FAST)


@pytest.fixture(scope="package")
def sem_icp_rows(sem_envs) -> list[dict]:
    return run_sem_study(sem_envs, ["icp"])


@pytest.fixture(scope="package")
def protocol_results(tiny_envs_dir):
    settings = protocol_settings(PROTOCOL_SECTION)
    return settings, [evaluate_protocol_row(settings, row, "colored_fashion_mnist",
                                            str(tiny_envs_dir)) for row in ("erm", "vrex")]
