"""CORAL: the penalty against numpy means and (N - 1) covariances, as DomainBed computes them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import make_config
from pipeline.methods import CORAL
from tests.methods._common import make_batch, train_end_to_end


def _numpy_coral(features: list[np.ndarray]) -> float:
    """Mean over pairs i < j of mean((mu_i - mu_j)^2) + mean((C_i - C_j)^2), np.cov ddof = 1."""
    terms = []
    for i in range(len(features)):
        for j in range(i + 1, len(features)):
            a, b = features[i], features[j]
            mean_diff = np.mean((a.mean(0) - b.mean(0)) ** 2)
            cov_diff = np.mean((np.cov(a, rowvar=False) - np.cov(b, rowvar=False)) ** 2)
            terms.append(mean_diff + cov_diff)
    return float(np.mean(terms))


@pytest.mark.parametrize("sizes", [(40, 50), (20, 30, 25)])
def test_penalty_equals_numpy_with_unbiased_covariances(sizes):
    batch = make_batch(sizes=sizes, n_features=5)
    penalty = CORAL(make_config(None, method="coral")).penalty(batch)
    for k in range(3):
        expected = _numpy_coral([f[k].numpy() for f in batch.features])
        assert penalty[k].item() == pytest.approx(expected, rel=1e-12)


def test_one_environment_has_no_penalty_and_members_do_not_mix():
    one = make_batch(sizes=(30,))
    one.risks = one.risks[:, :1]
    assert bool((CORAL(make_config(None, method="coral")).penalty(one) == 0).all())
    batch, altered = make_batch(), make_batch()
    altered.features[1][0] *= 3.0
    method = CORAL(make_config(None, method="coral"))
    a, b = method.penalty(batch), method.penalty(altered)
    torch.testing.assert_close(a[1:], b[1:], rtol=0, atol=0)
    assert a[0] != b[0]


def test_bf16_features_are_computed_in_float32():
    batch = make_batch(dtype=torch.float32)
    batch.features = [f.bfloat16() for f in batch.features]
    penalty = CORAL(make_config(None, method="coral")).penalty(batch)
    assert penalty.dtype == torch.float32 and bool(torch.isfinite(penalty).all())


def test_trains_end_to_end(tiny_envs):
    train_end_to_end(tiny_envs, "coral")
