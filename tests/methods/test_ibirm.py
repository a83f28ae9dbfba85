"""IB-IRM: IRM's penalty and the feature-variance regulariser from ib_anneal_iters on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.methods import IBIRM, IRM
from tests.methods._common import make_batch, train_end_to_end


def test_penalty_is_irms():
    for estimator in ("closed_form", "autograd", "two_half"):
        cfg = make_config(None, method="ibirm", ib_weight=3.0, irm_estimator=estimator)
        batch = make_batch()
        torch.testing.assert_close(IBIRM(cfg).penalty(batch), IRM(cfg).penalty(batch),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("sizes", [(40, 50), (20, 30, 25)])
def test_regulariser_is_zero_before_the_anneal_and_the_feature_variance_after(sizes):
    method = IBIRM(make_config(None, method="ibirm", ib_weight=2.5, ib_anneal_iters=10))
    for step in (0, 9):
        assert bool((method.regularizer(make_batch(sizes=sizes, step=step)) == 0).all())
    for step in (10, 11):
        batch = make_batch(sizes=sizes, step=step)
        reg = method.regularizer(batch)
        for k in range(3):
            # features.var(dim=0).mean() per environment (ddof = 1), mean over environments
            expected = np.mean([np.var(f[k].numpy(), axis=0, ddof=1).mean()
                                for f in batch.features])
            assert reg[k].item() == pytest.approx(2.5 * expected, rel=1e-12)


def test_regulariser_is_differentiable_and_members_do_not_mix():
    method = IBIRM(make_config(None, method="ibirm", ib_weight=1.0))
    batch = make_batch()
    batch.features = [f.requires_grad_() for f in batch.features]
    reg = method.regularizer(batch)
    grads = torch.autograd.grad(reg[1], batch.features)
    assert all(bool((g[[0, 2]] == 0).all()) and bool((g[1] != 0).any()) for g in grads)


def test_zero_weight_means_no_term():
    method = IBIRM(make_config(None, method="ibirm"))
    assert bool((method.regularizer(make_batch(step=100)) == 0).all())


@pytest.mark.parametrize("key, bad", [("ib_weight", -1.0), ("ib_anneal_iters", -1)])
def test_hyperparameters_out_of_range_are_refused(key, bad):
    with pytest.raises(ConfigError, match=key):
        make_config(None, method="ibirm", **{key: bad})


def test_trains_end_to_end(tiny_envs):
    train_end_to_end(tiny_envs, "ibirm", ib_weight=10.0, ib_anneal_iters=2)
