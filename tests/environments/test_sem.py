"""The IRM paper's linear SEM: environments, true coefficients, scrambling, and ERM's bias."""

from __future__ import annotations

import pytest
import torch

from pipeline.environments import load_envs, make_envs, resolve_dataset_params
from pipeline.environments.sem import SEM_SETUPS
from pipeline.errors import ConfigError

DIM, N = 10, 5000
SIGMAS = [0.2, 2.0, 5.0]
CAUSAL = torch.tensor([1.0] * 5 + [0.0] * 5)


def build(tmp_path_factory, setup: str, seed: int = 0):
    out = make_envs("sem", seed=seed, out_dir=tmp_path_factory.mktemp(setup),
                    params={"setup": setup, "dim": DIM, "n_samples": N})
    return load_envs(out)


@pytest.fixture(scope="module")
def sems(tmp_path_factory) -> dict:
    return {setup: build(tmp_path_factory, setup) for setup in ("FOU", "FEU", "FOS", "POU")}


def pooled(envset) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([e.x for e in envset.train]).double()
    y = torch.cat([e.y for e in envset.train]).double()
    return x, y


def ols(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)


def solution_env(envset):
    (solution,) = [e for e in envset.envs if e.name == "solution"]
    return solution


@pytest.mark.parametrize("setup", ["FOU", "FEU", "FOS"])
def test_environments_and_solution(sems, setup):
    envset = sems[setup]
    assert [e.name for e in envset.envs] == ["env0", "env1", "env2", "solution"]
    assert [e.role for e in envset.envs] == ["train", "train", "train", "meta"]
    assert [e.params["sigma"] for e in envset.train] == SIGMAS
    for env in envset.train:
        assert tuple(env.x.shape) == (N, DIM)
        assert tuple(env.y.shape) == (N,)
        assert torch.isfinite(env.x).all() and torch.isfinite(env.y).all()
    solution = solution_env(envset)
    assert torch.equal(solution.x.view(-1), CAUSAL)
    assert envset.manifest["reduced"] is False
    assert envset.manifest["input_shape"] == [DIM]
    assert envset.pixel_scale is None


@pytest.mark.parametrize("setup", ["FOU", "FEU"])
def test_environment_scales_follow_sigma(sems, setup):
    """Var(x_i) = 2 sigma^2 (x = h + noise, both N(0, sigma^2)) in the fully observed setups."""
    for env in sems[setup].train:
        variance = env.x[:, :DIM // 2].var(0)
        sigma = env.params["sigma"]
        assert torch.allclose(variance, torch.full_like(variance, 2 * sigma**2), rtol=0.1)


@pytest.mark.parametrize("setup", ["FOU", "FEU"])
def test_pooled_ols_on_causal_inputs_recovers_coefficients(sems, setup):
    x, y = pooled(sems[setup])
    w = ols(x[:, :DIM // 2], y)
    assert torch.allclose(w, torch.ones(DIM // 2, dtype=w.dtype), atol=0.05), w


def test_erm_uses_the_spurious_inputs_in_fou(sems):
    """Published: ERM's error on FOU is about 0.009, all of it in the z coefficients."""
    envset = sems["FOU"]
    x, y = pooled(envset)
    truth = solution_env(envset).x.view(-1).double()
    w_all = ols(x, y)
    z_error = (w_all[DIM // 2:] - truth[DIM // 2:]).pow(2).mean().item()
    assert z_error > 0.001
    w_causal = ols(x[:, :DIM // 2], y)
    causal_error = (w_causal - truth[:DIM // 2]).pow(2).mean().item()
    assert causal_error < 0.005


def test_scramble_is_orthogonal_and_unscrambling_recovers_coefficients(sems):
    envset = sems["FOS"]
    scramble = solution_env(envset).extra["scramble"].double()
    assert tuple(scramble.shape) == (DIM, DIM)
    eye = torch.eye(DIM, dtype=scramble.dtype)
    assert torch.allclose(scramble.T @ scramble, eye, atol=1e-5)
    assert not torch.allclose(scramble, eye)  # really scrambled
    x, y = pooled(envset)
    unscrambled = x @ scramble.T  # x_obs = [x, z] S, so [x, z] = x_obs S^T
    w = ols(unscrambled[:, :DIM // 2], y)
    assert torch.allclose(w, torch.ones(DIM // 2, dtype=w.dtype), atol=0.05), w


@pytest.mark.parametrize("setup", ["FOU", "FEU"])
def test_unscrambled_setups_save_the_identity(sems, setup):
    assert torch.equal(solution_env(sems[setup]).extra["scramble"], torch.eye(DIM))


def test_same_seed_same_data_other_seed_differs(tmp_path_factory, sems):
    again = build(tmp_path_factory, "FOU")
    other = build(tmp_path_factory, "FOU", seed=1)
    for a, b, c in zip(sems["FOU"].train, again.train, other.train, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
        assert not torch.equal(a.x, c.x)


def test_setup_is_validated(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_envs("sem", out_dir=tmp_path, params={"setup": "XYZ"})
    message = str(info.value)
    assert "XYZ" in message
    for setup in SEM_SETUPS:
        assert setup in message
    assert "PES" in message


@pytest.mark.parametrize("params, needle", [
    ({"dim": 7}, "dim"),
    ({"dim": 0}, "dim"),
    ({"n_samples": 0}, "n_samples"),
    ({"env_sigmas": [1.0]}, "env_sigmas"),
    ({"env_sigmas": [1.0, 0.0]}, r"env_sigmas\[1\]"),
    ({"sigma": 1.0}, "sigma"),
])
def test_bad_parameters(tmp_path, params, needle):
    with pytest.raises(ConfigError, match=needle):
        make_envs("sem", out_dir=tmp_path, params=params)


def test_defaults():
    params = resolve_dataset_params("sem", {"setup": "PES"})
    assert params["setup"] == "PES"
    assert params["env_sigmas"] == SIGMAS
    assert resolve_dataset_params("sem")["setup"] == "FOU"


@pytest.mark.parametrize("setup,hetero", [("FOU", False), ("FEU", True)])
def test_noise_on_y_is_homo_or_heteroskedastic(sems, setup, hetero):
    """Y - sum(x) is the summed noise of y: variance d (O) or d * sigma^2 (E)."""
    d = DIM // 2
    for env in sems[setup].train:
        residual = env.y - env.x[:, :d].sum(1)
        expected = d * env.params["sigma"] ** 2 if hetero else d
        assert residual.var().item() == pytest.approx(expected, rel=0.1)


def test_hidden_confounder_biases_causal_ols_in_partially_observed_setups(sems):
    """With h -> y (P), regressing Y on x alone no longer recovers the causal ones."""
    x, y = pooled(sems["POU"])
    w = ols(x[:, :DIM // 2], y)
    assert (w - 1).abs().max().item() > 0.02
    x, y = pooled(sems["FOU"])
    w = ols(x[:, :DIM // 2], y)
    assert (w - 1).abs().max().item() < 0.02
