"""Shared helpers of the method tests: small float64 batches and a short end-to-end run."""

from __future__ import annotations

import math

import torch

from pipeline.config import make_config
from pipeline.methods import StepBatch, bce
from pipeline.training import train


def make_batch(k: int = 3, sizes=(40, 50), n_features: int = 4, dtype=torch.float64,
               seed: int = 0, per_member_labels: bool = False, step: int = 0) -> StepBatch:
    """Random logits, 0/1 labels and non-negative features per environment, members first."""
    gen = torch.Generator().manual_seed(seed)
    logits = [torch.randn(k, n, generator=gen, dtype=dtype) * 2 for n in sizes]
    shape = (lambda n: (k, n)) if per_member_labels else (lambda n: (n,))
    labels = [(torch.rand(*shape(n), generator=gen) < 0.5).to(dtype) for n in sizes]
    features = [torch.rand(k, n, n_features, generator=gen, dtype=dtype) * (1 + e)
                for e, n in enumerate(sizes)]
    risks = torch.stack([bce(lg, y) for lg, y in zip(logits, labels, strict=True)], 1)
    return StepBatch(logits, labels, features, risks, step=step)


def train_end_to_end(envset, name: str, **overrides):
    """Five steps of ``name`` on real data, two seeds: every member ends with finite metrics."""
    cfg = make_config(None, **{"method": name, "steps": 5, "penalty_weight": 10.0,
                               "anneal_iters": 2, "hidden_dim": 32,
                               "dataset": "colored_fashion_mnist", **overrides})
    result = train(cfg, [0, 1], envset=envset)
    assert [m["status"] for m in result.members] == ["ok", "ok"]
    for member in result.members:
        assert member["metrics"], member
        for key, value in member["metrics"].items():
            assert math.isfinite(value), (key, value)
    for key, stats in result.metrics.items():
        assert math.isfinite(stats["mean"]), key
    return result
