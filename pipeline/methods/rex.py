"""V-REx (Krueger et al. 2021): the variance of the training-environment risks."""

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
