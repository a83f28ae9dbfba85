"""The IRM paper's synthetic SEM study's estimators: ERM, ICP and IRM, and the error metric.

Upstream: facebookresearch/InvariantRiskMinimization@fc185d0, ``code/experiment_synthetic/``.

Every (setup, rep) of a ``sem`` dataset is one row of a batch, so each method runs once for the
whole dataset. Errors are computed in the unscrambled basis against the saved true coefficients,
as in ``code/experiment_synthetic/main.py``. Everything runs in float64 on CPU (the original:
float32), and the same inputs give the same bits. ICP runs in numpy/scipy (float64), one
(setup, rep) at a time, vectorised over feature subsets.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, combinations

import numpy as np
import torch
from scipy.stats import f as fdist
from scipy.stats import ttest_ind_from_stats

from pipeline.environments import EnvSet
from pipeline.errors import ConfigError

IRM_REGS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # models.py: the grid searched for every rep
IRM_ITERATIONS, IRM_LR = 100_000, 1e-3  # main.py defaults
ICP_ALPHA = 0.05  # main.py's --alpha default


@dataclass(frozen=True)
class SemData:
    """A dataset's setups stacked into one batch whose rows are (setup, rep), setup-major."""

    setups: list[str]
    reps: int
    x: torch.Tensor  # (envs, rows, n, dim) float64
    y: torch.Tensor  # (envs, rows, n) float64
    truth: torch.Tensor  # (rows, dim): true coefficients on the unscrambled inputs
    scramble: torch.Tensor  # (rows, dim, dim): observed inputs = [x, z] @ scramble
    sigmas: list[float]  # environment scales, in the saved order

    def keys(self) -> list[tuple[str, int]]:
        return [(s, r) for s in self.setups for r in range(self.reps)]


@dataclass(frozen=True)
class SemOptions:
    """Settings of the methods (each method reads its own)."""

    irm_iterations: int = IRM_ITERATIONS
    irm_lr: float = IRM_LR
    irm_regs: tuple[float, ...] = IRM_REGS
    icp_alpha: float = ICP_ALPHA
    progress: Callable[[str], None] | None = None


@dataclass
class SemFit:
    """A method's coefficients on the observed (possibly scrambled) inputs, (rows, dim), plus
    per-row extras (IRM's chosen regulariser) and per-method settings to record in each row."""

    solution: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def stack_dataset(envset: EnvSet) -> SemData:
    """Stack a ``sem`` environment set (x (reps, n, dim) per setup and env) into one batch."""
    if envset.manifest.get("dataset") != "sem":
        raise ConfigError(f"the SEM study needs a 'sem' dataset, not "
                          f"{envset.manifest.get('dataset')!r}")
    if any("setup" not in e.params for e in envset.envs):
        raise ConfigError(f"{envset.path}: SEM environments of the old one-setup layout (no "
                          "'setup' per environment); rebuild them with make-envs --dataset sem")
    setups = list(dict.fromkeys(e.params["setup"] for e in envset.envs))
    per_setup = [[e for e in envset.train if e.params["setup"] == s] for s in setups]
    solutions = [next(e for e in envset.envs if e.name == f"{s}_solution") for s in setups]
    x = torch.cat([torch.stack([e.x for e in envs]) for envs in per_setup], dim=1)
    y = torch.cat([torch.stack([e.y for e in envs]) for envs in per_setup], dim=1)
    return SemData(setups, x.shape[1] // len(setups), x.double(), y.double(),
                   torch.cat([s.x for s in solutions]).double(),
                   torch.cat([s.extra["scramble"] for s in solutions]).double(),
                   [e.params["sigma"] for e in per_setup[0]])


