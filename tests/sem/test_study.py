"""The SEM study: its rows, its arguments, its summary over reps."""

from __future__ import annotations

import re

import pytest
import torch

from pipeline.environments import Environment, EnvSet
from pipeline.errors import ConfigError
from pipeline.sem.estimators import IRM_REGS
from pipeline.sem.study import run_sem_study, sem_summary, summary_text
from tests.sem._common import REPS, SETUPS, errors_of


def test_rows_layout(rows):
    assert len(rows) == len(SETUPS) * 2 * REPS
    assert [(r["setup"], r["method"], r["rep"]) for r in rows] == [
        (s, m, i) for s in SETUPS for m in ("erm", "irm") for i in range(REPS)]
    irm = [r for r in rows if r["method"] == "irm"]
    assert all(r["reg"] in IRM_REGS and r["n_iterations"] == 1000 for r in irm)
    assert all(r["selection_env_sigma"] == 5.0 for r in irm)
    assert all("reg" not in r for r in rows if r["method"] == "erm")


def test_deterministic(sem):
    first = run_sem_study(sem, ["irm", "erm"], irm_iterations=100)
    second = run_sem_study(sem, ["irm", "erm"], irm_iterations=100)
    assert first == second


@pytest.mark.parametrize("kwargs, needle", [
    ({"methods": ["erm", "irn"]}, r"unknown SEM method 'irn' \(did you mean 'irm'\?\); "
                                  r"valid choices: erm, icp, irm"),
    ({"methods": []}, "methods is empty"),
    ({"methods": ["erm", "erm"]}, "erm more than once"),
    ({"irm_regs": [0.0, 2.0]}, r"irm_regs\[1\]"),
    ({"irm_regs": []}, "irm_regs is empty"),
    ({"irm_lr": 0}, "irm_lr"),
    ({"irm_iterations": -1}, "irm_iterations"),
    ({"icp_alpha": 0}, r"icp_alpha = 0.0 is out of range; allowed: \(0, 1\)"),
    ({"icp_alpha": 1.0}, r"icp_alpha = 1.0 is out of range"),
])
def test_bad_arguments(sem, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        run_sem_study(sem, **kwargs)


def test_only_sem_datasets(sem):
    other = EnvSet(sem.envs, {**sem.manifest, "dataset": "colored_mnist"})
    with pytest.raises(ConfigError, match="'sem' dataset"):
        run_sem_study(other, ["erm"])
    old_layout = EnvSet([Environment("env0", "train", torch.zeros(5, 2), torch.zeros(5),
                                     {"sigma": 0.2})], sem.manifest)
    with pytest.raises(ConfigError, match="old one-setup layout.*make-envs"):
        run_sem_study(old_layout, ["erm"])


def test_icp_rows(icp_rows):
    assert [(r["setup"], r["rep"]) for r in icp_rows] == [(s, i) for s in SETUPS
                                                          for i in range(REPS)]
    assert all(r["method"] == "icp" and r["alpha"] == 0.05 for r in icp_rows)
    assert all(0 <= r["accepted_subsets"] <= 1023 and 0 <= r["selected_features"] <= 10
               for r in icp_rows)
    assert all(r["selected_features"] == 0 for r in icp_rows if r["accepted_subsets"] == 0)


def test_summary_is_mean_and_population_std(rows):
    summary = sem_summary(rows)
    assert [(s["setup"], s["method"]) for s in summary] == [
        (s, m) for s in SETUPS for m in ("erm", "irm")]
    feu_irm = next(s for s in summary if (s["setup"], s["method"]) == ("FEU", "irm"))
    values = errors_of(rows, "FEU", "irm", "noncausal")
    assert feu_irm["n"] == REPS
    assert feu_irm["noncausal_mean"] == pytest.approx(values.mean())
    assert feu_irm["noncausal_std"] == pytest.approx(values.std(ddof=0))
    assert not any(key.startswith("published") for key in feu_irm)  # the report's job


def test_summary_text_is_plain_and_has_no_published_numbers(rows, icp_rows):
    text = summary_text(rows + icp_rows)
    lines = text.splitlines()
    assert len(lines) == 2 + len(SETUPS) * 3
    assert re.search(r"^FEU +irm +8  \d\.\d{5} ± \d\.\d{5} +\d\.\d{5} ± \d\.\d{5} +\S", text,
                     re.MULTILINE)
    assert "published" not in text.lower()
