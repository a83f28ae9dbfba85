"""RVP, InvRat and IRM-Game (IRMBed's three) against brute-force computations, and end to end."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.config import make_config
from pipeline.methods import RVP, InvRat, IRMGame, MethodContext
from tests.methods._common import make_batch, train_end_to_end

K, F = 3, 4


def _ctx(n_envs=2):
    return MethodContext(seeds=tuple(range(K)), n_envs=n_envs, feature_dim=F)


def _double(method, *params):
    for p in params:
        p.data = p.data.double()
    return method


def _bce(logit: float, y: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


# -- RVP

@pytest.mark.parametrize("sizes", [(40, 50), (20, 30, 25)])
def test_rvp_is_the_population_std_of_the_risks(sizes):
    batch = make_batch(sizes=sizes)
    penalty = RVP(make_config(None, method="rvp")).penalty(batch)
    for k in range(K):
        risks = [batch.risks[k, e].item() for e in range(len(sizes))]
        mean = sum(risks) / len(risks)
        expected = math.sqrt(sum((r - mean) ** 2 for r in risks) / len(risks))
        assert penalty[k].item() == pytest.approx(expected, rel=1e-12)


def test_rvp_gradient_is_finite_at_zero_spread():
    risks = torch.tensor([[0.5, 0.5], [0.4, 0.6]], dtype=torch.float64, requires_grad=True)
    batch = make_batch(k=2)
    batch.risks = risks
    penalty = RVP(make_config(None, method="rvp")).penalty(batch)
    penalty.sum().backward()
    assert penalty[0].item() == 0.0 and bool(torch.isfinite(risks.grad).all())
    assert risks.grad[0].abs().sum().item() == 0.0
    # d std / d r for two environments is (r_e - mean) / (2 std): -1/2 and +1/2
    torch.testing.assert_close(risks.grad[1], torch.tensor([-0.5, 0.5], dtype=torch.float64))


def test_rvp_of_a_diverged_member_is_not_a_number():
    batch = make_batch(k=2)
    batch.risks = torch.tensor([[float("nan"), 0.5], [0.4, 0.6]], dtype=torch.float64)
    penalty = RVP(make_config(None, method="rvp")).penalty(batch)
    assert math.isnan(penalty[0].item()) and penalty[1].item() == pytest.approx(0.1)


# -- InvRat

def _invrat(sizes=(40, 50), steps=1):
    cfg = make_config(None, method="invrat", invrat_inner_steps=steps, lr=0.01)
    method = InvRat(cfg, _ctx(len(sizes)))
    return _double(method, method.weight, method.bias)


def _aware_loss_brute(batch, weight, bias, k) -> float:
    """Pooled BCE, each example scored by its own environment's head, example by example."""
    total, n = 0.0, 0
    for e, (feats, labels) in enumerate(zip(batch.features, batch.labels, strict=True)):
        for i in range(feats.shape[1]):
            logit = sum(weight[k, e, j].item() * feats[k, i, j].item() for j in range(F)) \
                + bias[k, e].item()
            total += _bce(logit, labels[i].item())
            n += 1
    return total / n


@pytest.mark.parametrize("sizes", [(40, 50), (20, 30, 25)])
def test_invrat_penalty_is_relu_of_agnostic_minus_aware_after_the_heads_step(sizes):
    batch = make_batch(sizes=sizes, n_features=F)
    method = _invrat(sizes)
    before = method.weight.detach().clone()
    penalty = method.penalty(batch)
    assert not torch.equal(before, method.weight.detach())  # the heads stepped first
    for k in range(K):
        agnostic = sum(_bce(lg[k, i].item(), y[i].item()) for lg, y in
                       zip(batch.logits, batch.labels, strict=True)
                       for i in range(lg.shape[1])) / sum(sizes)
        aware = _aware_loss_brute(batch, method.weight.detach(), method.bias.detach(), k)
        assert penalty[k].item() == pytest.approx(max(0.0, agnostic - aware), rel=1e-10,
                                                  abs=1e-12)


def test_invrat_heads_descend_their_loss_and_the_penalty_reaches_only_the_features():
    batch = make_batch(n_features=F)
    for f, y in zip(batch.features, batch.labels, strict=True):
        f[:, :, 0] = 4 * y - 2  # a feature that gives the label away to a head that learns
    batch.features = [f.requires_grad_(True) for f in batch.features]
    # an uninformed agnostic head: penalty > 0
    batch.logits = [(lg * 0.01).requires_grad_(True) for lg in batch.logits]
    method = _invrat(steps=20)
    losses = []
    for _ in range(3):
        method.fit_aware_heads(batch)
        losses.append(_aware_loss_brute(batch, method.weight.detach(), method.bias.detach(), 0))
    assert losses[0] > losses[1] > losses[2]
    penalty = method.penalty(batch)
    assert bool((penalty > 0).all())
    penalty.sum().backward()
    assert method.weight.grad is None and method.bias.grad is None
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in batch.features)
    assert all(lg.grad is not None and lg.grad.abs().sum() > 0 for lg in batch.logits)


