"""The IRM appendix's minimal IRMv1 loop: the closed-form solver against the appendix's autograd
loop, and what it converges to on the appendix's data."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import grad

from pipeline.environments import load_envs, make_envs
from pipeline.errors import ConfigError
from pipeline.sem.appendix import solve_appendix


@pytest.fixture(scope="module")
def appendix(tmp_path_factory):
    return load_envs(make_envs("sem_appendix", seed=0,
                               out_dir=tmp_path_factory.mktemp("appendix")))


def appendix_loop(envs, iterations: int, seed: int) -> tuple[list[float], float]:
    """The appendix's loop as printed (autograd, two-half penalty), in float64."""
    gen = torch.Generator().manual_seed(seed)
    phi = torch.nn.Parameter(torch.ones(4, 1, dtype=torch.float64))
    dummy_w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = torch.optim.SGD([phi], lr=1e-3)
    data = [(e.x.double(), e.y.double().view(-1, 1)) for e in envs]
    for _ in range(iterations):
        error, penalty = 0, 0
        for x_e, y_e in data:
            p = torch.randperm(len(x_e), generator=gen)
            error_e = (x_e[p] @ phi * dummy_w - y_e[p]) ** 2
            g1 = grad(error_e[0::2].mean(), dummy_w, create_graph=True)[0]
            g2 = grad(error_e[1::2].mean(), dummy_w, create_graph=True)[0]
            penalty = penalty + (g1 * g2).sum()
            error = error + error_e.mean()
        opt.zero_grad()
        (1e-5 * error + penalty).backward()
        opt.step()
    return phi.detach().view(-1).tolist(), penalty.item()


def test_closed_form_loop_equals_the_autograd_loop(appendix):
    phi, penalty = appendix_loop(appendix.envs, 25, seed=3)
    result = solve_appendix(appendix.envs, iterations=25, seed=3, chunk=10)
    assert result.phi == pytest.approx(phi, rel=1e-10, abs=1e-12)
    assert result.penalty == pytest.approx(penalty, rel=1e-8, abs=1e-12)
    assert result.phi != pytest.approx([1.0] * 4, abs=1e-3)  # it did move


def test_solution_drops_the_non_causal_inputs(appendix):
    """10,000 of the appendix's 50,000 iterations (~3 s here; the full run takes ~15 s and
    ends near phi = (1.00, 1.00, 0.013, 0.014) on data seed 0): the z weights fall from 1 to
    below 0.06 and keep falling, the x weights carry the prediction."""
    result = solve_appendix(appendix.envs, iterations=10000, seed=0, record_every=2500)
    phi_x, phi_z = result.phi[:2], result.phi[2:]
    assert max(abs(w) for w in phi_z) < 0.06
    assert all(abs(w - 1) < 0.05 for w in phi_x)
    z_path = [max(abs(w) for w in h["phi"][2:]) for h in result.history]
    assert [h["iteration"] for h in result.history] == [2500, 5000, 7500, 10000]
    assert z_path == sorted(z_path, reverse=True)
    # the invariant predictor's error is the noise on y: d * env^2 = 0.02 and 2.0
    assert result.errors[0] == pytest.approx(0.02, abs=0.005)
    assert result.errors[1] == pytest.approx(2.0, abs=0.2)


def test_solver_rejects_bad_arguments(appendix):
    with pytest.raises(ConfigError, match="iterations"):
        solve_appendix(appendix.envs, iterations=0)
    with pytest.raises(ConfigError, match="lr"):
        solve_appendix(appendix.envs, iterations=1, lr=0.0)
    with pytest.raises(ConfigError, match="same number of inputs"):
        solve_appendix([(torch.ones(4, 2), torch.ones(4)), (torch.ones(4, 3), torch.ones(4))])
