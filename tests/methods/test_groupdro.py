"""GroupDRO: the exponentiated-gradient weights against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.methods import GroupDRO
from tests.methods._common import train_end_to_end


def _risks(seed, k=3, e=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(k, e, generator=gen, dtype=torch.float64) * 2


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_q_after_two_steps_and_the_weighted_risk(reduction):
    eta = 0.7
    method = GroupDRO(make_config(None, method="groupdro", groupdro_eta=eta,
                                  risk_reduction=reduction))
    r1, r2 = _risks(1), _risks(2)
    q = np.ones((3, 3))
    for r in (r1, r2):
        risks = r.clone().requires_grad_()
        out = method.risk(risks)
        q = q * np.exp(eta * r.numpy())
        q = q / q.sum(1, keepdims=True)
        np.testing.assert_allclose(method.q.numpy(), q, rtol=1e-13)
        np.testing.assert_allclose(out.detach().numpy(), (q * r.numpy()).sum(1), rtol=1e-13)
        # q is a constant of the step: the gradient w.r.t. the risks is q itself
        (grad,) = torch.autograd.grad(out.sum(), risks)
        np.testing.assert_allclose(grad.numpy(), q, rtol=1e-13)
    assert not method.q.requires_grad


def test_q_starts_uniform_and_rows_are_members():
    method = GroupDRO(make_config(None, method="groupdro", groupdro_eta=0.5))
    r = _risks(3)
    altered = r.clone()
    altered[0] += 1.0
    other = GroupDRO(make_config(None, method="groupdro", groupdro_eta=0.5))
    a, b = method.risk(r), other.risk(altered)
    torch.testing.assert_close(method.q[1:], other.q[1:], rtol=0, atol=0)
    torch.testing.assert_close(a[1:], b[1:], rtol=0, atol=0)
    zero = GroupDRO(make_config(None, method="groupdro", groupdro_eta=1e-300))
    zero.risk(r)  # eta -> 0: the weights stay uniform
    torch.testing.assert_close(zero.q, torch.full_like(r, 1 / 3))


def test_q_follows_the_risks_dtype():
    method = GroupDRO(make_config(None, method="groupdro"))
    method.risk(_risks(1))
    assert method.q.dtype == torch.float64
    out = method.risk(_risks(2).float())
    assert method.q.dtype == out.dtype == torch.float32


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_eta_must_be_positive(bad):
    with pytest.raises(ConfigError, match="groupdro_eta"):
        make_config(None, method="groupdro", groupdro_eta=bad)


def test_trains_end_to_end(tiny_envs):
    train_end_to_end(tiny_envs, "groupdro", groupdro_eta=0.1)
