"""GroupDRO (Sagawa et al. 2020): minimise an adaptively weighted mix of the environment risks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pipeline.hparams import HParam
from pipeline.methods.base import Method, MethodContext

if TYPE_CHECKING:
    from pipeline.config import TrainConfig


class GroupDRO(Method):
    """GroupDRO: exponentiated-gradient weights ``q`` over the environments, per member.

    Follows DomainBed ``facebookresearch/DomainBed@domainbed/algorithms.py`` (``GroupDRO.update``):
    ``q`` starts at ones, each step ``q_e *= exp(eta * risk_e.detach())``, ``q /= q.sum()``, and
    the risk is ``sum_e q_e risk_e``. ``q`` is (K, E), one row per member, kept on the risks'
    device and dtype; it advances at every call of :meth:`risk` (the loop calls it once per step).
    Differences: BCE on one logit instead of cross-entropy; ``risk_reduction`` does not apply
    (the weights sum to one); the run's L2 term is added by the loop (DomainBed: weight decay 0).
    """

    name = "groupdro"
    description = "GroupDRO: exponentiated-gradient weights on the environment risks"
    has_penalty = False
    hparams = {"groupdro_eta": HParam(0.01, "step size of the exponentiated environment "
                                      "weights", low=0.0, low_open=True,
                                      search={"log_uniform": [1.0e-3, 1.0e-1]})}  # DomainBed

    def __init__(self, cfg: TrainConfig, ctx: MethodContext | None = None):
        super().__init__(cfg, ctx)
        self.q: torch.Tensor | None = None  # (K, E)

    def risk(self, risks: torch.Tensor) -> torch.Tensor:
        if self.q is None or self.q.shape != risks.shape:
            self.q = torch.ones_like(risks.detach())
        q = self.q.to(device=risks.device, dtype=risks.dtype)
        q = q * torch.exp(self.cfg.groupdro_eta * risks.detach())
        self.q = q / q.sum(1, keepdim=True)
        return (self.q * risks).sum(1)