def errors(w_true: torch.Tensor, w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal error (MSE over indices where ``w_true != 0``) and non-causal error (MSE over the
    zeros), batched over leading dimensions; an empty index set gives 0, as in ``main.py``."""
    squared = (w_true - w_hat).pow(2)
    causal = w_true != 0
    return _masked_mean(squared, causal), _masked_mean(squared, ~causal)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum(-1)
    return torch.where(count > 0, (values * mask).sum(-1) / count.clamp(min=1), 0.0)


# -- ERM -----------------------------------------------------------------------------------------

def fit_erm(data: SemData, options: SemOptions) -> SemFit:
    """Least squares without intercept on all environments pooled (sklearn's
    ``LinearRegression(fit_intercept=False)`` in the original), float64, batched over rows."""
    envs, rows, n, dim = data.x.shape
    x = data.x.transpose(0, 1).reshape(rows, envs * n, dim)
    y = data.y.transpose(0, 1).reshape(rows, envs * n, 1)
    return SemFit(torch.linalg.lstsq(x, y).solution.squeeze(-1))


# -- IRM -----------------------------------------------------------------------------------------

def env_moments(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-environment second moments ``x^T x / n`` and ``x^T y / n``: with them the MSE of a
    linear predictor v is ``v^T A v - 2 b^T v + y^T y / n``, so training never touches the n
    samples again. (``y^T y / n`` is a constant of the objective and drops out of every gradient.)
    """
    n = x.shape[-2]
    return x.mT @ x / n, x.mT @ y.unsqueeze(-1) / n


def irm_gradient(phi: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 regs: torch.Tensor) -> torch.Tensor:
    """d/dPhi of ``reg * sum_e MSE_e + (1 - reg) * sum_e mean(grad_w MSE_e ^ 2)`` at w = ones.

    The closed form of models.py's double backprop, from the moments (mathematically identical;
    a test checks it against autograd on the raw data). With v = Phi w, r_e = A_e v - b_e and
    u_e = Phi^T r_e: grad_w MSE_e = 2 u_e, dMSE_e/dPhi = 2 r_e w^T and
    d mean((2 u_e)^2)/dPhi = (8 / dim) (r_e u_e^T + A_e Phi u_e w^T). w = ones, so ``c w^T``
    is the column c broadcast across the columns.
    Shapes: phi (rows, R, d, d) for R regularisers, a (rows, E, d, d), b (rows, E, d, 1),
    regs (R,). Vectors are kept as rows (A_e is symmetric, so v^T A_e = (A_e v)^T) so that
    stacking [A_1; ...; A_E] turns the products with every A_e, and the sum over e, into one
    matmul per row: many tiny matmuls cost far more than a few larger ones.
    """
    rows, envs, dim, _ = a.shape
    a_stack = a.reshape(rows, envs * dim, dim)  # [A_1; ...; A_E], a view
    v = phi.sum(-1)  # Phi @ ones: (rows, R, d)
    r = (v @ a_stack.mT).unflatten(-1, (envs, dim)) - b.view(rows, 1, envs, dim)  # r_e^T
    # u_e^T = r_e^T Phi: (rows, R, E, d). A column-major copy of Phi takes BLAS's fast path
    # for the small right operand (measured 2x faster than the row-major Phi, copy included).
    u = r @ phi.mT.contiguous().mT
    # sum_e r_e u_e^T: (rows, R, d, d); E outer products beat a (d x E)(E x d) matmul (3x)
    r_u = r[:, :, 0].unsqueeze(-1) * u[:, :, 0].unsqueeze(-2)
    for e in range(1, envs):
        r_u.addcmul_(r[:, :, e].unsqueeze(-1), u[:, :, e].unsqueeze(-2))
    a_phi_u = (u @ phi.mT).flatten(-2) @ a_stack  # sum_e (A_e Phi u_e)^T: (rows, R, d)
    scale = (1 - regs) * (8 / dim)
    columns = regs.view(-1, 1) * 2 * r.sum(2) + scale.view(-1, 1) * a_phi_u
    return columns.unsqueeze(-1) + scale.view(-1, 1, 1) * r_u


def train_irm_phis(a: torch.Tensor, b: torch.Tensor, regs: tuple[float, ...], n_iterations: int,
                   lr: float, progress: Callable[[str], None] | None = None) -> torch.Tensor:
    """Phi (rows, R, d, d) for every (row, reg), each trained from the identity by its own Adam,
    as models.py does one at a time: Adam is elementwise, so one Adam over the stacked Phis
    makes the same updates. ``a`` (rows, E, d, d) and ``b`` (rows, E, d, 1): training moments.
    """
    rows, _, dim, _ = a.shape
    phi = torch.nn.Parameter(torch.eye(dim, dtype=a.dtype).repeat(rows, len(regs), 1, 1))
    reg = torch.tensor(regs, dtype=a.dtype)
    optimizer = torch.optim.Adam([phi], lr=lr, fused=True)  # fused: the fastest on CPU
    report_every = max(n_iterations // 10, 1)
    with torch.no_grad(), _one_thread():
        for iteration in range(n_iterations):
            phi.grad = irm_gradient(phi, a, b, reg)
            optimizer.step()
            if progress and (iteration + 1) % report_every == 0:
                progress(f"irm: iteration {iteration + 1}/{n_iterations}")
    return phi.detach()


@contextmanager
def _one_thread():
    """One intra-op thread while training: the matmuls are tiny, so handing them to a thread pool
    costs more than it saves (measured 2-5x slower with 2 threads), and results do not depend on
    the caller's thread count. main.py also runs with ``torch.set_num_threads(1)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_irm(data: SemData, options: SemOptions) -> SemFit:
    """IRM as in models.py: train on all environments but the last, one Phi per regulariser,
    keep the Phi whose Phi w has the lowest MSE on the last environment; solution Phi w."""
    regs = tuple(options.irm_regs)
    a, b = env_moments(data.x[:-1], data.y[:-1])
    phis = train_irm_phis(a.transpose(0, 1), b.transpose(0, 1), regs, options.irm_iterations,
                          options.irm_lr, options.progress)
    solutions = phis.sum(-1)  # Phi @ ones: (rows, R, d)
    predictions = data.x[-1] @ solutions.mT  # every reg's Phi w on the last env: (rows, n, R)
    val_error = (predictions - data.y[-1].unsqueeze(-1)).pow(2).mean(1)  # (rows, R)
    # models.py keeps the first strict minimum and never a NaN; argmin returns the first minimum
    best = torch.nan_to_num(val_error, nan=float("inf")).argmin(1)
    rows = torch.arange(len(best))
    return SemFit(solutions[rows, best], {"reg": torch.tensor(regs, dtype=torch.float64)[best]},
                  {"n_iterations": options.irm_iterations, "lr": options.irm_lr,
                   "selection_env_sigma": data.sigmas[-1]})


# -- ICP -----------------------------------------------------------------------------------------

def icp_subsets(dim: int) -> list[tuple[int, ...]]:
    """models.py's ``powerset(range(dim))`` without the empty subset, which its loop skips
    (``if len(subset) == 0: continue``): 2^dim - 1 subsets (1,023 for dim 10), in its order."""
    return [s for s in chain.from_iterable(combinations(range(dim), r) for r in range(dim + 1))
            if s]


def _python_min(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise ``min(a, b)`` exactly as Python's builtin: ``b`` only where ``b < a``, so a
    NaN in ``a`` wins and a NaN in ``b`` loses, as in the reference's scalar code."""
    return np.where(b < a, b, a)


def mean_var_test(res_in: np.ndarray, res_out: np.ndarray) -> np.ndarray:
    """models.py's ``mean_var_test`` along the last axis (one p-value per leading index): a Welch
    t-test on the means and a two-sided F-test on the variances (ddof 1), combined as there.

    ``ttest_ind(x, y, equal_var=False)`` is scipy's ``ttest_ind_from_stats`` on the samples'
    means and ddof-1 standard deviations (what ``ttest_ind`` computes inside); called that way
    because ``ttest_ind``'s axis and NaN-policy wrapper costs 3x the rest of ICP here."""
    n_in, n_out = res_in.shape[-1], res_out.shape[-1]
    var_in, var_out = np.var(res_in, axis=-1, ddof=1), np.var(res_out, axis=-1, ddof=1)
    pvalue_mean = ttest_ind_from_stats(np.mean(res_in, axis=-1), np.sqrt(var_in), n_in,
                                       np.mean(res_out, axis=-1), np.sqrt(var_out), n_out,
                                       equal_var=False).pvalue
    pvalue_var1 = 1 - fdist.cdf(var_in / var_out, n_in - 1, n_out - 1)
    pvalue_var2 = 2 * _python_min(pvalue_var1, 1 - pvalue_var1)
    return 2 * _python_min(pvalue_mean, pvalue_var2)


def icp_p_values(residuals: np.ndarray, env_sizes: list[int]) -> np.ndarray:
    """(subsets, envs) p-values of :func:`mean_var_test` per environment, its residuals against
    those of all other environments; ``residuals`` (subsets, N) pooled environment-major."""
    bounds = np.cumsum([0, *env_sizes])
    p = [mean_var_test(residuals[:, lo:hi],
                       np.concatenate([residuals[:, :lo], residuals[:, hi:]], axis=1))
         for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    return np.stack(p, axis=1)


def icp_subset_tests(xs: list[np.ndarray],
                     ys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The loop over subsets of :func:`icp_fit`: per subset of :func:`icp_subsets`, its OLS
    coefficients (subsets, dim; zeros off the subset), its membership mask (subsets, dim) and
    the p-values of :func:`mean_var_test` per environment (subsets, envs)."""
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    subsets = icp_subsets(x_all.shape[1])
    x_t, y_t = torch.from_numpy(x_all), torch.from_numpy(y_all)
    with _one_thread():  # numpy's BLAS threads would be 10-100x slower on a busy machine
        q, r = torch.linalg.qr(x_t)
        qty = (q.mT @ y_t).numpy()
    r = r.numpy()
    coef = np.zeros((len(subsets), x_all.shape[1]))
    members = np.zeros(coef.shape, dtype=bool)
    for i, subset in enumerate(subsets):
        coef[i, subset] = np.linalg.lstsq(r[:, subset], qty, rcond=None)[0]
        members[i, subset] = True
    with _one_thread():  # (subsets, N): each subset's y - x_s @ coef_s
        residuals = (y_t - torch.from_numpy(coef) @ x_t.mT).numpy()
    return coef, members, icp_p_values(residuals, [len(x) for x in xs])


def icp_fit(xs: list[np.ndarray], ys: list[np.ndarray],
            alpha: float = ICP_ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """models.py's ``InvariantCausalPrediction`` on one repetition's environments (float64).

    ``xs`` (n_e, dim) and ``ys`` (n_e,) per environment, all of them (main.py gives ICP every
    environment). Returns the coefficients (dim,), the accepted-subset mask (subsets,) over
    :func:`icp_subsets` and the features refitted (the intersection; empty if none accepted).

    Follows the reference line by line: pool the environments; for every non-empty subset an
    OLS fit without intercept on the pooled data, then for each environment ``mean_var_test``
    of its residuals against the others'; ``p_value = min(p_values) * len(environments)`` (the
    code's Bonferroni factor, not the ``len - 1`` of its TODO); ``p_value > alpha`` accepts;
    the coefficients are an OLS refit on the intersection of the accepted subsets, zeros
    outside it, all zeros if no subset is accepted or the intersection is empty.

    Differences, none of which changes the method (a test checks the coefficients and accepted
    subsets against a literal port of the class): float64 throughout (the reference fits
    float32 tensors); each subset's OLS is ``numpy.linalg.lstsq`` on the columns of R from the
    pooled inputs' QR against ``Q^T y`` instead of sklearn's
    ``LinearRegression(fit_intercept=False)`` on ``x_s`` (the same least-squares problem: with
    X = QR, ``|x_s b - y|^2 = |R_s b - Q^T y|^2 + const``; 8x faster than 1,023 fits on the
    pooled samples); the final refit is ``lstsq`` on the pooled samples, as in the reference;
    the tests, ``min`` and the residuals run vectorised over subsets, the QR and the residuals'
    matmul in torch on one thread.
    """
    _, members, p_values = icp_subset_tests(xs, ys)
    p_value = p_values[:, 0]
    for e in range(1, p_values.shape[1]):  # Python's min over the environments, in order
        p_value = _python_min(p_value, p_values[:, e])
    accepted = p_value * len(xs) > alpha
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    coefficients = np.zeros(x_all.shape[1])
    # set.intersection(*accepted_subsets), and no features at all if none was accepted
    features = np.flatnonzero(members[accepted].all(0) & accepted.any())
    if len(features):
        coefficients[features] = np.linalg.lstsq(x_all[:, features], y_all, rcond=None)[0]
    return coefficients, accepted, features


def fit_icp(data: SemData, options: SemOptions) -> SemFit:
    """ICP (:func:`icp_fit`) on every (setup, rep), on all environments as main.py does."""
    _, rows, _, dim = data.x.shape
    x, y = data.x.numpy(), data.y.numpy()
    solution = torch.zeros(rows, dim, dtype=torch.float64)
    accepted = torch.zeros(rows, dtype=torch.int64)
    selected = torch.zeros(rows, dtype=torch.int64)
    report_every = max(rows // 10, 1)
    for i in range(rows):
        coefficients, mask, features = icp_fit(list(x[:, i]), list(y[:, i]), options.icp_alpha)
        solution[i] = torch.from_numpy(coefficients)
        accepted[i], selected[i] = int(mask.sum()), len(features)
        if options.progress and (i + 1) % report_every == 0:
            options.progress(f"icp: {i + 1}/{rows} (setup, rep) pairs")
    return SemFit(solution, {"accepted_subsets": accepted, "selected_features": selected},
                  {"alpha": options.icp_alpha})


SEM_METHODS: dict[str, Callable[[SemData, SemOptions], SemFit]] = {
    "erm": fit_erm,
    "icp": fit_icp,
    "irm": fit_irm,
}
