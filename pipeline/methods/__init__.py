"""The method registry: one small class per method over the one training loop.

A method is ERM (:class:`~pipeline.methods.base.Method`) plus what it changes: how the
environment risks are combined (GroupDRO), a penalty weighted by the schedule (IRM, V-REx,
Fishr, CORAL, ...), an unscheduled regulariser (IB-IRM's information bottleneck), extra
per-member parameters (DANN's environment adversary, InvRat's environment-aware heads, MINE's
statistics network), what predicts (IRM-Game's ensemble of environment heads), or how the
objective becomes gradients (AND-mask). One module per family; this file only names them.
"""

from __future__ import annotations

from pipeline.methods.adversarial import DANN, FGSM
from pipeline.methods.andmask import ANDMask
from pipeline.methods.base import (
    Method,
    MethodContext,
    StepBatch,
    accuracy,
    bce,
    irm_grad_autograd,
    irm_grad_closed_form,
)
from pipeline.methods.birm import BIRM
from pipeline.methods.coral import CORAL
from pipeline.methods.fishr import Fishr
from pipeline.methods.groupdro import GroupDRO
from pipeline.methods.ibirm import IBIRM
from pipeline.methods.invrat import InvRat
from pipeline.methods.irm import IRM
from pipeline.methods.irmgame import IRMGame
from pipeline.methods.mine import MINE
from pipeline.methods.moments import PredictionMoments
from pipeline.methods.perturbation import Perturbation
from pipeline.methods.rex import RVP, VREx

METHODS: dict[str, type[Method]] = {"erm": Method, "irm": IRM, "vrex": VREx,
                                   "andmask": ANDMask, "fishr": Fishr, "groupdro": GroupDRO,
                                   "coral": CORAL, "ibirm": IBIRM,
                                   "adversarial": FGSM, "dann": DANN, "birm": BIRM,
                                   "perturbation": Perturbation, "moments": PredictionMoments,
                                   "rvp": RVP, "invrat": InvRat, "irmgame": IRMGame,
                                   "mine": MINE}

__all__ = ["BIRM", "CORAL", "DANN", "FGSM", "IBIRM", "IRM", "METHODS", "MINE", "RVP", "ANDMask",
           "Fishr", "IRMGame", "InvRat",
           "GroupDRO", "Method", "MethodContext", "Perturbation", "PredictionMoments",
           "StepBatch", "VREx", "accuracy", "bce",
           "irm_grad_autograd", "irm_grad_closed_form"]
