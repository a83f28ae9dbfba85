"""UIRM's synthetic PICA case, with explicit seeds.

Source: ``Yotamnor/UIRM@2e96317e47ef2c251fd1391e9c4489d298c7f8f2:PICA/PICA.py``::

    Z_I_e = np.random.randn(1, samples_num)                  # the invariant factor, var 1
    Z_1 = np.sqrt(10)*np.random.randn(1, samples_num)         # environment factor, var 10
    Z_2 = np.sqrt(2)*np.random.randn(1, samples_num)          # var 2
    eps_e = 0.05*np.random.randn(3, samples_num)
    A_I = [[1], [1], [1]];  A_e = [[1], [1], [-1]]
    X_e = A_I@Z_I_e + A_e@Z_e + eps_e                         # samples_num = 1000

The known invariant direction: a projection u has the same variance in both environments iff
``u . A_e = 0`` (up to the noise), and among those the shared variance ``(u . A_I)^2`` is
largest for u along A_I's component orthogonal to A_e, ``[1, 1, 2] / sqrt(6)`` (A_I and A_e
are not orthogonal, so it is not A_I itself). The source draws from numpy's global RNG without a
seed; here each repetition draws from ``numpy.random.default_rng(derive_seed(seed, "pica",
rep))``.
"""

from __future__ import annotations

import numpy as np

from pipeline.seeds import derive_seed

A_INVARIANT = np.array([1.0, 1.0, 1.0])
A_ENVIRONMENT = np.array([1.0, 1.0, -1.0])
ENV_VARIANCES = (10.0, 2.0)  # the source's Z_1, Z_2 variances
NOISE_SD = 0.05
SAMPLES = 1000


def invariant_direction() -> np.ndarray:
    """A_I's component orthogonal to A_e, unit norm: ``[1, 1, 2] / sqrt(6)``."""
    u = A_INVARIANT - (A_INVARIANT @ A_ENVIRONMENT) / (A_ENVIRONMENT @ A_ENVIRONMENT) \
        * A_ENVIRONMENT
    return u / np.linalg.norm(u)


def synthetic_envs(seed: int, rep: int, samples: int = SAMPLES,
                   env_variances=ENV_VARIANCES) -> list[np.ndarray]:
    """One repetition's environments, each (samples, 3), samples as rows."""
    rng = np.random.default_rng(derive_seed(seed, "pica", str(rep)))
    envs = []
    for var in env_variances:
        z_inv = rng.standard_normal(samples)
        z_env = np.sqrt(var) * rng.standard_normal(samples)
        noise = NOISE_SD * rng.standard_normal((samples, 3))
        envs.append(np.outer(z_inv, A_INVARIANT) + np.outer(z_env, A_ENVIRONMENT) + noise)
    return envs
