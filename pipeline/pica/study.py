"""The PICA study: the synthetic case (does PICA find the invariant direction?) and each image
dataset's pixels (does a linear probe on PICA's projection transfer to the test environment?).

Synthetic (``Yotamnor/UIRM@2e96317e:PICA/PICA.py``'s case, ``synthetic_reps`` seeded
repetitions): the cosine between PICA's first direction and the known invariant direction, and
the projection's std in each environment; PCA's first direction (the top eigenvector of the
environments' mean covariance) beside it as the baseline.

Images: the training environments' pixels (flattened, in [0, 1]) without labels give PICA's and
PCA's top ``dims`` directions; a logistic-regression probe on each projection (and on the raw
pixels) is fitted on the training environments' labels and scored on every environment. No
model selection: every setting is fixed in ``params.yaml: pica_study``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.environments import EnvSet
from pipeline.errors import ConfigError, as_number, check_range
from pipeline.pica.estimator import THRESHOLDS, pca, pica
from pipeline.pica.probe import fit_probe, probe_accuracy
from pipeline.pica.synthetic import invariant_direction, synthetic_envs
from pipeline.terminal import pm

# The source's rule keeps the directions whose covariance-difference eigenvalue is at most 1% of
# the largest (b_lamd/100). On its own synthetic case the sampling noise of the two covariances
# (1,000 samples each) exceeds that in about 7% of draws (14 of 200 here), and PICA then misses
# the invariant direction; 5% never did (200 of 200 with cosine > 0.999). The study's default is
# 5%, and every synthetic table shows the source's exact rule (signed, 1%) beside it. The
# tolerance was chosen on seed 0's draws (reports/measured/pica/tolerance.log); the study's
# default seed, 1, draws others.
SOURCE_TOLERANCE = 0.01
PICA_STUDY_DEFAULTS = {"datasets": ["colored_fashion_mnist"], "seed": 1, "synthetic_reps": 50,
                       "dims": [1, 2, 5, 10], "tolerance": 0.05, "threshold": "symmetric",
                       "probe_l2": 1.0e-4, "figure_samples": 1000}


def check_pica_arguments(datasets, seed, synthetic_reps, dims, tolerance, threshold, probe_l2,
                         figure_samples) -> dict:
    """The study's settings checked, as plain JSON types (results record them)."""
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise ConfigError(f"datasets = {datasets!r} must be a list of dataset names")
    if not isinstance(dims, list) or not dims:
        raise ConfigError(f"dims = {dims!r} must be a non-empty list of integers >= 1")
    dims = [as_number(f"dims[{i}]", d, int) for i, d in enumerate(dims)]
    for i, d in enumerate(dims):
        check_range(f"dims[{i}]", d, 1)
    settings = {"datasets": list(datasets), "seed": as_number("seed", seed, int),
                "synthetic_reps": as_number("synthetic_reps", synthetic_reps, int),
                "dims": sorted(set(dims)), "tolerance": as_number("tolerance", tolerance),
                "threshold": threshold, "probe_l2": as_number("probe_l2", probe_l2),
                "figure_samples": as_number("figure_samples", figure_samples, int)}
    check_range("seed", settings["seed"], 0)
    check_range("synthetic_reps", settings["synthetic_reps"], 1)
    check_range("tolerance", settings["tolerance"], 0.0, 1.0, high_open=True)
    check_range("probe_l2", settings["probe_l2"], 0.0)
    check_range("figure_samples", settings["figure_samples"], 0)
    if threshold not in THRESHOLDS:
        raise ConfigError(f"threshold = {threshold!r}; valid choices: {', '.join(THRESHOLDS)}")
    return settings


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    """|cos| between two directions (a direction's sign is arbitrary)."""
    return float(abs(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v)))


def synthetic_figure(seed: int, tolerance: float, threshold: str) -> dict:
    """Draw 0's environments projected on PICA's and PCA's first direction, for the figure."""
    envs = synthetic_envs(seed, 0)
    u, v = pica(envs, 1, tolerance, threshold).components[:, 0], pca(envs, 1)[:, 0]
    return {f"env{e}": {"role": "train", "pica": np.round(x @ u, 5).tolist(),
                        "pca": np.round(x @ v, 5).tolist()} for e, x in enumerate(envs)}


