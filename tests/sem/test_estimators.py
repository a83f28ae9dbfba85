"""The SEM study's estimators: the error metric, ERM, IRM against the published numbers and
against a plain one-Phi-at-a-time IRM written like ``models.py``, and ICP against a literal port
of the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.environments.sem import sample_rep
from pipeline.report.published import PUBLISHED_SEM
from pipeline.sem.estimators import (
    SEM_METHODS,
    SemOptions,
    env_moments,
    errors,
    fit_erm,
    icp_fit,
    icp_subset_tests,
    icp_subsets,
    stack_dataset,
    train_irm_phis,
)
from pipeline.sem.study import run_sem_study
from tests.sem._common import REPS, errors_of


def test_errors_by_hand():
    w_true = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    w_hat = torch.tensor([[1.5, 2.0, 0.3, -0.1], [0.1, 0.0, 0.0, 1.0]])
    causal, noncausal = errors(w_true, w_hat)
    assert causal.tolist() == pytest.approx([(0.25 + 0) / 2, 4.0])
    assert noncausal.tolist() == pytest.approx([(0.09 + 0.01) / 2, 0.01 / 3])
    # main.py returns 0 for an empty index set
    assert [e.item() for e in errors(torch.zeros(3), torch.ones(3))] == [0.0, 1.0]


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


def test_registry():
    assert sorted(SEM_METHODS) == ["erm", "icp", "irm"]


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


def test_icp_errors_fall_where_the_published_ones_do(icp_rows):
    """Published (200 reps): FOU 0.020 causal / 0.00001 non-causal (ICP finds x), FOS 0.85 /
    0.001 (mostly nothing accepted: zeros), FEU 1.0 / 0.80 (never x; z or nothing)."""
    fou_causal, fou_noncausal = (errors_of(icp_rows, "FOU", "icp", k)
                                 for k in ("causal", "noncausal"))
    assert np.median(fou_causal) < 0.01 and (fou_noncausal < 1e-3).all()
    assert errors_of(icp_rows, "FOS", "icp", "causal").mean() > 0.5
    assert (errors_of(icp_rows, "FEU", "icp", "causal") == 1.0).all()
    assert errors_of(icp_rows, "FEU", "icp", "noncausal").mean() > 0.5
