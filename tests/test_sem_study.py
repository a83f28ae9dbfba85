"""The IRM paper's SEM study: error metric, ERM and IRM against the published numbers and
against a plain one-Phi-at-a-time IRM written like ``models.py``, tables and figure."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from pipeline import figures
from pipeline.environments import Environment, EnvSet, load_envs, make_envs
from pipeline.errors import ConfigError
from pipeline.sem_study import (
    IRM_REGS,
    PUBLISHED_SEM,
    SEM_METHODS,
    SemOptions,
    env_moments,
    errors,
    fit_erm,
    run_sem_study,
    sem_settings,
    sem_summary,
    sem_table_latex,
    sem_table_markdown,
    stack_dataset,
    train_irm_phis,
)

REPS = 8
SETUPS = ["FOU", "FOS", "FEU"]
IRM_FAST = {"irm_iterations": 1000}  # far from the 100000 of main.py, enough to leave ERM behind


@pytest.fixture(scope="module")
def sem(tmp_path_factory) -> EnvSet:
    """Three setups, REPS reps, main.py's defaults otherwise (dim 10, n 1000, sigmas .2, 2, 5)."""
    out = tmp_path_factory.mktemp("sem")
    return load_envs(make_envs("sem", seed=0, out_dir=out,
                               params={"setups": SETUPS, "reps": REPS}))


@pytest.fixture(scope="module")
def rows(sem) -> list[dict]:
    return run_sem_study(sem, ["erm", "irm"], **IRM_FAST)


def errors_of(rows: list[dict], setup: str, method: str, kind: str) -> np.ndarray:
    return np.array([r[f"{kind}_error"] for r in rows
                     if r["setup"] == setup and r["method"] == method])


def test_errors_by_hand():
    w_true = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    w_hat = torch.tensor([[1.5, 2.0, 0.3, -0.1], [0.1, 0.0, 0.0, 1.0]])
    causal, noncausal = errors(w_true, w_hat)
    assert causal.tolist() == pytest.approx([(0.25 + 0) / 2, 4.0])
    assert noncausal.tolist() == pytest.approx([(0.09 + 0.01) / 2, 0.01 / 3])
    # main.py returns 0 for an empty index set
    assert [e.item() for e in errors(torch.zeros(3), torch.ones(3))] == [0.0, 1.0]


def test_rows_layout(rows):
    assert len(rows) == len(SETUPS) * 2 * REPS
    assert [(r["setup"], r["method"], r["rep"]) for r in rows] == [
        (s, m, i) for s in SETUPS for m in ("erm", "irm") for i in range(REPS)]
    irm = [r for r in rows if r["method"] == "irm"]
    assert all(r["reg"] in IRM_REGS and r["n_iterations"] == 1000 for r in irm)
    assert all(r["selection_env_sigma"] == 5.0 for r in irm)
    assert all("reg" not in r for r in rows if r["method"] == "erm")


def _within_published(values: np.ndarray, setup: str, method: str, kind: str) -> None:
    """Our mean over REPS reps is within 5 standard errors of the published mean, the standard
    error taken from the published std over reps."""
    mean, std = PUBLISHED_SEM.values[setup][method][kind]
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(len(values)), (values.mean(), mean)


@pytest.mark.parametrize("setup", ["FOU", "FEU"])
@pytest.mark.parametrize("kind", ["causal", "noncausal"])
def test_erm_matches_the_published_errors(rows, setup, kind):
    """FOU: ~0.009 in both halves (ERM leans on z); FEU: ~0.82 (z predicts y better than x)."""
    _within_published(errors_of(rows, setup, "erm", kind), setup, "erm", kind)


def test_irm_beats_erm_on_the_non_causal_inputs_in_feu(rows):
    """The paper's point: ERM puts most weight on z in FEU, IRM moves it back to x."""
    irm, erm = (errors_of(rows, "FEU", m, "noncausal") for m in ("irm", "erm"))
    assert (irm < erm).all()
    assert irm.mean() < erm.mean() - 0.2  # published: 0.33 against 0.82
    assert (errors_of(rows, "FEU", "irm", "causal") < errors_of(rows, "FEU", "erm", "causal")).all()


