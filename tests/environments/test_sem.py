"""The IRM paper's linear SEM: environments, true coefficients, scrambling, and ERM's bias."""

from __future__ import annotations

import pytest
import torch

from pipeline.environments import load_envs, make_envs, resolve_dataset_params
from pipeline.environments.sem import SEM_SETUPS
from pipeline.errors import ConfigError

DIM, N, REPS = 10, 5000, 2
SIGMAS = [0.2, 2.0, 5.0]
CAUSAL = torch.tensor([1.0] * 5 + [0.0] * 5)
SETUPS = ["FOU", "FEU", "FOS", "POU"]


def build(tmp_path, setups: list[str], seed: int = 0, reps: int = REPS, n: int = N):
    out = make_envs("sem", seed=seed, out_dir=tmp_path,
                    params={"setups": setups, "reps": reps, "dim": DIM, "n_samples": n})
    return load_envs(out)


@pytest.fixture(scope="module")
def sems(tmp_path_factory):
    return build(tmp_path_factory.mktemp("sem"), SETUPS)


def train_envs(envset, setup: str) -> list:
    return [e for e in envset.train if e.params["setup"] == setup]


def solution_env(envset, setup: str):
    (solution,) = [e for e in envset.envs if e.name == f"{setup}_solution"]
    return solution


