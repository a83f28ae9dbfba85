"""The method registry: one small class per method over the one training loop.

A method is ERM (:class:`~pipeline.methods.base.Method`) plus what it changes: how the
environment risks are combined (GroupDRO), a penalty weighted by the schedule (IRM, V-REx,
Fishr, CORAL, ...), an unscheduled regulariser (IB-IRM's information bottleneck), extra
per-member parameters (DANN's environment adversary), or how the objective becomes gradients
(AND-mask). One module per family; this file only names them.
"""

from __future__ import annotations

from pipeline.methods.base import (
    Method,
    MethodContext,
    Range,
    StepBatch,
    accuracy,
    bce,
    irm_grad_autograd,
    irm_grad_closed_form,
)
from pipeline.methods.irm import IRM
from pipeline.methods.rex import VREx

METHODS: dict[str, type[Method]] = {"erm": Method, "irm": IRM, "vrex": VREx}

__all__ = ["IRM", "METHODS", "Method", "MethodContext", "Range", "StepBatch", "VREx", "accuracy", "bce",
           "irm_grad_autograd", "irm_grad_closed_form"]
