"""Shared fixtures: real environments built once per test session, small slices of them."""

from __future__ import annotations

import pytest
import torch

from pipeline.environments import load_envs, make_envs


@pytest.fixture(scope="session", autouse=True)
def _calibration_cache(tmp_path_factory):
    # dtype/formulation "auto" calibrations (pipeline.precision) go to a fresh cache, not the
    # user's: the suite sees what a new machine sees. Ray workers inherit the variable.
    import os

    from pipeline.precision import CACHE_ENV

    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("calibration"))
    yield
    if saved is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = saved


@pytest.fixture(scope="session", autouse=True)
def _deterministic_threads():
    # CPU results depend on the thread count; pin it so that the suite is reproducible.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fashion_envs_dir(tmp_path_factory):
    """colored_fashion_mnist from Debian's real Fashion-MNIST files, built once (~1 s)."""
    out = tmp_path_factory.mktemp("envs") / "colored_fashion_mnist"
    make_envs("colored_fashion_mnist", seed=0, out_dir=out)
    return out


@pytest.fixture(scope="session")
def fashion_envs(fashion_envs_dir):
    return load_envs(fashion_envs_dir)


@pytest.fixture(scope="session")
def tiny_envs(fashion_envs):
    """256 examples per environment: enough for equivalence and plumbing tests, and fast."""
    return fashion_envs.head(256)


@pytest.fixture(scope="session")
def tiny_envs_dir(tmp_path_factory):
    """A small real environment set (ENVS_DIR/colored_fashion_mnist) for searches and stages:
    Colored Fashion-MNIST with a 512-image training pool (256 per environment; ``reduced``),
    the complete test split, and its pool, so that data_draw = per_seed can redraw it."""
    root = tmp_path_factory.mktemp("tiny_envs")
    make_envs("colored_fashion_mnist", seed=0, out_dir=root / "colored_fashion_mnist",
              params={"n_train": 512})
    return root