def synthetic_rows(seed: int, reps: int, tolerance: float, threshold: str) -> list[dict]:
    truth = invariant_direction()
    rows = []
    for rep in range(reps):
        envs = synthetic_envs(seed, rep)
        fit = pica(envs, 1, tolerance, threshold)
        source = pica(envs, 1, SOURCE_TOLERANCE, "signed")  # the source's exact rule, beside
        for method, u in (("pica", fit.components[:, 0]),
                          ("pica_source_rule", source.components[:, 0]),
                          ("pca", pca(envs, 1)[:, 0])):
            rows.append({"rep": rep, "method": method, "cosine": cosine(u, truth),
                         "direction": u.tolist(),
                         "env_std": [float((x @ u).std(ddof=1)) for x in envs]})
    return rows


def _flat(envset: EnvSet) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    scale = envset.pixel_scale or 1.0
    return [(e.name, e.role, e.x.reshape(len(e), -1).double().numpy() / scale,
             e.y.double().numpy()) for e in envset.envs]


def image_rows(envset: EnvSet, dims: list[int], tolerance: float, threshold: str, l2: float,
               samples: int, seed: int) -> tuple[list[dict], dict]:
    """One row per (projection, dims): the probe's accuracy on every environment; and the first
    PICA and PCA component of up to ``samples`` examples per environment, for the figure."""
    envs = _flat(envset)
    train = [(x, y) for _, role, x, y in envs if role == "train"]
    if len(train) < 2:
        raise ConfigError(f"{envset.manifest.get('dataset')}: PICA needs two training "
                          f"environments (got {len(train)})")
    fit = pica([x for x, _ in train], max(dims), tolerance, threshold)
    base = pca([x for x, _ in train], max(dims))
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    projections = [("pixels", None, None)] + [
        (name, d, comps[:, :d]) for d in dims for name, comps in
        (("pica", fit.components), ("pca", base))]
    rows = []
    for name, d, comps in projections:
        def project(x, comps=comps):
            return x if comps is None else x @ comps
        probe = fit_probe(project(x_train), y_train, l2)
        rows.append({"projection": name, "dims": d if d is not None else x_train.shape[1],
                     "probe_grad_norm": probe[-1],
                     "acc": {env: probe_accuracy(probe, project(x), y)
                             for env, _, x, y in envs}})
    rng = np.random.default_rng(seed)
    figure = {"n_agreeing": fit.n_agreeing, "input_dim": int(x_train.shape[1]),
              "shared_variance": fit.shared_variance.tolist(), "envs": {}}
    for env, role, x, _ in envs:
        take = rng.permutation(len(x))[:samples]
        figure["envs"][env] = {"role": role,
                               "pica": np.round(x[take] @ fit.components[:, 0], 5).tolist(),
                               "pca": np.round(x[take] @ base[:, 0], 5).tolist()}
    return rows, figure


def run_pica_study(envsets: dict[str, EnvSet], datasets, seed, synthetic_reps, dims, tolerance,
                   threshold, probe_l2, figure_samples,
                   progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda _msg: None)
    synthetic = synthetic_rows(seed, synthetic_reps, tolerance, threshold)
    cos = [r["cosine"] for r in synthetic if r["method"] == "pica"]
    say(f"synthetic: PICA's cosine with the invariant direction "
        f"{pm(float(np.mean(cos)), float(np.std(cos)), 4)} (min {min(cos):.4f}) over "
        f"{synthetic_reps} reps")
    images = {}
    for name in datasets:
        envset = envsets[name]
        rows, figure = image_rows(envset, dims, tolerance, threshold, probe_l2, figure_samples,
                                  seed)
        images[name] = {"rows": rows, "figure": figure,
                        "reduced": bool(envset.manifest.get("reduced")),
                        "source": envset.manifest.get("source"),
                        "manifest_sha256": envset.manifest_sha256}
        for r in rows:
            accs = "  ".join(f"{env} {100 * a:5.1f}%" for env, a in r["acc"].items())
            say(f"{name}: {r['projection']:6s} dims {r['dims']:4d}  {accs}")
    return {"synthetic": synthetic, "images": images,
            "synthetic_figure": synthetic_figure(seed, tolerance, threshold)}
