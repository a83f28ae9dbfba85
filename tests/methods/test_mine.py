"""MINE: its bounds against brute force, T's ascent, which side each gradient reaches, and end
to end."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.config import make_config
from pipeline.methods import MINE, MethodContext
from pipeline.methods.mine import dv_bound, jsd_bound
from tests.methods._common import make_batch, train_end_to_end

K = 3


def test_bounds_equal_their_formulas_example_by_example():
    gen = torch.Generator().manual_seed(0)
    joint = torch.randn(K, 9, generator=gen, dtype=torch.float64) * 3
    marginal = torch.randn(K, 9, generator=gen, dtype=torch.float64) * 3
    dv, jsd = dv_bound(joint, marginal), jsd_bound(joint, marginal)
    for k in range(K):
        tj, tm = joint[k].tolist(), marginal[k].tolist()
        expected_dv = sum(tj) / 9 - math.log(sum(math.exp(t) for t in tm) / 9)
        sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
        expected_jsd = (sum(math.log(sig(t)) for t in tj) / 9
                        + sum(math.log(1 - sig(t)) for t in tm) / 9 + math.log(4))
        assert dv[k].item() == pytest.approx(expected_dv, rel=1e-12)
        assert jsd[k].item() == pytest.approx(expected_jsd, rel=1e-12)


def _mine(estimator="dv", on="logit", steps=16, n_features=4):
    cfg = make_config(None, method="mine", mine_estimator=estimator, mine_on=on,
                      mine_steps=steps, mine_lr=3e-3)
    return MINE(cfg, MethodContext(seeds=tuple(range(K)), n_envs=2, feature_dim=n_features))


def _dependent_batch(shift=3.0):
    """Logits whose distribution depends on the environment: the MI is large."""
    batch = make_batch(sizes=(200, 200), dtype=torch.float32)
    batch.logits = [batch.logits[0] * 0.3 - shift, batch.logits[1] * 0.3 + shift]
    return batch


def test_statistic_network_pairs_each_logit_with_its_environment_and_a_shuffled_one():
    method = _mine()
    batch = _dependent_batch()
    z, onehot = method.inputs(batch)
    assert z.shape == (K, 400, 1) and onehot.shape == (400, 2)
    assert onehot[:200, 0].eq(1).all() and onehot[200:, 1].eq(1).all()
    joint, marginal = method.pairs(z, onehot)
    torch.testing.assert_close(joint[..., :1], marginal[..., :1], rtol=0, atol=0)
    assert joint[..., 1:].eq(onehot).all()
    # each member's environments shuffled by its own permutation: same counts, other order
    assert marginal[..., 1:].sum(1).eq(torch.tensor([200.0, 200.0])).all()
    assert not torch.equal(marginal[0, :, 1:], marginal[1, :, 1:])


@pytest.mark.parametrize("estimator", ["dv", "jsd"])
def test_statistic_network_ascends_its_bound_and_detects_dependence(estimator):
    method = _mine(estimator)
    z, onehot = method.inputs(_dependent_batch())

    def bound():
        joint, marginal = method.pairs(z, onehot)
        return method.bound(method.statistic(joint), method.statistic(marginal), estimator)

    with torch.no_grad():
        before = bound()
    for _ in range(10):
        method.fit_statistic(z, onehot)
    with torch.no_grad():
        after = bound()
    assert bool((after > before).all())
    assert bool((after > 0.3).all())  # I(z; e) is close to log 2 = 0.69 here


def test_penalty_reaches_the_model_and_not_the_statistic_network():
    for estimator, on in [("dv", "logit"), ("jsd", "logit"), ("kl", "features")]:
        method = _mine(estimator, on, steps=50)
        batch = _dependent_batch()
        batch.logits = [lg.requires_grad_(True) for lg in batch.logits]
        batch.features = [f.float().requires_grad_(True) for f in batch.features]
        penalty = method.penalty(batch)
        penalty.sum().backward()
        assert all(p.grad is None for p in method.own_parameters())
        source = batch.logits if on == "logit" else batch.features
        other = batch.features if on == "logit" else batch.logits
        assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in source), estimator
        assert all(t.grad is None for t in other)
        assert bool(torch.isfinite(penalty).all())


@pytest.mark.parametrize("estimator", ["dv", "jsd"])
def test_penalty_is_the_relu_of_the_bound_with_the_fitted_statistic(estimator, monkeypatch):
    method = _mine(estimator, steps=30)
    batch = _dependent_batch()
    z, onehot = method.inputs(batch)
    for _ in range(3):
        method.fit_statistic(z, onehot)
    monkeypatch.setattr(method, "fit_statistic", lambda *_: None)  # T as it is now
    states = [g.get_state() for g in method.generators]
    penalty = method.penalty(batch)
    for g, state in zip(method.generators, states, strict=True):
        g.set_state(state)
    joint, marginal = method.pairs(z, onehot)
    with torch.no_grad():
        tj, tm = method.statistic(joint), method.statistic(marginal)
    for k in range(K):
        a, b = tj[k].tolist(), tm[k].tolist()
        if estimator == "dv":
            bound = sum(a) / len(a) - math.log(sum(math.exp(t) for t in b) / len(b))
        else:
            bound = (sum(math.log(1 / (1 + math.exp(-t))) for t in a) / len(a)
                     + sum(math.log(1 - 1 / (1 + math.exp(-t))) for t in b) / len(b)
                     + math.log(4))
        assert bound > 0.1  # the dependent batch: a positive estimate, not clipped
        assert penalty[k].item() == pytest.approx(max(bound, 0.0), rel=1e-4)


def test_kl_penalty_is_the_mean_statistic_on_joint_pairs():
    method = _mine("kl", steps=2)
    batch = _dependent_batch()
    state = torch.get_rng_state()
    penalty = method.penalty(batch)
    torch.set_rng_state(state)
    z, onehot = method.inputs(batch)
    joint = torch.cat([z, onehot.expand(K, -1, -1)], -1)
    with torch.no_grad():
        torch.testing.assert_close(penalty, method.statistic(joint).mean(-1))


@pytest.mark.parametrize("estimator", ["dv", "jsd"])
def test_batched_members_statistic_equals_its_seed_alone_up_to_a_constant(tiny_envs,
                                                                           estimator):
    """The contract's member check for T: under DV, T is determined up to an additive
    constant (the bound does not see it), so T's outputs are compared centred."""
    from pipeline.training import Trainer

    cfg = make_config(None, method="mine", hidden_dim=16, steps=6, anneal_iters=3,
                      penalty_weight=10.0, eval_every=4, lr=1e-3, mine_estimator=estimator,
                      mine_steps=4)
    batched, alone = Trainer(cfg, [3, 5, 7], envset=tiny_envs), Trainer(cfg, [5], envset=tiny_envs)
    batched.run()
    alone.run()
    with torch.no_grad():  # the pairs of seed 5's data (T's constant is one on the data)
        z, onehot = alone.method.inputs(alone._forward_train(cfg.steps))
    pairs = torch.cat([z, onehot[None]], -1)
    with torch.no_grad():
        t_batched = batched.method.statistic(pairs.expand(3, -1, -1))[1]
        t_alone = alone.method.statistic(pairs)[0]
    torch.testing.assert_close(t_batched - t_batched.mean(), t_alone - t_alone.mean(),
                               rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("overrides", [{}, {"mine_estimator": "kl", "mine_on": "features"}])
def test_trains_end_to_end(tiny_envs, overrides):
    train_end_to_end(tiny_envs, "mine", mine_steps=2, **overrides)
