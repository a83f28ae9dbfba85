"""Every published number, as its upstream source prints it."""

from __future__ import annotations

from pipeline.report.published import (
    IRM_PUBLISHED_SETUP,
    PUBLISHED,
    PUBLISHED_PROTOCOL_ROWS,
    PUBLISHED_PROTOCOL_SOURCE,
    PUBLISHED_SEM,
    PUBLISHED_SOURCE,
)


def test_published_sem_numbers():
    assert sorted(PUBLISHED_SEM.values) == sorted(["FOU", "FOS", "FEU", "FES", "POU", "POS",
                                                   "PEU", "PES"])
    assert PUBLISHED_SEM.values["FOU"]["erm"]["causal"] == (0.00909, 0.00139)
    assert PUBLISHED_SEM.values["PES"]["irm"]["noncausal"] == (0.34007, 0.01951)
    assert PUBLISHED_SEM.values["POU"]["icp"]["noncausal"] == (0.0, 0.0)
    assert "200 reps" in PUBLISHED_SEM.source and "ones=" in PUBLISHED_SEM.source


def test_published_colored_mnist_and_protocol_numbers_name_their_source():
    # the log's values (0.708114 ± 0.009326, 0.66902 ± 0.025403), in %
    assert PUBLISHED[("colored_mnist", "irm_paper")] == {"train": (70.8114, 0.9326),
                                                         "test": (66.902, 2.5403)}
    assert PUBLISHED[("colored_mnist", "gray_paper")]["test"] == (73.012, 0.4684)  # not 0.4
    assert "InvariantRiskMinimization@fc185d0" in PUBLISHED_SOURCE
    assert IRM_PUBLISHED_SETUP == {"seeds": 10, "search_trials": 50, "dtype": "fp32"}
    assert PUBLISHED_PROTOCOL_ROWS["fishr"]["test"] == (69.5, 1.0)
    assert "alexrame/fishr@7b8fdf1" in PUBLISHED_PROTOCOL_SOURCE
