"""The IRM paper's SEM study: error metric, ERM, ICP and IRM against the published numbers and
against a plain one-Phi-at-a-time IRM written like ``models.py``, tables and figure."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from pipeline import figures
from pipeline.environments import Environment, EnvSet, load_envs, make_envs
from pipeline.environments.sem import sample_rep
from pipeline.errors import ConfigError
from pipeline.sem_study import (
    IRM_REGS,
    PUBLISHED_SEM,
    SEM_METHODS,
    SemOptions,
    env_moments,
    errors,
    fit_erm,
    icp_fit,
    icp_subset_tests,
    icp_subsets,
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


def test_settings_from_params_yaml():
    assert sem_settings(None) == {"methods": ["erm", "icp", "irm"], "irm_iterations": 100000,
                                  "irm_lr": 1e-3, "irm_regs": list(IRM_REGS), "icp_alpha": 0.05}
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
    assert sorted(SEM_METHODS) == ["erm", "icp", "irm"]
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


# -- ICP (InvariantRiskMinimization experiment_synthetic/models.py) ------------------------------

def _reference_mean_var_test(x: np.ndarray, y: np.ndarray) -> float:
    """models.py's InvariantCausalPrediction.mean_var_test, verbatim."""
    from scipy.stats import f as fdist
    from scipy.stats import ttest_ind

    pvalue_mean = ttest_ind(x, y, equal_var=False).pvalue
    pvalue_var1 = 1 - fdist.cdf(np.var(x, ddof=1) / np.var(y, ddof=1), x.shape[0] - 1,
                                y.shape[0] - 1)
    pvalue_var2 = 2 * min(pvalue_var1, 1 - pvalue_var1)
    return 2 * min(pvalue_mean, pvalue_var2)


def _reference_icp(xs: list[np.ndarray], ys: list[np.ndarray],
                   alpha: float = 0.05) -> tuple[np.ndarray, list[bool]]:
    """models.py's InvariantCausalPrediction.__init__ line by line (sklearn's OLS, loops),
    on numpy inputs; returns the coefficients and, per subset in powerset order, accepted."""
    from sklearn.linear_model import LinearRegression

    x_all, y_all = np.vstack(xs), np.vstack([y.reshape(-1, 1) for y in ys])
    e_all = np.hstack([np.full(x.shape[0], e) for e, x in enumerate(xs)])
    dim = x_all.shape[1]
    accepted_subsets, accepted = [], []
    for subset in icp_subsets(dim):
        x_s = x_all[:, subset]
        reg = LinearRegression(fit_intercept=False).fit(x_s, y_all)
        p_values = []
        for e in range(len(xs)):
            e_in, e_out = np.where(e_all == e)[0], np.where(e_all != e)[0]
            res_in = (y_all[e_in] - reg.predict(x_s[e_in, :])).ravel()
            res_out = (y_all[e_out] - reg.predict(x_s[e_out, :])).ravel()
            p_values.append(_reference_mean_var_test(res_in, res_out))
        p_value = min(p_values) * len(xs)
        accepted.append(bool(p_value > alpha))
        if p_value > alpha:
            accepted_subsets.append(set(subset))
    coefficients = np.zeros(dim)
    if len(accepted_subsets):
        accepted_features = list(set.intersection(*accepted_subsets))
        if len(accepted_features):
            reg = LinearRegression(fit_intercept=False).fit(x_all[:, accepted_features], y_all)
            coefficients[accepted_features] = reg.coef_
    return coefficients, accepted


