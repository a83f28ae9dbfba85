"""BIRM's penalty against autograd and a brute-force loop written like its reference code."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.methods import BIRM, METHODS, MethodContext, StepBatch, bce
from pipeline.methods.birm import birm_scale_grad
from pipeline.training import derive_seed, train

SEEDS = (0, 1, 2)


def _batch(k=3, sizes=(40, 50), seed=0, per_member_labels=False) -> StepBatch:
    gen = torch.Generator().manual_seed(seed)
    logits = [torch.randn(k, n, generator=gen, dtype=torch.float64) * 2 for n in sizes]
    shape = (lambda n: (k, n)) if per_member_labels else (lambda n: (n,))
    labels = [(torch.rand(*shape(n), generator=gen) < 0.5).double() for n in sizes]
    risks = torch.stack([bce(lg, y) for lg, y in zip(logits, labels, strict=True)], 1)
    return StepBatch(logits, labels, [], risks)


def _birm(seeds=SEEDS, samples=4, coef=1200.0) -> BIRM:
    cfg = make_config(None, method="birm", birm_samples=samples, birm_prior_sd_coef=coef)
    return BIRM(cfg, MethodContext(seeds=tuple(seeds)))


def test_closed_form_gradient_equals_autograd():
    batch = _batch()
    logits, labels = batch.logits[0], batch.labels[0]
    w = 1 + 0.3 * torch.randn(3, 5, generator=torch.Generator().manual_seed(1),
                              dtype=torch.float64)
    closed = birm_scale_grad(logits, labels, w, weight=1.7)
    for k in range(3):
        for s in range(5):
            ws = w[k, s].clone().requires_grad_()
            loss = 1.7 * F.binary_cross_entropy_with_logits(ws * logits[k], labels)
            (grad,) = torch.autograd.grad(loss, ws)
            assert closed[k, s].item() == pytest.approx(grad.item(), rel=1e-12, abs=1e-15)


def _reference_penalty(batch: StepBatch, seeds, samples: int, coef: float) -> torch.Tensor:
    """``bayes_fullbatch`` per member: pooled envs, w = ebd(train_g), autograd on the scales."""
    n_envs = len(batch.logits)
    out = []
    for k, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(derive_seed(seed, "birm"))
        noise = torch.randn(samples, n_envs, generator=gen)  # the method's draw order
        train_logits = torch.cat([lg[k] for lg in batch.logits])
        train_y = torch.cat([y.expand_as(lg)[k] for lg, y in
                             zip(batch.logits, batch.labels, strict=True)])
        train_g = torch.cat([torch.full((lg.shape[-1],), e) for e, lg in
                             enumerate(batch.logits)])
        data_num = len(train_logits)
        penalty = 0.0
        for s in range(samples):
            ebd = (1.0 + coef / data_num * noise[s].double()).requires_grad_()
            train_logits_w = ebd[train_g] * train_logits
            train_nll = F.binary_cross_entropy_with_logits(train_logits_w, train_y)
            (grad,) = torch.autograd.grad(train_nll * n_envs, ebd, create_graph=True)
            penalty = penalty + 1 / samples * torch.mean(grad ** 2)
        out.append(penalty)
    return torch.stack(out)


@pytest.mark.parametrize("per_member_labels", [False, True])
@pytest.mark.parametrize("sizes", [(40, 50), (30, 30, 30)])
def test_penalty_equals_the_reference_loop(sizes, per_member_labels):
    batch = _batch(sizes=sizes, per_member_labels=per_member_labels)
    method = _birm(samples=4, coef=300.0)
    for _ in range(2):  # the generators advance: the second step uses the next draws
        penalty = method.penalty(batch)
        assert penalty.shape == (3,) and bool((penalty > 0).all())
    fresh = _birm(samples=4, coef=300.0)
    torch.testing.assert_close(fresh.penalty(batch),
                               _reference_penalty(batch, SEEDS, 4, 300.0).detach(),
                               rtol=1e-10, atol=1e-14)


def test_penalty_is_differentiable_like_double_backprop():
    batch = _batch()
    logits = [lg.clone().requires_grad_() for lg in batch.logits]
    batch_grad = StepBatch(logits, batch.labels, [], batch.risks)
    (grad,) = torch.autograd.grad(_birm().penalty(batch_grad).sum(), [logits[0]])
    ref_logits = [lg.clone().requires_grad_() for lg in batch.logits]
    ref = _reference_penalty(StepBatch(ref_logits, batch.labels, [], batch.risks), SEEDS, 4,
                             1200.0)
    (ref_grad,) = torch.autograd.grad(ref.sum(), [ref_logits[0]])
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-14)


def test_sd_is_prior_sd_coef_over_the_example_count():
    method = _birm(samples=1000, coef=45.0)
    noise = method.draw(2)
    sd = 45.0 / 90  # the penalty's sd for a batch of 40 + 50 examples
    w = 1 + sd * noise
    assert w.std().item() == pytest.approx(sd, rel=0.05)
    assert w.mean().item() == pytest.approx(1.0, abs=0.05)


def test_same_seeds_same_penalty_different_seeds_differ_and_members_are_independent():
    batch = _batch()
    a = _birm(seeds=SEEDS).penalty(batch)
    b = _birm(seeds=SEEDS).penalty(batch)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = _birm(seeds=(5, 6, 7)).penalty(batch)
    assert bool((a != c).all())
    # member 1's draws depend on its own seed only
    d = _birm(seeds=(9, 1, 8)).penalty(batch)
    assert d[1].item() == a[1].item()


def test_members_do_not_mix():
    batch = _batch()
    altered = _batch()
    altered.logits[0][0] += 5.0
    torch.testing.assert_close(_birm().penalty(batch)[1:], _birm().penalty(altered)[1:],
                               rtol=0, atol=0)


def test_large_sd_changes_the_penalty_and_tiny_sd_gives_irmv1():
    from pipeline.methods import irm_grad_closed_form
    batch = _batch(sizes=(50, 50))
    irm = torch.stack([irm_grad_closed_form(lg, y).pow(2) for lg, y in
                       zip(batch.logits, batch.labels, strict=True)], 1).mean(1)
    torch.testing.assert_close(_birm(coef=1e-9).penalty(batch), irm, rtol=1e-6, atol=1e-12)
    assert not torch.allclose(_birm(coef=50.0).penalty(batch), irm, rtol=1e-3)


def test_rejects_a_batch_with_another_member_count():
    with pytest.raises(ValueError, match="birm"):
        _birm(seeds=(0,)).penalty(_batch())


@pytest.mark.parametrize(("key", "bad"), [("birm_samples", 0), ("birm_prior_sd_coef", 0.0),
                                          ("birm_prior_sd_coef", -1.0)])
def test_hyperparameter_ranges_name_the_key(key, bad):
    assert key in METHODS["birm"].hparams
    with pytest.raises(ConfigError, match=key):
        make_config(None, method="birm", **{key: bad})


@pytest.mark.parametrize("overrides", [{}, {"batch_size": 16, "weight_before_anneal": 0.0}],
                         ids=["full-batch", "minibatch"])
def test_end_to_end_finite_and_deterministic(tiny_envs, overrides):
    def run():
        cfg = make_config(None, **{"method": "birm", "steps": 5, "penalty_weight": 1.0,
                                   "anneal_iters": 2, "hidden_dim": 32, **overrides})
        result = train(cfg, [0, 1], envset=tiny_envs)
        assert [m["status"] for m in result.members] == ["ok", "ok"]
        for member in result.members:
            assert all(math.isfinite(v) for v in member["metrics"].values()), member
        return result

    first, second = run(), run()
    assert first.members == second.members
    assert first.curves == second.curves
