"""FGSM and DANN against brute-force per-member computations, and end to end on real data."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.methods import DANN, FGSM, METHODS, MethodContext, StepBatch, bce
from pipeline.models import build_member, build_stacked
from pipeline.training import train

SEEDS = [0, 1, 2]
SHAPE = [2, 4, 4]


def _stacked():
    return build_stacked("mlp", SHAPE, 8, SEEDS).double()


def _image_batch(model, shared=True, sizes=(6, 7), seed=0) -> StepBatch:
    """Pixels in [0, 1] (some at the bounds) and the model's forward, members first."""
    gen = torch.Generator().manual_seed(seed)
    k = len(SEEDS)
    lead = (lambda n: (n,)) if shared else (lambda n: (k, n))
    inputs = [torch.rand(*lead(n), *SHAPE, generator=gen, dtype=torch.float64).round(decimals=1)
              for n in sizes]
    labels = [(torch.rand(*lead(n), generator=gen) < 0.5).double() for n in sizes]

    def forward(x, shared_):
        logits, feats = model(x, shared=shared_)
        return logits.double(), feats

    logits, feats = [], []
    for x in inputs:
        lg, ft = forward(x, shared)
        logits.append(lg)
        feats.append(ft)
    risks = torch.stack([bce(lg, y) for lg, y in zip(logits, labels, strict=True)], 1)
    return StepBatch(logits, labels, feats, risks, inputs=inputs, shared_inputs=shared,
                     forward=forward)


def _fgsm(eps=0.1) -> FGSM:
    return FGSM(make_config(None, method="adversarial", fgsm_epsilon=eps),
                MethodContext(seeds=tuple(SEEDS)))


@pytest.mark.parametrize("shared", [True, False])
def test_fgsm_perturbation_is_each_members_own_sign_gradient(shared):
    eps = 0.15
    batch = _image_batch(_stacked(), shared=shared)
    x_adv = _fgsm(eps).adversarial_inputs(batch)
    expected_penalty = []
    for k, seed in enumerate(SEEDS):
        member = build_member("mlp", SHAPE, 8, seed).double()
        losses = []
        for env, (x, y) in enumerate(zip(batch.inputs, batch.labels, strict=True)):
            xk = (x if shared else x[k]).clone().requires_grad_()
            yk = y if shared else y[k]
            loss = F.binary_cross_entropy_with_logits(member(xk)[0], yk)
            (grad,) = torch.autograd.grad(loss, xk)
            expected = (xk.detach() + eps * grad.sign()).clamp(0, 1)
            torch.testing.assert_close(x_adv[env][k], expected, rtol=0, atol=1e-12)
            losses.append(F.binary_cross_entropy_with_logits(member(expected)[0], yk))
        expected_penalty.append(torch.stack(losses).mean())
    penalty = _fgsm(eps).penalty(batch)
    torch.testing.assert_close(penalty, torch.stack(expected_penalty).detach(), rtol=1e-10,
                               atol=1e-12)


def test_fgsm_inputs_stay_in_the_pixel_range_and_are_detached():
    batch = _image_batch(_stacked())
    for x in _fgsm(0.5).adversarial_inputs(batch):
        assert not x.requires_grad
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert bool(((x == 0) | (x == 1)).any())  # eps 0.5 pushes pixels onto the bounds


def test_fgsm_penalty_grows_with_epsilon_from_the_clean_loss():
    batch = _image_batch(_stacked(), sizes=(30, 30))
    clean = batch.risks.mean(1)
    previous = clean
    for eps in (0.01, 0.05, 0.2):
        penalty = _fgsm(eps).penalty(batch)
        assert bool((penalty > previous).all()), (eps, penalty, previous)
        previous = penalty
    torch.testing.assert_close(_fgsm(1e-9).penalty(batch), clean, rtol=1e-6, atol=1e-8)


def test_fgsm_members_do_not_mix():
    model = _stacked()
    batch = _image_batch(model)
    method = _fgsm()
    before = method.adversarial_inputs(batch)
    penalty = method.penalty(batch)
    with torch.no_grad():
        for w in model.weights:
            w[0].add_(0.3)  # alter member 0 only
    altered = _image_batch(model)
    after = method.adversarial_inputs(altered)
    for x0, x1 in zip(before, after, strict=True):
        assert not torch.equal(x0[0], x1[0])
        torch.testing.assert_close(x0[1:], x1[1:], rtol=0, atol=0)
    torch.testing.assert_close(method.penalty(altered)[1:], penalty[1:], rtol=0, atol=0)


def test_fgsm_penalty_of_a_member_moves_only_its_own_weights():
    model = _stacked()
    batch = _image_batch(model)
    penalty = _fgsm().penalty(batch)
    grads = torch.autograd.grad(penalty[1], list(model.member_parameters()))
    for g in grads:  # member 1's penalty moves member 1's weights only
        assert float(g[0].abs().max()) == 0.0 and float(g[2].abs().max()) == 0.0
        assert float(g[1].abs().max()) > 0.0


# ---- DANN -----------------------------------------------------------------------------------

def _dann(hidden=5, n_envs=2, feature_dim=4, seeds=SEEDS) -> DANN:
    cfg = make_config(None, method="dann", dann_hidden=hidden)
    return DANN(cfg, MethodContext(seeds=tuple(seeds), n_envs=n_envs, feature_dim=feature_dim,
                                   device=torch.device("cpu")))


def _features(k=3, sizes=(20, 30), dim=4, seed=0, shift=1.0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(k, n, dim, generator=gen) + shift * e for e, n in enumerate(sizes)]


