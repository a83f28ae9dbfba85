"""Fishr (Rame et al. 2022): match the environments' variances of per-sample gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pipeline.hparams import HParam
from pipeline.methods.base import Method, MethodContext, StepBatch

if TYPE_CHECKING:
    from pipeline.config import TrainConfig


def classifier_sample_grads(logits: torch.Tensor, labels: torch.Tensor,
                            features: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients of BCE w.r.t. the last linear layer, closed form: (K, N, F + 1).

    For ``logit = w . h + b`` and ``l = BCE(logit, y)``, ``dl/dw = (sigmoid(logit) - y) h`` and
    ``dl/db = sigmoid(logit) - y``: the per-sample gradient of the per-sample loss, i.e. what
    the Fishr CMNIST script gets from BackPACK's ``grad_batch`` of the mean loss times the batch
    size. The weight coordinates come first, the bias last.
    """
    h = features.to(torch.promote_types(features.dtype, logits.dtype))
    r = (torch.sigmoid(logits) - labels.expand_as(logits)).unsqueeze(-1)  # (K, N, 1)
    return torch.cat([r * h, r], dim=-1)


def sample_grad_variance(grads: torch.Tensor) -> torch.Tensor:
    """Centred variance over samples (axis 1, ddof = 0): (K, N, D) -> (K, D)."""
    return (grads - grads.mean(1, keepdim=True)).pow(2).mean(1)


class Fishr(Method):
    """Fishr: the spread across environments of the variance of per-sample classifier gradients.

    Follows the Fishr CMNIST script ``alexrame/fishr@coloredmnist/train_coloredmnist.py``
    (``compute_grads_variance``: BackPACK per-sample gradients of the classifier times the batch
    size, centred, squared, averaged over samples; ``l2_between_grads_variance``: the summed
    squared difference to the mean over environments, summed over the training environments),
    with the gradients in closed form for the one-logit linear classifier (the layer after
    ``StepBatch.features``: ``lin3`` of the MLP, ``fc2`` of LeNet). ``fishr_reduction = mean``
    is DomainBed's version (``facebookresearch/DomainBed@domainbed/algorithms.py``
    ``Fishr._compute_distance_grads_var`` with ``lib/misc.py l2_between_dicts``): the mean over
    coordinates, then the mean over environments. ``fishr_ema`` > 0 is DomainBed's
    ``MovingAverage(ema, oneminusema_correction=True)`` per environment (``ema * previous + (1 -
    ema) * variance``, the previous state detached and zero at the first call, returned divided
    by ``1 - ema``), kept per member; it advances at every call (the loop calls ``penalty`` once
    per step). The penalty is weighted by the run's schedule (IRM's 1.0 before the anneal by
    default, DomainBed uses 0: ``weight_before_anneal``).
    """

    name = "fishr"
    description = "Fishr: variance of per-sample classifier gradients matched across environments"
    has_penalty = True
    hparams = {
        "fishr_ema": HParam(0.0, "moving average of the variances (0 = none, the CMNIST code)",
                            low=0.0, high=1.0, high_open=True,
                            search={"uniform": [0.0, 0.99]}),  # DomainBed: U(0.90, 0.99)
        "fishr_reduction": HParam("sum", "sum the squared distances (the CMNIST script) or "
                                  "average them (DomainBed)", choices=("sum", "mean")),
    }

    def __init__(self, cfg: TrainConfig, ctx: MethodContext | None = None):
        super().__init__(cfg, ctx)
        self.ema_state: torch.Tensor | None = None  # (K, E, F + 1), detached

    def variances(self, batch: StepBatch) -> torch.Tensor:
        """Each environment's gradient variance after the moving average: (K, E, F + 1)."""
        var = torch.stack([sample_grad_variance(classifier_sample_grads(lg, y, h)) for lg, y, h
                           in zip(batch.logits, batch.labels, batch.features, strict=True)], 1)
        ema = self.cfg.fishr_ema
        if ema == 0.0:
            return var
        previous = self.ema_state
        if previous is None or previous.shape != var.shape:
            previous = torch.zeros_like(var)
        averaged = ema * previous.to(var) + (1 - ema) * var
        self.ema_state = averaged.detach()
        return averaged / (1 - ema)

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        var = self.variances(batch)
        sq = (var - var.mean(1, keepdim=True)).pow(2)  # (K, E, F + 1)
        if self.cfg.fishr_reduction == "mean":  # DomainBed
            return sq.mean(2).mean(1)
        return sq.sum(2).sum(1)  # the CMNIST script