# -- IRM-Game

def _game(n_envs=2):
    method = IRMGame(make_config(None, method="irmgame", lr=0.05), _ctx(n_envs))
    return _double(method, *method.weights, *method.biases)


def test_irmgame_predicts_by_the_mean_of_its_heads_logits():
    method = _game(3)
    feats = torch.randn(K, 7, F, dtype=torch.float64)
    pred = method.predict(torch.zeros(K, 7, dtype=torch.float64), feats)
    for k in range(K):
        for i in range(7):
            logits = [sum(w[k, j].item() * feats[k, i, j].item() for j in range(F)) + b[k].item()
                      for w, b in zip(method.weights, method.biases, strict=True)]
            assert pred[k, i].item() == pytest.approx(sum(logits) / 3, rel=1e-12)


def _game_reference(method, batch, rounds: int, in_turn: bool):
    """Each head its own torch Adam; head e steps on env e's BCE of the ensemble, the others
    fixed: in turn (head 1 sees head 0's new weights) or all from the same heads."""
    heads = [(w.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True))
             for w, b in zip(method.weights, method.biases, strict=True)]
    opts = [torch.optim.Adam(list(h), lr=0.05) for h in heads]

    def loss(e, current):
        feats, labels = batch.features[e], batch.labels[e]
        ens = sum(torch.einsum("knf,kf->kn", feats, w if j == e else w.detach())
                  + (b if j == e else b.detach())[:, None]
                  for j, (w, b) in enumerate(current)) / len(current)
        return torch.nn.functional.binary_cross_entropy_with_logits(
            ens, labels.expand_as(ens), reduction="none").mean(-1).sum()

    for _ in range(rounds):
        frozen = [(w.detach().clone(), b.detach().clone()) for w, b in heads]
        for e in range(len(heads)):
            opts[e].zero_grad()
            current = heads if in_turn else [
                h if j == e else frozen[j] for j, h in enumerate(heads)]
            loss(e, current).backward()
            opts[e].step()
    return [(w.detach(), b.detach()) for w, b in heads]


def test_irmgame_best_responses_move_each_head_on_its_own_environment_in_turn():
    batch = make_batch(n_features=F)
    method = _game()
    in_turn = _game_reference(method, batch, 3, in_turn=True)
    together = _game_reference(method, batch, 3, in_turn=False)
    for _ in range(3):
        method.best_responses(batch)
    got = list(zip(method.weights, method.biases, strict=True))
    for (w, b), (ew, eb) in zip(got, in_turn, strict=True):
        torch.testing.assert_close(w.detach(), ew, rtol=0, atol=1e-12)
        torch.testing.assert_close(b.detach(), eb, rtol=0, atol=1e-12)
    # the order matters: heads updated from the same start end elsewhere
    assert not torch.allclose(got[1][0].detach(), together[1][0], rtol=0, atol=1e-9)


def test_irmgame_trains_on_the_ensembles_prediction(tiny_envs):
    from pipeline.training import Trainer

    cfg = make_config(None, method="irmgame", hidden_dim=16, steps=4, eval_every=2)
    trainer = Trainer(cfg, [0, 1], envset=tiny_envs)
    batch = trainer._forward_train(0)
    for logits, feats, labels, e in zip(batch.logits, batch.features, batch.labels, range(2),
                                        strict=True):
        with torch.no_grad():
            torch.testing.assert_close(logits, trainer.method.heads(feats.float()))
            torch.testing.assert_close(batch.risks[:, e],
                                       torch.nn.functional.binary_cross_entropy_with_logits(
                                           logits, labels.expand_as(logits),
                                           reduction="none").mean(-1))


def test_irmgame_evaluates_with_the_ensemble(tiny_envs):
    from pipeline.training import Trainer

    cfg = make_config(None, method="irmgame", hidden_dim=16, steps=4, eval_every=2)
    trainer = Trainer(cfg, [0], envset=tiny_envs)
    trainer.run()
    x, y = trainer.data.eval_x[0], trainer.data.eval_y[0]
    with torch.no_grad():
        logits, feats = trainer.model(x, shared=trainer.data.shared)
        ensemble = trainer.method.heads(feats.float())
    acc = ((ensemble > 0).float() == y).float().mean().item()
    own = ((logits > 0).float() == y).float().mean().item()
    assert trainer._evaluate([x], [y])[0][0].item() == pytest.approx(acc)
    assert acc != own  # the model's own output layer is not what predicts


@pytest.mark.parametrize("name", ["rvp", "invrat", "irmgame"])
def test_trains_end_to_end(tiny_envs, name):
    train_end_to_end(tiny_envs, name)
