"""AND-mask: the masked gradient against a brute-force loop over members, environments, elements."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.methods import METHODS, ANDMask, bce
from pipeline.methods.base import StepBatch
from tests.methods._common import train_end_to_end

K, D, H, SIZES, L2 = 3, 5, 4, (12, 15, 9), 1e-3


def _data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, D, generator=gen, dtype=torch.float64) for n in SIZES]
    ys = [(torch.rand(n, generator=gen) < 0.5).double() for n in SIZES]
    params = [torch.randn(K, D, H, generator=gen, dtype=torch.float64) * 0.7,  # member axis first
              torch.randn(K, H, generator=gen, dtype=torch.float64),
              torch.randn(K, generator=gen, dtype=torch.float64) * 0.1]
    return xs, ys, params


def _forward(xs, ys, params, method):
    """A tiny stacked two-layer model; the objective is the loop's: risk + L2 over parameters."""
    w1, w2, b = params
    logits = [torch.einsum("nd,kdh->knh", x, w1).tanh() @ w2.unsqueeze(-1) for x in xs]
    logits = [lg.squeeze(-1) + b.unsqueeze(1) for lg in logits]
    risks = torch.stack([bce(lg, y) for lg, y in zip(logits, ys, strict=True)], 1)
    l2 = sum(p.pow(2).reshape(K, -1).sum(1) for p in params)
    batch = StepBatch(logits, ys, [], risks)
    return batch, method.risk(risks) + L2 * l2


def _masked_grads(tau, reduction="mean", seed=0, params=None):
    xs, ys, default = _data(seed)
    params = [p.clone().requires_grad_() for p in (params or default)]
    method = ANDMask(make_config(None, method="andmask", andmask_tau=tau,
                                 risk_reduction=reduction))
    batch, objective = _forward(xs, ys, params, method)
    method.backward(objective, batch, params)
    return [p.grad for p in params], params, xs, ys


def _brute_force(tau, reduction="mean", seed=0):
    """Per member and environment gradients by autograd, then signs and mask element by element."""
    xs, ys, params = _data(seed)
    params = [p.clone().requires_grad_() for p in params]
    batch, _ = _forward(xs, ys, params, ANDMask(make_config(None, method="andmask")))
    n_envs, scale = len(SIZES), (len(SIZES) if reduction == "sum" else 1)
    expected = []
    for p in params:
        out = np.zeros(p.shape)
        for k in range(K):
            per_env = [torch.autograd.grad(batch.risks[k, e], p, retain_graph=True)[0][k]
                       .detach().numpy().ravel() for e in range(n_envs)]
            n = per_env[0].size
            mask, avg = np.zeros(n), np.zeros(n)
            for j in range(n):
                signs = [np.sign(per_env[e][j]) for e in range(n_envs)]
                mask[j] = float(abs(sum(signs) / n_envs) >= tau)
                avg[j] = sum(per_env[e][j] for e in range(n_envs)) / n_envs
            density = mask.sum() / n
            member = scale * mask * avg / (1e-10 + density)
            member += 2 * L2 * p.detach()[k].numpy().ravel()  # the L2 term, unmasked
            out[k] = member.reshape(p.shape[1:])
        expected.append(out)
    return expected


@pytest.mark.parametrize("tau", [0.0, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_masked_gradient_equals_brute_force(tau, reduction):
    grads, *_ = _masked_grads(tau, reduction)
    for got, want in zip(grads, _brute_force(tau, reduction), strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-13)


def test_tau_zero_is_the_plain_gradient_of_the_objective():
    grads, *_ = _masked_grads(0.0)
    xs, ys, params = _data()
    params = [p.clone().requires_grad_() for p in params]
    _, objective = _forward(xs, ys, params, METHODS["erm"](make_config(None)))
    objective.sum().backward()
    for got, p in zip(grads, params, strict=True):
        torch.testing.assert_close(got, p.grad, rtol=1e-9, atol=1e-14)


def test_tau_one_keeps_only_elements_where_every_environment_agrees():
    grads, params, xs, ys = _masked_grads(1.0)
    leaves = [p.detach().clone().requires_grad_() for p in params]
    batch, _ = _forward(xs, ys, leaves, ANDMask(make_config(None, method="andmask")))
    env_grads = [torch.autograd.grad(batch.risks[:, e].sum(), leaves, retain_graph=True)
                 for e in range(len(SIZES))]
    n_kept = n_masked = 0
    for i, got in enumerate(grads):
        stacked = torch.stack([g[i] for g in env_grads])
        agree = (stacked > 0).all(0) | (stacked < 0).all(0)
        risk_part = got - 2 * L2 * params[i].detach()
        assert bool((risk_part[~agree].abs() < 1e-15).all())
        assert bool((risk_part[agree] != 0).all())
        # where kept: the mean gradient over the member's kept fraction
        density = agree.reshape(K, -1).double().mean(1).reshape(-1, *[1] * (got.dim() - 1))
        expected = stacked.mean(0) / (1e-10 + density)
        torch.testing.assert_close(risk_part[agree], expected.expand_as(got)[agree],
                                   rtol=1e-10, atol=1e-13)
        n_kept, n_masked = n_kept + int(agree.sum()), n_masked + int((~agree).sum())
    assert n_kept and n_masked  # the data exercise both cases


def test_members_do_not_mix():
    """Changing member 0's parameters leaves members 1 and 2's masked gradients unchanged."""
    _, _, params = _data()
    altered = [p.clone() for p in params]
    for p in altered:
        p[0] = p[0] * -1.7 + 0.3
    for tau in (0.5, 1.0):
        base, *_ = _masked_grads(tau, params=params)
        other, *_ = _masked_grads(tau, params=altered)
        for a, b in zip(base, other, strict=True):
            torch.testing.assert_close(a[1:], b[1:], rtol=0, atol=0)
            assert not torch.equal(a[0], b[0])


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_tau_out_of_range_is_refused(bad):
    with pytest.raises(ConfigError, match="andmask_tau"):
        make_config(None, method="andmask", andmask_tau=bad)


@pytest.mark.parametrize("overrides", [{}, {"model": "lenet"}, {"risk_reduction": "sum"}])
def test_trains_end_to_end(tiny_envs, overrides):
    train_end_to_end(tiny_envs, "andmask", andmask_tau=0.5, **overrides)
