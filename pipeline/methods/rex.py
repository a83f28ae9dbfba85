"""Penalties on the spread of the environment risks: V-REx (Krueger et al. 2021) and RVP."""

from __future__ import annotations

import torch

from pipeline.errors import ConfigError
from pipeline.hparams import HParam
from pipeline.methods.base import Method, StepBatch


class VREx(Method):
    """V-REx: the (population) variance of the environment risks."""

    name = "vrex"
    description = "V-REx: variance of the training-environment risks"
    has_penalty = True
    hparams = {"vrex_penalty": HParam(
        "variance", "variance (DomainBed) or squared_difference (REx's and Fishr's "
        "(L1 - L2)^2)", choices=("variance", "squared_difference"))}

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        risks = batch.risks
        if self.cfg.vrex_penalty == "squared_difference":  # REx's and Fishr's (L1 - L2)^2
            if risks.shape[1] != 2:
                raise ConfigError("vrex_penalty = 'squared_difference' needs exactly two "
                                  f"training environments (got {risks.shape[1]})")
            return (risks[:, 0] - risks[:, 1]).pow(2)
        return (risks - risks.mean(1, keepdim=True)).pow(2).mean(1)  # DomainBed's variance


class RVP(Method):
    """RVP, the risk variance penalty: the standard deviation of the environment risks.

    Source: IRMBed ``IRMBed/IRMBed@21f7691eb380d017ce3dd0d93b6262f4f928f2ad:train.py``
    (``compute_irm_penalty_loss``, ``irm_type == "rvp"``)::

        loss_t = torch.stack(loss_list)
        penalty = torch.sqrt(((loss_t - loss_t.mean())** 2).mean())

    the population standard deviation (no Bessel correction) of the per-environment mean BCE,
    per member here. Differences from IRMBed's loop: at zero spread the gradient of the square
    root is taken as 0 (the source's is NaN there); the risk term is the loop's mean of the
    environment risks (IRMBed: the pooled batch's BCE, the same for equal environment sizes);
    IRMBed divides the objective by ``1 + lambda`` and updates its linear head by the plain
    ERM loss and the featurizer by the penalised one, where here one Adam step applies the
    whole objective to the whole model (``jump_rule`` decides the rescale, IRM's ``/ lambda``
    by default). IRMBed gives no search range; the space is IRM's.
    """

    name = "rvp"
    description = "RVP: standard deviation of the training-environment risks (IRMBed)"
    has_penalty = True

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        risks = batch.risks
        var = (risks - risks.mean(1, keepdim=True)).pow(2).mean(1)
        # sqrt has an infinite derivative at 0: take its subgradient 0 there instead of NaN
        # (a NaN risk stays NaN: a diverged member's penalty is not a number)
        zero = var == 0
        return torch.where(zero, torch.zeros_like(var),
                           var.where(~zero, torch.ones_like(var)).sqrt())
