"""The IRM appendix's linear example: the data (the solver: tests/sem/test_appendix.py)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from pipeline.config import make_config
from pipeline.environments import load_envs, make_envs
from pipeline.errors import ConfigError
from pipeline.training import train


@pytest.fixture(scope="module")
def appendix_dir(tmp_path_factory):
    return make_envs("sem_appendix", seed=0, out_dir=tmp_path_factory.mktemp("appendix"))


@pytest.fixture(scope="module")
def appendix(appendix_dir):
    return load_envs(appendix_dir)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout_and_manifest(appendix):
    assert [e.name for e in appendix.envs] == ["train0", "train1"]
    assert [e.role for e in appendix.envs] == ["train", "train"]
    assert [e.params["env_scale"] for e in appendix.envs] == [0.1, 1.0]
    for env in appendix.envs:
        assert tuple(env.x.shape) == (10000, 4) and tuple(env.y.shape) == (10000,)
        assert env.x.dtype == torch.float32
    manifest = appendix.manifest
    assert manifest["task"] == "regression"
    assert manifest["reduced"] is False
    assert manifest["input_shape"] == [4]
    assert manifest["solution"] == [1.0, 1.0, 0.0, 0.0]
    assert manifest["params"] == {"n_samples": 10000, "dim": 2, "env_scales": [0.1, 1.0]}


def test_data_is_the_appendix_code_after_manual_seed(appendix):
    """The appendix's ``example_1`` on torch's global generator seeded like the data seed."""
    def example_1(n=10000, d=2, env=1):
        x = torch.randn(n, d) * env
        y = x + torch.randn(n, d) * env
        z = y + torch.randn(n, d)
        return torch.cat((x, z), 1), y.sum(1, keepdim=True)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        expected = [example_1(env=0.1), example_1(env=1.0)]
    for env, (x, y) in zip(appendix.envs, expected, strict=True):
        assert torch.equal(env.x, x) and torch.equal(env.y, y.view(-1))


def test_same_seed_same_files_other_seed_differs(appendix_dir, tmp_path):
    again = make_envs("sem_appendix", seed=0, out_dir=tmp_path / "a")
    other = make_envs("sem_appendix", seed=1, out_dir=tmp_path / "b")
    for name in ("train0.pt", "train1.pt"):
        assert sha256(again / name) == sha256(appendix_dir / name)
        assert sha256(other / name) != sha256(appendix_dir / name)


def test_the_classifier_trainer_rejects_it(appendix):
    with pytest.raises(ConfigError, match="regression"):
        train(make_config(None, steps=2), [0], envset=appendix)


@pytest.mark.parametrize("params, needle", [
    ({"n_samples": 1}, "n_samples"),
    ({"dim": 0}, "dim"),
    ({"dim": 1.5}, "dim"),
    ({"env_scales": [0.1]}, "env_scales"),
    ({"env_scales": [0.1, -1.0]}, r"env_scales\[1\]"),
    ({"env_scale": [0.1, 1.0]}, "env_scales"),
])
def test_bad_parameters(tmp_path, params, needle):
    with pytest.raises(ConfigError, match=needle):
        make_envs("sem_appendix", out_dir=tmp_path, params=params)