def pooled(envset, setup: str, rep: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([e.x[rep] for e in train_envs(envset, setup)]).double()
    y = torch.cat([e.y[rep] for e in train_envs(envset, setup)]).double()
    return x, y


def ols(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)


def test_layout_names_roles_and_order(sems):
    expected = [n for s in SETUPS for n in ([(f"{s}_env{i}", "train") for i in range(3)]
                                            + [(f"{s}_solution", "meta")])]
    assert [(e.name, e.role) for e in sems.envs] == expected
    assert sems.manifest["setups"] == SETUPS and sems.manifest["reps"] == REPS
    assert any("SeedSequence" in note for note in sems.manifest["notes"])
    assert sems.manifest["task"] == "regression"
    sizes = {e["name"]: e["size"] for e in sems.manifest["environments"]}
    assert sizes["FOU_env0"] == N and sizes["FOU_solution"] == REPS  # examples, not reps


@pytest.mark.parametrize("setup", ["FOU", "FEU", "FOS"])
def test_environments_and_solution(sems, setup):
    envs = train_envs(sems, setup)
    assert [e.params for e in envs] == [{"setup": setup, "sigma": s} for s in SIGMAS]
    for env in envs:
        assert tuple(env.x.shape) == (REPS, N, DIM) and env.x.dtype == torch.float32
        assert tuple(env.y.shape) == (REPS, N)
        assert torch.isfinite(env.x).all() and torch.isfinite(env.y).all()
    solution = solution_env(sems, setup)
    assert solution.params["setup"] == setup
    assert torch.equal(solution.x, CAUSAL.expand(REPS, DIM))
    assert torch.equal(solution.y, torch.zeros(REPS))
    assert tuple(solution.extra["scramble"].shape) == (REPS, DIM, DIM)
    assert sems.manifest["reduced"] is False
    assert sems.manifest["input_shape"] == [DIM]
    assert sems.pixel_scale is None


@pytest.mark.parametrize("setup", ["FOU", "FEU"])
def test_environment_scales_follow_sigma(sems, setup):
    """Var(x_i) = 2 sigma^2 (x = h + noise, both N(0, sigma^2)) in the fully observed setups."""
    for env in train_envs(sems, setup):
        for rep in range(REPS):
            variance = env.x[rep, :, :DIM // 2].var(0)
            expected = torch.full_like(variance, 2 * env.params["sigma"] ** 2)
            assert torch.allclose(variance, expected, rtol=0.1)


@pytest.mark.parametrize("setup", ["FOU", "FEU"])
@pytest.mark.parametrize("rep", range(REPS))
def test_pooled_ols_on_causal_inputs_recovers_coefficients(sems, setup, rep):
    x, y = pooled(sems, setup, rep)
    w = ols(x[:, :DIM // 2], y)
    assert torch.allclose(w, torch.ones(DIM // 2, dtype=w.dtype), atol=0.05), w


def test_erm_uses_the_spurious_inputs_in_fou(sems):
    """Published: ERM's error on FOU is about 0.009, all of it in the z coefficients."""
    for rep in range(REPS):
        x, y = pooled(sems, "FOU", rep)
        truth = solution_env(sems, "FOU").x[rep].double()
        w_all = ols(x, y)
        z_error = (w_all[DIM // 2:] - truth[DIM // 2:]).pow(2).mean().item()
        assert z_error > 0.001
        w_causal = ols(x[:, :DIM // 2], y)
        causal_error = (w_causal - truth[:DIM // 2]).pow(2).mean().item()
        assert causal_error < 0.005


def test_scramble_is_orthogonal_and_unscrambling_recovers_coefficients(sems):
    scrambles = solution_env(sems, "FOS").extra["scramble"].double()
    eye = torch.eye(DIM, dtype=scrambles.dtype)
    for rep, scramble in enumerate(scrambles):
        assert torch.allclose(scramble.T @ scramble, eye, atol=1e-5)
        assert not torch.allclose(scramble, eye)  # really scrambled
        x, y = pooled(sems, "FOS", rep)
        unscrambled = x @ scramble.T  # x_obs = [x, z] S, so [x, z] = x_obs S^T
        w = ols(unscrambled[:, :DIM // 2], y)
        assert torch.allclose(w, torch.ones(DIM // 2, dtype=w.dtype), atol=0.05), w
    assert not torch.allclose(scrambles[0], scrambles[1])  # each rep draws its own


@pytest.mark.parametrize("setup", ["FOU", "FEU"])
def test_unscrambled_setups_save_the_identity(sems, setup):
    assert torch.equal(solution_env(sems, setup).extra["scramble"],
                       torch.eye(DIM).expand(REPS, DIM, DIM))


def test_reps_and_setups_differ(sems):
    a, b = train_envs(sems, "FOU")[0].x
    assert not torch.equal(a, b)
    assert not torch.equal(train_envs(sems, "FOU")[0].x, train_envs(sems, "FEU")[0].x)


def test_same_seed_same_data_other_seed_differs(tmp_path, sems):
    again = build(tmp_path / "again", SETUPS)
    other = build(tmp_path / "other", SETUPS, seed=1)
    for a, b, c in zip(sems.envs, again.envs, other.envs, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
        if a.role == "train":
            assert not torch.equal(a.x, c.x)


def test_a_rep_is_the_same_whatever_the_other_reps_and_setups(tmp_path):
    """Each (setup, rep) has its own seed: more reps or other setups never change it."""
    one = build(tmp_path / "one", ["FOS"], reps=1, n=50)
    three = build(tmp_path / "three", ["FEU", "FOS"], reps=3, n=50)
    for env in one.envs:
        (same,) = [e for e in three.envs if e.name == env.name]
        assert torch.equal(env.x[0], same.x[0]) and torch.equal(env.y[0], same.y[0])
        for key, value in env.extra.items():
            assert torch.equal(value[0], same.extra[key][0])
        if env.role == "train":
            assert not torch.equal(same.x[0], same.x[1])


def test_setup_is_validated(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_envs("sem", out_dir=tmp_path, params={"setups": ["FOU", "XYZ"]})
    message = str(info.value)
    assert "setups" in message and "XYZ" in message
    for setup in SEM_SETUPS:
        assert setup in message


@pytest.mark.parametrize("params, needle", [
    ({"dim": 7}, "dim"),
    ({"dim": 0}, "dim"),
    ({"n_samples": 0}, "n_samples"),
    ({"env_sigmas": [1.0]}, "env_sigmas"),
    ({"env_sigmas": [1.0, 0.0]}, r"env_sigmas\[1\]"),
    ({"sigma": 1.0}, "sigma"),
    ({"setup": "FOU"}, "did you mean 'setups'"),
    ({"setups": []}, "setups is empty.*FOU"),
    ({"setups": "FOU"}, r"setups = 'FOU' must be a list.*PES"),
    ({"setups": ["FOU", "FEU", "FOU"]}, "setups lists FOU more than once"),
    ({"reps": 0}, r"reps = 0 is out of range; allowed: \[1, inf\]"),
    ({"reps": 1.5}, "reps = 1.5 is not a valid int"),
    ({"reps": "many"}, "reps = 'many' is not a valid int"),
])
def test_bad_parameters(tmp_path, params, needle):
    with pytest.raises(ConfigError, match=needle):
        make_envs("sem", out_dir=tmp_path, params=params)
    assert not (tmp_path / "manifest.json").exists()


def test_defaults():
    params = resolve_dataset_params("sem", {"setups": ["PES"]})
    assert params["setups"] == ["PES"]
    assert params["env_sigmas"] == SIGMAS
    assert resolve_dataset_params("sem")["setups"] == list(SEM_SETUPS)
    assert resolve_dataset_params("sem")["reps"] == 1


@pytest.mark.parametrize("setup,hetero", [("FOU", False), ("FEU", True)])
def test_noise_on_y_is_homo_or_heteroskedastic(sems, setup, hetero):
    """Y - sum(x) is the summed noise of y: variance d (O) or d * sigma^2 (E)."""
    d = DIM // 2
    for env in train_envs(sems, setup):
        for rep in range(REPS):
            residual = env.y[rep] - env.x[rep, :, :d].sum(1)
            expected = d * env.params["sigma"] ** 2 if hetero else d
            assert residual.var().item() == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("rep", range(REPS))
def test_hidden_confounder_biases_causal_ols_in_partially_observed_setups(sems, rep):
    """With h -> y (P), regressing Y on x alone no longer recovers the causal ones."""
    x, y = pooled(sems, "POU", rep)
    w = ols(x[:, :DIM // 2], y)
    assert (w - 1).abs().max().item() > 0.02
    x, y = pooled(sems, "FOU", rep)
    w = ols(x[:, :DIM // 2], y)
    assert (w - 1).abs().max().item() < 0.02
