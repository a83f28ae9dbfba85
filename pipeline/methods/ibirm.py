"""IB-IRM (Ahuja et al. 2021): IRM plus an information bottleneck on the features' variance."""

from __future__ import annotations

import torch

from pipeline.hparams import HParam
from pipeline.methods.base import StepBatch
from pipeline.methods.irm import IRM


def feature_variance(features: list[torch.Tensor]) -> torch.Tensor:
    """Mean over environments of ``features.var(samples).mean(dims)`` (unbiased, N - 1): (K,)."""
    terms = [f.to(torch.promote_types(f.dtype, torch.float32)).var(dim=1).mean(-1)
             for f in features]
    return torch.stack(terms, 1).mean(1)


class IBIRM(IRM):
    """IB-IRM: IRM's penalty plus ``ib_weight`` times the variance of the features.

    Follows ``ahujak/IB-IRM@AC-CMNIST/experiments/cmnist/irm_baseline/val_main.py`` (``train``:
    ``env['var'] = inter_logits.var(dim=0).mean()`` with ``inter = 4``, the penultimate ReLU
    features = ``StepBatch.features``; ``var_loss`` = the mean over the two training
    environments; ``ib_weight = ib_lambda if step >= ib_step else 0``; the term is added before
    the division by the IRM weight, as the loop adds the regulariser here). The same as DomainBed's
    ``IB_IRM`` (``features.var(dim=0).mean()`` averaged over environments). The IRM penalty is
    this repository's :class:`IRM` (``irm_estimator``); AC-CMNIST's IRM weight is 0 before the
    anneal (set ``weight_before_anneal = 0``), the default here is IRM's 1.0. Differences: none
    in the IB term beyond the feature dtype (cast to at least float32 under bf16 autocast).
    """

    name = "ibirm"
    description = "IB-IRM: IRMv1 penalty plus a feature-variance information bottleneck"
    has_penalty = True
    hparams = {
        **IRM.hparams,
        "ib_weight": HParam(0.0, "weight of the feature variance (information bottleneck)",
                            low=0.0, search={"log_uniform": [1.0e-1, 1.0e5]}),  # DomainBed
        "ib_anneal_iters": HParam(0, "the IB term applies from this step on", low=0,
                                  search={"int": [0, 249]}),
    }

    def regularizer(self, batch: StepBatch) -> torch.Tensor:
        if batch.step < self.cfg.ib_anneal_iters or self.cfg.ib_weight == 0.0:
            return torch.zeros_like(batch.risks[:, 0])
        return self.cfg.ib_weight * feature_variance(batch.features).to(batch.risks)
