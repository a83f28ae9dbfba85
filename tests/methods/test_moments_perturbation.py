"""Prediction moments and the perturbation penalty against brute force, and end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.config import make_config
from pipeline.methods import FGSM, MethodContext, Perturbation, PredictionMoments
from pipeline.seeds import derive_seed
from tests.methods._common import make_batch, train_end_to_end
from tests.methods.test_adversarial import SEEDS, _image_batch, _stacked


def _moments_brute(logits: list[np.ndarray], of: str) -> float:
    """Mean over pairs i < j of (m_i - m_j)^2 + (v_i - v_j)^2, example by example."""
    stats = []
    for lg in logits:
        vals = [1 / (1 + math.exp(-v)) if of == "probability" else v for v in lg]
        mean = sum(vals) / len(vals)
        var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
        stats.append((mean, var))
    terms = [(a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
             for i, a in enumerate(stats) for b in stats[i + 1:]]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("of", ["probability", "logit"])
@pytest.mark.parametrize("sizes", [(40, 50), (20, 30, 25)])
def test_moments_penalty_equals_brute_force(of, sizes):
    batch = make_batch(sizes=sizes)
    penalty = PredictionMoments(make_config(None, method="moments", moments_of=of)).penalty(batch)
    for k in range(3):
        expected = _moments_brute([lg[k].tolist() for lg in batch.logits], of)
        assert penalty[k].item() == pytest.approx(expected, rel=1e-12)


def test_moments_are_zero_for_equal_environments_and_members_do_not_mix():
    batch = make_batch(sizes=(30, 30))
    batch.logits[1] = batch.logits[0].flip(-1)  # the same values in another order
    method = PredictionMoments(make_config(None, method="moments"))
    assert bool((method.penalty(batch).abs() < 1e-15).all())
    batch, altered = make_batch(), make_batch()
    altered.logits[1][0] += 1.0
    a, b = method.penalty(batch), method.penalty(altered)
    torch.testing.assert_close(a[1:], b[1:], rtol=0, atol=0)
    assert a[0] != b[0]


def _perturbation(kind: str, sigma=0.2, eps=0.15) -> Perturbation:
    cfg = make_config(None, method="perturbation", perturb_kind=kind, perturb_sigma=sigma,
                      fgsm_epsilon=eps)
    return Perturbation(cfg, MethodContext(seeds=tuple(SEEDS)))


@pytest.mark.parametrize("shared", [True, False])
def test_gaussian_perturbation_is_each_members_seeded_noise(shared):
    model = _stacked()
    batch = _image_batch(model, shared=shared)
    penalty = _perturbation("gaussian").penalty(batch)
    sizes = [lg.shape[-1] for lg in batch.logits]
    for k, seed in enumerate(SEEDS):
        x = torch.cat([xe if shared else xe[k] for xe in batch.inputs])
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(
            derive_seed(seed, "perturbation")), dtype=torch.float32).double()
        moved = model(x + 0.2 * z, shared=True)[0][k].double()
        clean = torch.cat([lg[k] for lg in batch.logits])
        per_env = [d.abs().mean().item() for d in (clean - moved).split(sizes)]
        assert penalty[k].item() == pytest.approx(sum(per_env) / len(per_env), rel=1e-10)
    # a second step of the same method draws new noise
    method = _perturbation("gaussian")
    assert not torch.equal(method.penalty(batch), method.penalty(batch))


def test_fgsm_perturbation_uses_the_adversarial_methods_inputs():
    model = _stacked()
    batch = _image_batch(model, shared=True)
    penalty = _perturbation("fgsm", eps=0.15).penalty(batch)
    fgsm = FGSM(make_config(None, method="adversarial", fgsm_epsilon=0.15),
                MethodContext(seeds=tuple(SEEDS)))
    x_adv = torch.cat(fgsm.adversarial_inputs(batch), dim=1)
    moved = model(x_adv, shared=False)[0].double()
    clean = torch.cat(batch.logits, dim=1)
    sizes = [lg.shape[-1] for lg in batch.logits]
    expected = torch.stack([d.abs().mean(-1) for d in (clean - moved).split(sizes, dim=1)],
                           1).mean(1)
    torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=0)
    assert bool((penalty > 0).all())


@pytest.mark.parametrize("name,overrides", [("moments", {}),
                                            ("perturbation", {"perturb_kind": "gaussian"}),
                                            ("perturbation", {"perturb_kind": "fgsm"})])
def test_trains_end_to_end(tiny_envs, name, overrides):
    train_end_to_end(tiny_envs, name, **overrides)
