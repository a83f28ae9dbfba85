"""Fishr: closed-form per-sample gradients, the penalty against numpy, the moving average."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.methods import Fishr, StepBatch, bce
from pipeline.methods.fishr import classifier_sample_grads
from pipeline.models import build_stacked
from tests.methods._common import make_batch, train_end_to_end


def _head(k=2, sizes=(7, 9), n_features=3, seed=0, per_member_labels=False):
    """A tiny stacked linear head logit = w . h + b on random features, members first."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(k, n_features, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(k, generator=gen, dtype=torch.float64, requires_grad=True)
    feats = [torch.rand(k, n, n_features, generator=gen, dtype=torch.float64) * 2
             for n in sizes]
    shape = (lambda n: (k, n)) if per_member_labels else (lambda n: (n,))
    labels = [(torch.rand(*shape(n), generator=gen) < 0.5).double() for n in sizes]
    return w, b, feats, labels


def _logits(w, b, feats):
    return [torch.einsum("knf,kf->kn", h, w) + b.unsqueeze(1) for h in feats]


def _autograd_sample_grads(w, b, h, y, create_graph=False):
    """Per-sample gradient of each sample's BCE w.r.t. (w, b), one sample at a time: (K, N, F+1)."""
    k, n, _ = h.shape
    y = y.expand(k, n)
    rows = []
    for i in range(k):
        per_sample = []
        for j in range(n):
            loss = F.binary_cross_entropy_with_logits(h[i, j] @ w[i] + b[i], y[i, j])
            gw, gb = torch.autograd.grad(loss, (w, b), create_graph=create_graph)
            per_sample.append(torch.cat([gw[i], gb[i].reshape(1)]))
        rows.append(torch.stack(per_sample))
    return torch.stack(rows)


@pytest.mark.parametrize("per_member_labels", [False, True])
def test_closed_form_sample_grads_equal_autograd(per_member_labels):
    w, b, feats, labels = _head(per_member_labels=per_member_labels)
    for h, y, logits in zip(feats, labels, _logits(w, b, feats), strict=True):
        closed = classifier_sample_grads(logits, y, h)
        torch.testing.assert_close(closed, _autograd_sample_grads(w, b, h, y),
                                   rtol=1e-12, atol=1e-14)


def _last_layer(model):
    if hasattr(model, "names"):  # VmapStack (lenet)
        named = dict(zip(model.names, model.stacked, strict=True))
        return named["fc2.weight"], named["fc2.bias"]
    return model.weights[-1], model.biases[-1]  # StackedMLP


@pytest.mark.parametrize("model_name", ["mlp", "lenet"])
def test_features_are_the_input_of_the_models_last_linear_layer(model_name):
    """The closed form on the models' (logits, features) equals autograd on their last layer."""
    model = build_stacked(model_name, (2, 14, 14), 8, [0, 1]).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 2, 14, 14, generator=gen, dtype=torch.float64)
    y = (torch.rand(5, generator=gen) < 0.5).double()
    logits, feats = model(x)
    closed = classifier_sample_grads(logits, y, feats)
    weight, bias = _last_layer(model)
    for j in range(5):
        loss = F.binary_cross_entropy_with_logits(logits[:, j], y[j].expand(2), reduction="sum")
        gw, gb = torch.autograd.grad(loss, (weight, bias), retain_graph=True)
        expected = torch.cat([gw.reshape(2, -1), gb.reshape(2, -1)], 1)
        torch.testing.assert_close(closed[:, j], expected, rtol=1e-10, atol=1e-13)


def _numpy_penalty(batch: StepBatch, reduction: str) -> np.ndarray:
    out = []
    for k in range(batch.risks.shape[0]):
        variances = []
        for lg, y, h in zip(batch.logits, batch.labels, batch.features, strict=True):
            lg, h = lg[k].numpy(), h[k].numpy()
            yk = np.broadcast_to(y.numpy(), (batch.risks.shape[0], len(lg)))[k]
            r = 1 / (1 + np.exp(-lg)) - yk
            g = np.concatenate([r[:, None] * h, r[:, None]], axis=1)  # (N, F+1)
            variances.append(np.var(g, axis=0))  # centred, ddof = 0
        variances = np.array(variances)
        sq = (variances - variances.mean(0)) ** 2
        out.append(sq.sum() if reduction == "sum" else sq.mean(1).mean())
    return np.array(out)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("sizes", [(40, 50), (30, 40, 50)])
