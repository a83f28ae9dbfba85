"""IRMv1 (Arjovsky et al. 2019): the gradient penalty w.r.t. a dummy scale on the logits."""

from __future__ import annotations

import torch

from pipeline.hparams import HParam
from pipeline.methods.base import Method, StepBatch, irm_grad_autograd, irm_grad_closed_form


class IRM(Method):
    """IRMv1: the squared gradient of each environment's risk w.r.t. a scale at 1.0, averaged."""

    name = "irm"
    description = "IRMv1 gradient penalty (closed form, double backprop or two-half estimator)"
    has_penalty = True
    hparams = {"irm_estimator": HParam(
        "closed_form", "closed_form; autograd = double backprop as in main.py; two_half = the "
        "unbiased product of two halves", choices=("closed_form", "autograd", "two_half"))}

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        terms = []
        for logits, labels in zip(batch.logits, batch.labels, strict=True):
            if self.cfg.irm_estimator == "two_half":
                # unbiased: E[g_a g_b] = E[g]^2 for independent halves (IRM issue #7, DomainBed)
                la, lb = labels.expand_as(logits)[..., ::2], labels.expand_as(logits)[..., 1::2]
                terms.append(irm_grad_closed_form(logits[..., ::2], la)
                             * irm_grad_closed_form(logits[..., 1::2], lb))
            elif self.cfg.irm_estimator == "autograd":
                terms.append(irm_grad_autograd(logits, labels).pow(2))
            else:
                terms.append(irm_grad_closed_form(logits, labels).pow(2))
        return torch.stack(terms, 1).mean(1)
