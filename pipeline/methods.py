"""Methods: small classes over the one training loop (DomainBed's contract, trimmed).

The loop computes per-environment logits and risks for all K members and asks the method for
(1) how to combine the risks, (2) a penalty, and (3) how to turn the objective into gradients.
Penalty methods (IRM, V-REx) override :meth:`Method.penalty`; gradient-rule methods (AND-mask)
override :meth:`Method.backward`, where they get each environment's risk to differentiate
separately; per-sample methods (Fishr) read the logits and features from :class:`StepBatch`.
Every tensor has the member axis first, and no method mixes members.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from pipeline.config import TrainConfig
from pipeline.errors import ConfigError


@dataclass
class StepBatch:
    """One step's forward pass over the training environments, members first."""

    logits: list[torch.Tensor]  # per environment, (K, N_e), float32
    labels: list[torch.Tensor]  # per environment, (N_e,) shared or (K, N_e) per member
    features: list[torch.Tensor]  # per environment, (K, N_e, F): the penultimate layer
    risks: torch.Tensor  # (K, E): mean BCE per member and environment


def bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with logits over the last axis: (K, N) -> (K,)."""
    return F.binary_cross_entropy_with_logits(
        logits, labels.expand_as(logits), reduction="none").mean(-1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """IRM's accuracy: the sign of the logit against the 0/1 label, (K, N) -> (K,)."""
    return ((logits > 0).float() == labels.expand_as(logits)).float().mean(-1)


def irm_grad_closed_form(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d/ds BCE(s * f, y) at s = 1, which is mean((sigmoid(f) - y) * f): (K, N) -> (K,)."""
    return ((torch.sigmoid(logits) - labels) * logits).mean(-1)


def irm_grad_autograd(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The same gradient by double backprop through a dummy scale, as in IRM's ``main.py``.

    The scale is created in the logits' dtype: a float32 scale would silently round a float64
    computation and hide a mismatch with the closed form.
    """
    scale = torch.ones(logits.shape[0], 1, dtype=logits.dtype, device=logits.device,
                       requires_grad=True)
    risk = bce(logits * scale, labels)
    (grad,) = torch.autograd.grad(risk.sum(), scale, create_graph=True)
    return grad.squeeze(1)


class Method:
    """ERM: the mean (or sum) of the environment risks and no penalty."""

    name = "erm"
    description = "Empirical risk minimisation over the pooled training environments"
    has_penalty = False  # the schedule's weight (and IRM's division by it) does not apply

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    def risk(self, risks: torch.Tensor) -> torch.Tensor:
        return risks.sum(1) if self.cfg.risk_reduction == "sum" else risks.mean(1)

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        return torch.zeros_like(batch.risks[:, 0])

    def backward(self, objective: torch.Tensor, batch: StepBatch,
                 params: list[torch.Tensor]) -> None:
        """Turn the per-member objective (K,) into ``.grad`` on ``params`` (member axis first).

        A gradient rule (AND-mask) overrides this: it can differentiate each column of
        ``batch.risks`` separately with ``torch.autograd.grad(..., params)`` and write the
        combined gradient into ``p.grad``. Members are independent, so summing is exact.
        """
        objective.sum().backward()


class IRM(Method):
    """IRMv1: the squared gradient of each environment's risk w.r.t. a scale at 1.0, averaged."""

    name = "irm"
    description = "IRMv1 gradient penalty (closed form, double backprop or two-half estimator)"
    has_penalty = True

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


class VREx(Method):
    """V-REx: the (population) variance of the environment risks."""

    name = "vrex"
    description = "V-REx: variance of the training-environment risks"
    has_penalty = True

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        risks = batch.risks
        if self.cfg.vrex_penalty == "squared_difference":  # REx's and Fishr's (L1 - L2)^2
            if risks.shape[1] != 2:
                raise ConfigError("vrex_penalty = 'squared_difference' needs exactly two "
                                  f"training environments (got {risks.shape[1]})")
            return (risks[:, 0] - risks[:, 1]).pow(2)
        return (risks - risks.mean(1, keepdim=True)).pow(2).mean(1)  # DomainBed's variance


METHODS: dict[str, type[Method]] = {"erm": Method, "irm": IRM, "vrex": VREx}