@pytest.mark.parametrize("per_member_labels", [False, True])
def test_penalty_equals_numpy(reduction, sizes, per_member_labels):
    batch = make_batch(sizes=sizes, per_member_labels=per_member_labels)
    method = Fishr(make_config(None, method="fishr", fishr_reduction=reduction))
    np.testing.assert_allclose(method.penalty(batch).numpy(), _numpy_penalty(batch, reduction),
                               rtol=1e-10)


def test_penalty_gradient_equals_double_backprop_through_autograd_sample_grads():
    """The closed form differentiates like BackPACK's create_graph=True per-sample gradients."""
    w, b, feats, labels = _head()
    feats = [h.requires_grad_() for h in feats]
    logits = _logits(w, b, feats)
    risks = torch.stack([bce(lg, y) for lg, y in zip(logits, labels, strict=True)], 1)
    penalty = Fishr(make_config(None, method="fishr")).penalty(
        StepBatch(logits, labels, feats, risks))
    closed = torch.autograd.grad(penalty.sum(), [w, b, *feats])
    var = torch.stack([(g - g.mean(1, keepdim=True)).pow(2).mean(1) for g in
                       (_autograd_sample_grads(w, b, h, y, create_graph=True)
                        for h, y in zip(feats, labels, strict=True))], 1)
    reference = (var - var.mean(1, keepdim=True)).pow(2).sum((1, 2))
    torch.testing.assert_close(penalty, reference, rtol=1e-12, atol=1e-15)
    for a, r in zip(closed, torch.autograd.grad(reference.sum(), [w, b, *feats]), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-13)


def test_moving_average_follows_domainbed():
    """ema * previous + (1 - ema) * variance (previous 0 at first), returned / (1 - ema)."""
    ema = 0.6
    first, second = make_batch(seed=1), make_batch(seed=2)
    plain = Fishr(make_config(None, method="fishr"))
    v1, v2 = plain.variances(first), plain.variances(second)
    assert plain.ema_state is None  # ema = 0: no state, each call stands alone
    method = Fishr(make_config(None, method="fishr", fishr_ema=ema))
    out1 = method.variances(first)
    torch.testing.assert_close(out1, v1, rtol=1e-12, atol=0)  # ((1 - ema) v1) / (1 - ema)
    torch.testing.assert_close(method.ema_state, (1 - ema) * v1)
    out2 = method.variances(second)
    state2 = ema * (1 - ema) * v1 + (1 - ema) * v2
    torch.testing.assert_close(method.ema_state, state2)
    torch.testing.assert_close(out2, state2 / (1 - ema))
    assert not method.ema_state.requires_grad
    # the penalty uses the averaged variances
    method = Fishr(make_config(None, method="fishr", fishr_ema=ema))
    method.penalty(first)
    sq = (out2 - out2.mean(1, keepdim=True)).pow(2).sum((1, 2))
    torch.testing.assert_close(method.penalty(second), sq)


def test_moving_average_state_is_per_member():
    ema = 0.5
    first, second = make_batch(seed=1), make_batch(seed=2)
    altered = make_batch(seed=1)
    altered.logits[0][0] += 3.0
    a = Fishr(make_config(None, method="fishr", fishr_ema=ema))
    c = Fishr(make_config(None, method="fishr", fishr_ema=ema))
    a.penalty(first)
    c.penalty(altered)
    pa, pc = a.penalty(second), c.penalty(second)
    torch.testing.assert_close(pa[1:], pc[1:], rtol=0, atol=0)
    assert pa[0] != pc[0]


def test_bf16_features_are_computed_in_float32():
    batch = make_batch(dtype=torch.float32)
    batch.features = [f.bfloat16() for f in batch.features]
    penalty = Fishr(make_config(None, method="fishr")).penalty(batch)
    assert penalty.dtype == torch.float32 and bool(torch.isfinite(penalty).all())


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_ema_out_of_range_is_refused(bad):
    with pytest.raises(ConfigError, match="fishr_ema"):
        make_config(None, method="fishr", fishr_ema=bad)


@pytest.mark.parametrize("overrides", [{}, {"model": "lenet"}, {"fishr_ema": 0.9,
                                                                 "fishr_reduction": "mean"},
                                       {"dtype": "bf16"}])
def test_trains_end_to_end(tiny_envs, overrides):
    train_end_to_end(tiny_envs, "fishr", **overrides)
