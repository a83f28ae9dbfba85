"""PICA, Principal Invariant Component Analysis (unsupervised IRM, Yotamnor/UIRM).

Source: ``Yotamnor/UIRM@2e96317e47ef2c251fd1391e9c4489d298c7f8f2:PICA/PICA.py`` (two
environments, no function; the core, in numpy)::

    Sigma_1 = np.cov(X_1); Sigma_2 = np.cov(X_2)
    Sigma_s = Sigma_1-Sigma_2; Sigma_a = (Sigma_1+Sigma_2)/2
    lam_s, U_s = np.linalg.eig(Sigma_s)
    b_lamd = np.max(lam_s)
    ... keep U_s[:, i] unless lam_s[i] > (b_lamd/100)
    Sigma_null = (U_sq.T)@(Sigma_a@U_sq)
    lam_null, V = np.linalg.eig(Sigma_null)   # sorted descending
    U_r[:, j] = U_sq@(V[:, j])  for j < final_dim

That is: (1) the directions in which the environments' covariances agree, the eigenvectors of
the covariance difference with a small eigenvalue; (2) among them, the directions of largest
shared (average) variance. Covariances are each environment's own, centred on its own mean,
unbiased (``np.cov``).

Here, for E >= 2 environments: the disagreement matrix is ``D = sum_e (Sigma_e - Sigma_bar)^2``
(symmetric PSD; for two environments ``D = Sigma_s^2 / 2``, the same eigenvectors as
``Sigma_s``), a direction is kept when its eigenvalue of D is at most ``tolerance^2`` times the
largest (for two environments: ``|lambda_s| <= tolerance * max |lambda_s|``), and the shared
variance is that of ``Sigma_bar`` (the source's ``Sigma_a``). Named options for the source's
exact rule (two environments only): ``threshold = "signed"`` keeps ``lambda_s <= tolerance *
max lambda_s`` on the signed eigenvalues, as the source does (so it also keeps directions where
environment 2 varies far more than environment 1); the default ``"symmetric"`` compares
``|lambda_s|``. ``tolerance = 0.01`` is the source's ``b_lamd/100``. Eigenproblems use
``eigh`` on the symmetric matrices (the source calls ``eig``), in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import ConfigError

THRESHOLDS = ("symmetric", "signed")


@dataclass
class PICAFit:
    """The fitted projection: ``components`` (D, dims), columns unit-norm, ordered by shared
    variance; how many directions passed the agreement test; their shared variances."""

    components: np.ndarray
    n_agreeing: int
    shared_variance: np.ndarray
    disagreement: np.ndarray  # the eigenvalues of the disagreement matrix, ascending

    def project(self, x: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, dims)."""
        return x @ self.components


def covariance(x: np.ndarray) -> np.ndarray:
    """Unbiased covariance of rows (N, D) centred on their own mean, as ``np.cov(x.T)``."""
    centred = x - x.mean(0, keepdims=True)
    return centred.T @ centred / (x.shape[0] - 1)


def fixed_signs(components: np.ndarray) -> np.ndarray:
    """Each column with its largest entry positive: eigenvectors are defined up to sign."""
    signs = np.sign(components[np.abs(components).argmax(0), np.arange(components.shape[1])])
    return components * np.where(signs == 0, 1.0, signs)


def pica(envs: list[np.ndarray], dims: int = 1, tolerance: float = 0.01,
         threshold: str = "symmetric") -> PICAFit:
    """PICA's ``dims`` principal invariant directions of the environments ``envs`` (each
    (N_e, D), samples as rows)."""
    if len(envs) < 2:
        raise ConfigError(f"pica needs at least two environments (got {len(envs)})")
    if threshold not in THRESHOLDS:
        raise ConfigError(f"threshold = {threshold!r}; valid choices: {', '.join(THRESHOLDS)}")
    if threshold == "signed" and len(envs) != 2:
        raise ConfigError("threshold = 'signed' is the source's two-environment rule "
                          f"(got {len(envs)} environments); use 'symmetric'")
    if not 0.0 <= tolerance < 1.0:
        raise ConfigError(f"tolerance = {tolerance!r} must be in [0, 1)")
    covs = [covariance(np.asarray(x, dtype=np.float64)) for x in envs]
    mean_cov = sum(covs) / len(covs)
    # covariances equal up to rounding disagree nowhere: an absolute floor at float64's
    # resolution of the covariances' scale keeps every direction then
    floor = 1e-12 * max(float(np.abs(mean_cov).max()), 1e-300)
    if threshold == "signed":
        lam, vecs = np.linalg.eigh(covs[0] - covs[1])
        keep = lam <= max(tolerance * lam.max(), floor)
    else:
        dev = [c - mean_cov for c in covs]
        lam, vecs = np.linalg.eigh(sum(d @ d for d in dev))
        keep = lam <= max(tolerance ** 2 * lam.max(), floor ** 2)
    disagreement = lam
    basis = vecs[:, keep]
    if basis.shape[1] < dims:
        raise ConfigError(f"pica: only {basis.shape[1]} directions agree across the "
                          f"environments at tolerance {tolerance}; asked for dims = {dims}")
    shared, rot = np.linalg.eigh(basis.T @ mean_cov @ basis)
    order = np.argsort(shared)[::-1][:dims]
    return PICAFit(fixed_signs(basis @ rot[:, order]), int(keep.sum()), shared[order],
                   disagreement)


def pca(envs: list[np.ndarray], dims: int = 1) -> np.ndarray:
    """The baseline: the top ``dims`` eigenvectors of the mean of the environments' covariances
    (PCA that ignores the environments' disagreement), (D, dims)."""
    mean_cov = sum(covariance(np.asarray(x, dtype=np.float64)) for x in envs) / len(envs)
    var, vecs = np.linalg.eigh(mean_cov)
    return fixed_signs(vecs[:, np.argsort(var)[::-1][:dims]])