@pytest.mark.parametrize("kind", ["causal", "noncausal"])
def test_scrambled_erm_errors_match_the_unscrambled_ones(rows, kind):
    """ERM is rotation-equivariant, so once S @ w_hat maps it back FOS is FOU in distribution:
    the two means agree within 5 standard errors of their difference (published stds)."""
    fou, fos = (errors_of(rows, s, "erm", kind) for s in ("FOU", "FOS"))
    std = max(PUBLISHED_SEM.values[s]["erm"][kind][1] for s in ("FOU", "FOS"))
    assert abs(fou.mean() - fos.mean()) < 5 * std * math.sqrt(2 / REPS)


def test_without_the_scramble_mapping_the_errors_would_be_wrong(sem, rows):
    data = stack_dataset(sem)
    fos = slice(REPS, 2 * REPS)
    raw_causal, _ = errors(data.truth[fos], fit_erm(data, SemOptions()).solution[fos])
    assert (raw_causal > 0.05).all()  # against ~0.009 once mapped back
    assert (errors_of(rows, "FOS", "erm", "causal") < 0.02).all()


def _plain_irm_phi(xs: list[torch.Tensor], ys: list[torch.Tensor], reg: float, steps: int,
                   lr: float) -> torch.Tensor:
    """models.py's InvariantRiskMinimization.train on raw data, float64, one Phi and reg."""
    dim = xs[0].shape[1]
    phi = torch.nn.Parameter(torch.eye(dim, dim, dtype=torch.float64))
    w = torch.ones(dim, 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([phi], lr=lr)
    loss = torch.nn.MSELoss()
    for _ in range(steps):
        penalty, error = 0, 0
        for x_e, y_e in zip(xs, ys, strict=True):
            error_e = loss(x_e @ phi @ w, y_e)
            penalty += torch.autograd.grad(error_e, w, create_graph=True)[0].pow(2).mean()
            error += error_e
        opt.zero_grad()
        (reg * error + (1 - reg) * penalty).backward()
        opt.step()
    return phi.detach()


def test_batched_irm_equals_the_plain_one_phi_at_a_time_version(sem):
    data = stack_dataset(sem)
    regs, steps, lr = (0.0, 1e-2, 0.5), 300, 1e-2  # a larger lr than 1e-3 to travel further
    a, b = env_moments(data.x[:-1], data.y[:-1])
    phis = train_irm_phis(a.transpose(0, 1), b.transpose(0, 1), regs, steps, lr)
    # a FOS rep with two regs and an FEU rep with the third: every row has its own Adam state
    for row, k in ((REPS + 1, 0), (REPS + 1, 2), (2 * REPS + 3, 1)):
        xs = [data.x[e, row] for e in range(2)]
        ys = [data.y[e, row].unsqueeze(1) for e in range(2)]
        plain = _plain_irm_phi(xs, ys, regs[k], steps, lr)
        assert (plain - torch.eye(10, dtype=plain.dtype)).abs().max() > 0.05  # it moved
        torch.testing.assert_close(phis[row, k], plain, rtol=0, atol=1e-8)


def test_irm_picks_the_reg_with_the_lowest_error_on_the_last_environment(sem):
    regs, steps, lr = (0.0, 1e-3, 1e-1), 150, 1e-2
    rows = run_sem_study(sem, ["irm"], irm_iterations=steps, irm_lr=lr, irm_regs=regs)
    data = stack_dataset(sem)
    row = REPS + 2  # a FOS rep: checks the scramble mapping too
    xs = [data.x[e, row] for e in range(2)]
    ys = [data.y[e, row].unsqueeze(1) for e in range(2)]
    solutions = [_plain_irm_phi(xs, ys, reg, steps, lr).sum(1) for reg in regs]
    val = [(data.x[2, row] @ s - data.y[2, row]).pow(2).mean().item() for s in solutions]
    best = int(np.argmin(val))
    causal, noncausal = errors(data.truth[row], data.scramble[row] @ solutions[best])
    assert rows[row]["reg"] == regs[best]
    assert rows[row]["causal_error"] == pytest.approx(causal.item(), abs=1e-9)
    assert rows[row]["noncausal_error"] == pytest.approx(noncausal.item(), abs=1e-9)


def test_deterministic(sem):
    first = run_sem_study(sem, ["irm", "erm"], irm_iterations=100)
    second = run_sem_study(sem, ["irm", "erm"], irm_iterations=100)
    assert first == second


@pytest.mark.parametrize("kwargs, needle", [
    ({"methods": ["erm", "irn"]}, r"unknown SEM method 'irn' \(did you mean 'irm'\?\); "
                                  r"valid choices: erm, irm"),
    ({"methods": []}, "methods is empty"),
    ({"methods": ["erm", "erm"]}, "erm more than once"),
    ({"irm_regs": [0.0, 2.0]}, r"irm_regs\[1\]"),
    ({"irm_regs": []}, "irm_regs is empty"),
    ({"irm_lr": 0}, "irm_lr"),
    ({"irm_iterations": -1}, "irm_iterations"),
])
def test_bad_arguments(sem, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        run_sem_study(sem, **kwargs)


def test_settings_from_params_yaml():
    assert sem_settings(None) == {"methods": ["erm", "irm"], "irm_iterations": 100000,
                                  "irm_lr": 1e-3, "irm_regs": list(IRM_REGS)}
    settings = sem_settings({"irm_iterations": 1.0e4, "irm_regs": [0, "1e-2"]})
    assert settings["irm_iterations"] == 10000 and isinstance(settings["irm_iterations"], int)
    assert settings["irm_regs"] == [0.0, 0.01]
    with pytest.raises(ConfigError, match="did you mean 'irm_lr'"):
        sem_settings({"irm_lrs": 0.1})
    with pytest.raises(ConfigError, match="methods = 'erm' must be a list"):
        sem_settings({"methods": "erm"})


def test_only_sem_datasets(sem):
    other = EnvSet(sem.envs, {**sem.manifest, "dataset": "colored_mnist"})
    with pytest.raises(ConfigError, match="'sem' dataset"):
        run_sem_study(other, ["erm"])
    old_layout = EnvSet([Environment("env0", "train", torch.zeros(5, 2), torch.zeros(5),
                                     {"sigma": 0.2})], sem.manifest)
    with pytest.raises(ConfigError, match="old one-setup layout.*make-envs"):
        run_sem_study(old_layout, ["erm"])


def test_registry_and_published_numbers():
    assert sorted(SEM_METHODS) == ["erm", "irm"]
    assert sorted(PUBLISHED_SEM.values) == sorted(["FOU", "FOS", "FEU", "FES", "POU", "POS",
                                                   "PEU", "PES"])
    assert PUBLISHED_SEM.values["FOU"]["erm"]["causal"] == (0.00909, 0.00139)
    assert PUBLISHED_SEM.values["PES"]["irm"]["noncausal"] == (0.34007, 0.01951)
    assert PUBLISHED_SEM.values["POU"]["icp"]["noncausal"] == (0.0, 0.0)
    assert "200 reps" in PUBLISHED_SEM.source and "ones=" in PUBLISHED_SEM.source


def test_summary_is_mean_and_population_std(rows):
    summary = sem_summary(rows)
    assert [(s["setup"], s["method"]) for s in summary] == [
        (s, m) for s in SETUPS for m in ("erm", "irm")]
    feu_irm = next(s for s in summary if (s["setup"], s["method"]) == ("FEU", "irm"))
    values = errors_of(rows, "FEU", "irm", "noncausal")
    assert feu_irm["n"] == REPS
    assert feu_irm["noncausal_mean"] == pytest.approx(values.mean())
    assert feu_irm["noncausal_std"] == pytest.approx(values.std(ddof=0))
    assert feu_irm["published_noncausal_mean"] == 0.33333


def test_markdown_table(rows):
    table = sem_table_markdown(rows)
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(SETUPS) * 2
    assert all(line.count("|") == 9 for line in lines)
    assert "| FEU | erm | 8 | 0." in table and "0.82076 ± 0.01378" in table
    assert re.search(r"\| FOU \| irm \| 8 \| \d\.\d{5} ± \d\.\d{5} \|", table)
    for words in ("8 reps", "last environment (sigma=5)", "1000 Adam iterations", "200 reps"):
        assert words in table
    assert table == sem_table_markdown(list(reversed(rows)))  # order-independent


def test_latex_table(rows):
    table = sem_table_latex(rows, label="tab:sem-test")
    body = table.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == len(SETUPS) * 2
    assert all(line.count(" & ") == 7 and line.endswith(r"\\") for line in body)
    assert r"\toprule" in table and r"\label{tab:sem-test}" in table
    assert r"$\sigma$=5" in table and "200 reps" in table
    assert not re.search(r"(?<!\\)_", table.replace(r"\label{tab:sem-test}", ""))


def test_figure(rows, tmp_path):
    png, pdf = figures.sem_errors(rows, tmp_path / "fig6")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
