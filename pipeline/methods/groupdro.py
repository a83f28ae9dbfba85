"""GroupDRO (Sagawa et al. 2020): minimise an adaptively weighted mix of the environment risks."""

from __future__ import annotations

import torch

from pipeline.config import TrainConfig
from pipeline.methods.base import Method, MethodContext, Range


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
    hparams = {"groupdro_eta": Range(0.0, None, low_open=True)}

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
