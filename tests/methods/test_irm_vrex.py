"""IRM's and V-REx's penalties and ERM's risk against brute force on small tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import make_config
from pipeline.methods import (
    IRM,
    METHODS,
    StepBatch,
    VREx,
    accuracy,
    bce,
    irm_grad_autograd,
    irm_grad_closed_form,
)


def _batch(k=3, sizes=(40, 50), dtype=torch.float64, seed=0) -> StepBatch:
    gen = torch.Generator().manual_seed(seed)
    logits = [torch.randn(k, n, generator=gen, dtype=dtype) * 2 for n in sizes]
    labels = [(torch.rand(n, generator=gen) < 0.5).to(dtype) for n in sizes]
    risks = torch.stack([bce(lg, y) for lg, y in zip(logits, labels, strict=True)], 1)
    return StepBatch(logits, labels, [torch.zeros(k, n, 2, dtype=dtype) for n in sizes], risks)


def _brute_force_scale_grad(logits_row: torch.Tensor, labels: torch.Tensor) -> float:
    """Central finite difference of BCE(s * f, y) in s at s = 1, in float64."""
    def risk(s):
        return torch.nn.functional.binary_cross_entropy_with_logits(logits_row * s, labels).item()
    eps = 1e-6
    return (risk(1 + eps) - risk(1 - eps)) / (2 * eps)


def test_closed_form_and_double_backprop_agree_in_float64():
    batch = _batch()
    for logits, labels in zip(batch.logits, batch.labels, strict=True):
        closed = irm_grad_closed_form(logits, labels)
        auto = irm_grad_autograd(logits, labels)
        assert closed.dtype == auto.dtype == torch.float64
        torch.testing.assert_close(closed, auto, rtol=1e-12, atol=1e-14)
        for k in range(logits.shape[0]):
            assert closed[k].item() == pytest.approx(
                _brute_force_scale_grad(logits[k], labels), rel=1e-6)


def test_autograd_estimator_is_differentiable_like_the_closed_form():
    batch = _batch(dtype=torch.float64)
    for estimator in ("closed_form", "autograd"):
        logits = batch.logits[0].clone().requires_grad_()
        method = IRM(make_config(None, method="irm", irm_estimator=estimator))
        penalty = method.penalty(StepBatch([logits], batch.labels[:1], [], batch.risks[:, :1]))
        (grad,) = torch.autograd.grad(penalty.sum(), logits)
        if estimator == "closed_form":
            reference = grad
        else:
            torch.testing.assert_close(grad, reference, rtol=1e-10, atol=1e-12)


def test_irm_penalty_is_the_mean_over_environments_of_the_squared_gradient():
    batch = _batch()
    penalty = IRM(make_config(None, method="irm")).penalty(batch)
    for k in range(3):
        grads = [_brute_force_scale_grad(lg[k], y) for lg, y in
                 zip(batch.logits, batch.labels, strict=True)]
        assert penalty[k].item() == pytest.approx(np.mean(np.square(grads)), rel=1e-5)


def test_two_half_estimator_is_the_product_of_the_halves_gradients():
    batch = _batch()
    penalty = IRM(make_config(None, method="irm", irm_estimator="two_half")).penalty(batch)
    for k in range(3):
        terms = []
        for lg, y in zip(batch.logits, batch.labels, strict=True):
            even = _brute_force_scale_grad(lg[k, ::2], y[::2])
            odd = _brute_force_scale_grad(lg[k, 1::2], y[1::2])
            terms.append(even * odd)
        assert penalty[k].item() == pytest.approx(np.mean(terms), rel=1e-5)


def test_vrex_penalty_is_the_population_variance_of_the_risks():
    batch = _batch(sizes=(30, 40, 50))
    penalty = VREx(make_config(None, method="vrex")).penalty(batch)
    expected = np.var(batch.risks.numpy(), axis=1)  # ddof = 0
    np.testing.assert_allclose(penalty.numpy(), expected, rtol=1e-12)


# the methods whose risk is the plain mean or sum and whose penalty reads only the logits;
# every method (these included) also passes the contract suite in tests/methods/test_contract.py
LOGIT_METHODS = ["erm", "irm", "vrex"]


@pytest.mark.parametrize("name", LOGIT_METHODS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_contract_risk_reduction_and_penalty_shape(name, reduction):
    batch = _batch()
    method = METHODS[name](make_config(None, method=name, risk_reduction=reduction))
    risk = method.risk(batch.risks)
    expected = batch.risks.sum(1) if reduction == "sum" else batch.risks.mean(1)
    torch.testing.assert_close(risk, expected)
    penalty = method.penalty(batch)
    assert penalty.shape == (3,)
    assert bool((penalty >= 0).all())


def test_members_do_not_mix_in_any_penalty():
    """Changing member 0's logits leaves members 1 and 2's penalties unchanged."""
    batch = _batch()
    altered = _batch()
    altered.logits[0][0] += 5.0
    altered.risks = torch.stack([bce(lg, y) for lg, y in
                                 zip(altered.logits, altered.labels, strict=True)], 1)
    for name in LOGIT_METHODS:
        method = METHODS[name](make_config(None, method=name))
        torch.testing.assert_close(method.penalty(batch)[1:], method.penalty(altered)[1:])


def test_accuracy_is_the_sign_of_the_logit_against_the_label():
    logits = torch.tensor([[2.0, -1.0, 0.0, 3.0]])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert accuracy(logits, labels).item() == pytest.approx(0.5)  # logit 0 predicts class 0


def test_vrex_squared_difference_is_rex_and_fishrs_form():
    batch = _batch()
    cfg = make_config(None, method="vrex", vrex_penalty="squared_difference")
    penalty = VREx(cfg).penalty(batch)
    expected = (batch.risks[:, 0] - batch.risks[:, 1]).pow(2)
    torch.testing.assert_close(penalty, expected)
    variance = VREx(make_config(None, method="vrex")).penalty(batch)
    torch.testing.assert_close(penalty, 4 * variance)  # two environments: (L1 - L2)^2 = 4 var
    with pytest.raises(ValueError, match="exactly two"):
        VREx(cfg).penalty(_batch(sizes=(10, 10, 10)))