@pytest.mark.parametrize("hidden", [0, 5])
def test_dann_parameters_have_the_member_axis_and_each_members_seeded_init(hidden):
    method = _dann(hidden)
    params = method.parameters()
    assert len(params) == (4 if hidden else 2)
    assert all(isinstance(p, torch.nn.Parameter) and p.shape[0] == 3 for p in params)
    assert method.weights[-1].shape[1] == 2  # n_envs logits
    dims = [4, *([hidden] if hidden else []), 2]
    for k, seed in enumerate(SEEDS):
        single = DANN.build_adversary(seed, dims)
        for i, layer in enumerate(single):
            torch.testing.assert_close(method.weights[i][k], layer.weight, rtol=0, atol=0)
            torch.testing.assert_close(method.biases[i][k], layer.bias, rtol=0, atol=0)
    assert not torch.equal(method.weights[0][0], method.weights[0][1])
    again = _dann(hidden)
    for p, q in zip(params, again.parameters(), strict=True):
        assert torch.equal(p, q)


def test_dann_adversary_matches_a_per_member_module():
    method = _dann(hidden=5)
    feats = _features()
    loss = method.adversary_loss(feats, reverse=False)
    for k, seed in enumerate(SEEDS):
        single = DANN.build_adversary(seed, [4, 5, 2])
        out = torch.cat([single[1](F.relu(single[0](f[k]))) for f in feats])
        target = torch.cat([torch.full((f.shape[1],), e) for e, f in enumerate(feats)])
        torch.testing.assert_close(loss[k], F.cross_entropy(out, target))


def test_dann_gradient_reversal_negates_the_featurizers_gradient_only():
    method = _dann()
    feats = [f.requires_grad_() for f in _features()]
    reversed_loss = method.penalty(StepBatch([], [], feats, torch.zeros(3, 2)))
    g_rev = torch.autograd.grad(reversed_loss.sum(), [*feats, *method.parameters()])
    plain_loss = method.adversary_loss(feats, reverse=False)
    g_plain = torch.autograd.grad(plain_loss.sum(), [*feats, *method.parameters()])
    torch.testing.assert_close(reversed_loss, plain_loss, rtol=0, atol=0)
    for a, b in zip(g_rev[:2], g_plain[:2], strict=True):  # features: reversed
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, -b, rtol=0, atol=0)
    for a, b in zip(g_rev[2:], g_plain[2:], strict=True):  # the adversary: descends the CE
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_dann_adversary_learns_on_fixed_features():
    method = _dann(hidden=16)
    feats = _features(sizes=(64, 64), shift=1.5)
    batch = StepBatch([], [], feats, torch.zeros(3, 2))
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    start = method.penalty(batch).detach()
    for _ in range(100):
        optimizer.zero_grad()
        method.penalty(batch).sum().backward()
        optimizer.step()
    end = method.penalty(batch).detach()
    assert bool((end < 0.7 * start).all()), (start, end)
    assert bool((end < 0.4).all()), end  # well below chance (ln 2) on separable environments


def test_dann_members_do_not_mix():
    method = _dann()
    feats = _features()
    altered = [f.clone() for f in feats]
    altered[0][0] += 3.0
    torch.testing.assert_close(method.penalty(StepBatch([], [], feats, torch.zeros(3, 2)))[1:],
                               method.penalty(StepBatch([], [], altered, torch.zeros(3, 2)))[1:],
                               rtol=0, atol=0)
    loss = method.penalty(StepBatch([], [], feats, torch.zeros(3, 2)))
    for g in torch.autograd.grad(loss[1], method.parameters()):
        assert float(g[0].abs().max()) == 0.0 and float(g[2].abs().max()) == 0.0


def test_dann_rejects_features_of_the_wrong_shape():
    with pytest.raises(ValueError, match="dann"):
        _dann().penalty(StepBatch([], [], _features(dim=3), torch.zeros(3, 2)))


@pytest.mark.parametrize(("name", "key", "bad"), [("adversarial", "fgsm_epsilon", 0.0),
                                                  ("adversarial", "fgsm_epsilon", 1.5),
                                                  ("dann", "dann_hidden", -1)])
def test_hyperparameter_ranges_name_the_key(name, key, bad):
    assert key in METHODS[name].hparams
    with pytest.raises(ConfigError, match=key):
        make_config(None, method=name, **{key: bad})


# ---- end to end -----------------------------------------------------------------------------

def _run(envset, **overrides):
    cfg = make_config(None, **{"steps": 5, "penalty_weight": 1.0, "anneal_iters": 2,
                               "hidden_dim": 32, **overrides})
    result = train(cfg, [0, 1], envset=envset)
    assert [m["status"] for m in result.members] == ["ok", "ok"]
    for member in result.members:
        assert all(math.isfinite(v) for v in member["metrics"].values()), member
    assert all(math.isfinite(v) for v in result.curves["penalty"][0] + result.curves["penalty"][1])
    return result


@pytest.mark.parametrize("overrides", [{"method": "adversarial"},
                                       {"method": "adversarial", "batch_size": 16},
                                       {"method": "adversarial", "model": "lenet"},
                                       {"method": "dann"},
                                       {"method": "dann", "dann_hidden": 0, "batch_size": 16}],
                         ids=["fgsm", "fgsm-minibatch", "fgsm-lenet", "dann", "dann-linear-mb"])
def test_end_to_end_finite_and_deterministic(tiny_envs, overrides):
    first = _run(tiny_envs, **overrides)
    second = _run(tiny_envs, **overrides)
    assert first.members == second.members
    assert first.curves == second.curves
    assert all(v > 0 for v in first.curves["penalty"][0])