def _invariant_case(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two environments: y = 2 x1 + N(0, 1) in both (x1's scale changes), x2 = y + noise whose
    scale changes (an effect of y), x3 unrelated noise. Only subsets holding x1 and not x2 have
    invariant residuals: {x1} and {x1, x3}, whose intersection is {x1}."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for scale, z_noise in ((1.0, 0.1), (3.0, 3.0)):
        x1 = rng.standard_normal(1000) * scale
        y = 2 * x1 + rng.standard_normal(1000)
        xs.append(np.stack([x1, y + rng.standard_normal(1000) * z_noise,
                            rng.standard_normal(1000)], 1))
        ys.append(y)
    return xs, ys


def test_icp_subsets_are_the_reference_powerset_without_the_empty_set():
    subsets = icp_subsets(10)
    assert len(subsets) == 1023 and subsets[0] == (0,) and subsets[-1] == tuple(range(10))
    assert icp_subsets(3) == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]


def test_icp_returns_the_causal_coefficients_and_zeros_elsewhere():
    xs, ys = _invariant_case()
    coefficients, accepted, features = icp_fit(xs, ys)
    assert [s for s, a in zip(icp_subsets(3), accepted, strict=True) if a] == [(0,), (0, 2)]
    assert features.tolist() == [0]
    assert coefficients[1:].tolist() == [0.0, 0.0]
    x1, y = np.concatenate(xs)[:, :1], np.concatenate(ys)
    assert coefficients[0] == pytest.approx(np.linalg.lstsq(x1, y, rcond=None)[0][0], abs=1e-12)
    assert coefficients[0] == pytest.approx(2.0, abs=0.05)


def test_icp_returns_zeros_when_no_subset_is_accepted():
    """y's noise scale changes with the environment and no input explains it: every subset's
    residual variance differs between the environments."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1000, 2)) for _ in range(2)]
    ys = [rng.standard_normal(1000) * sigma for sigma in (1.0, 2.0)]
    coefficients, accepted, features = icp_fit(xs, ys)
    assert not accepted.any() and len(features) == 0
    assert coefficients.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("row, subset", [(0, (0, 1, 2, 3, 4, 7)), (2 * REPS + 1, (5, 6, 7, 8, 9))])
def test_icp_p_values_are_scipys_tests_called_directly(sem, row, subset):
    """One subset of a FOU rep (x and one z; p 0.6-1.4) and of a FEU rep (z; p 0.02-0.3): the
    OLS coefficients and each environment's p-value (Welch t on the means, F on the variances,
    combined as models.py does) against scipy called on the residuals of a plain lstsq fit on
    x_s, as the reference computes them."""
    data = stack_dataset(sem)
    xs, ys = [data.x[e, row].numpy() for e in range(3)], [data.y[e, row].numpy() for e in range(3)]
    coef, members, p_values = icp_subset_tests(xs, ys)
    k = icp_subsets(10).index(subset)
    x_s, y_all = np.concatenate(xs)[:, subset], np.concatenate(ys)
    w = np.linalg.lstsq(x_s, y_all, rcond=None)[0]
    np.testing.assert_allclose(coef[k, list(subset)], w, rtol=0, atol=1e-12)
    assert members[k].tolist() == [i in subset for i in range(10)]
    assert not coef[k, ~members[k]].any()
    residual = y_all - x_s @ w
    env = np.repeat(np.arange(3), [len(x) for x in xs])
    expected = [_reference_mean_var_test(residual[env == e], residual[env != e]) for e in range(3)]
    np.testing.assert_allclose(p_values[k], expected, rtol=1e-9, atol=1e-15)
    assert min(expected) > 0.01  # not an underflowed 0


@pytest.mark.parametrize("setup, rep", [("FOU", 0), ("FOS", 1), ("FEU", 0), ("FES", 1)])
def test_icp_equals_a_literal_port_of_the_reference(setup, rep):
    """On dim 6 (63 subsets) so that sklearn's loop stays fast: the same accepted subsets and
    coefficients. The cases: FOU accepts the supersets of x; FOS accepts one subset; FEU picks
    z; FES accepts only the full set."""
    pytest.importorskip("sklearn")
    _, envs = sample_rep(setup, rep, 0, 6, 500, [0.2, 2.0, 5.0], True)
    xs, ys = [x.double().numpy() for x, _ in envs], [y.double().numpy() for _, y in envs]
    coefficients, accepted, _ = icp_fit(xs, ys)
    ref_coefficients, ref_accepted = _reference_icp(xs, ys)
    assert accepted.tolist() == ref_accepted and any(ref_accepted)
    np.testing.assert_allclose(coefficients, ref_coefficients, rtol=0, atol=1e-10)


@pytest.fixture(scope="module")
def icp_rows(sem) -> list[dict]:
    return run_sem_study(sem, ["icp"])


def test_icp_rows(icp_rows):
    assert [(r["setup"], r["rep"]) for r in icp_rows] == [(s, i) for s in SETUPS
                                                          for i in range(REPS)]
    assert all(r["method"] == "icp" and r["alpha"] == 0.05 for r in icp_rows)
    assert all(0 <= r["accepted_subsets"] <= 1023 and 0 <= r["selected_features"] <= 10
               for r in icp_rows)
    assert all(r["selected_features"] == 0 for r in icp_rows if r["accepted_subsets"] == 0)


def test_icp_errors_fall_where_the_published_ones_do(icp_rows):
    """Published (200 reps): FOU 0.020 causal / 0.00001 non-causal (ICP finds x), FOS 0.85 /
    0.001 (mostly nothing accepted: zeros), FEU 1.0 / 0.80 (never x; z or nothing)."""
    fou_causal, fou_noncausal = (errors_of(icp_rows, "FOU", "icp", k)
                                 for k in ("causal", "noncausal"))
    assert np.median(fou_causal) < 0.01 and (fou_noncausal < 1e-3).all()
    assert errors_of(icp_rows, "FOS", "icp", "causal").mean() > 0.5
    assert (errors_of(icp_rows, "FEU", "icp", "causal") == 1.0).all()
    assert errors_of(icp_rows, "FEU", "icp", "noncausal").mean() > 0.5


def test_icp_in_the_tables_and_figure(rows, icp_rows, tmp_path):
    both = rows + icp_rows
    table = sem_table_markdown(both)
    assert re.search(r"\| FEU \| icp \| 8 \| 1\.00000 ± 0\.00000 \| \d\.\d{5} ± \d\.\d{5} \| "
                     r"1\.00000 ± 0\.00000 \| 0\.80350 ± 0\.32425 \| — \|", table)
    assert "ICP, on all environments" in table and "alpha=0.05" in table
    latex = sem_table_latex(both)
    assert "FOU & ICP & 8 & " in latex and r"$\alpha$=0.05" in latex
    assert [s["method"] for s in sem_summary(both) if s["setup"] == "FOS"] == ["erm", "icp",
                                                                                "irm"]
    png, _ = figures.sem_errors(both, tmp_path / "fig6")
    assert png.stat().st_size > 10_000
