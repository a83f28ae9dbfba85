"""The method contract: ERM, and the hooks every other method overrides (DomainBed's, trimmed).

The loop computes per-environment logits and risks for all K members and asks the method for
(1) how to combine the risks (:meth:`Method.risk`), (2) a penalty that the schedule weights
(:meth:`Method.penalty`), (3) an unscheduled regulariser (:meth:`Method.regularizer`),
(4) how to turn the objective into gradients (:meth:`Method.backward`), and (5) what predicts
(:meth:`Method.predict`: the model's logit unless the method has its own heads). A method may own
per-member parameters (:meth:`Method.parameters`, e.g. an environment adversary); the loop
optimises them with the model's. Per-sample methods (Fishr) read logits and features from
:class:`StepBatch`; input-space methods (FGSM) re-run the model through ``batch.forward``.
Every tensor has the member axis first, and no method mixes members.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from pipeline.hparams import HParam

if TYPE_CHECKING:  # the type only: pipeline.config imports the methods, not back
    from pipeline.config import TrainConfig


@dataclass
class StepBatch:
    """One step's forward pass over the training environments, members first."""

    logits: list[torch.Tensor]  # per environment, (K, N_e), float32
    labels: list[torch.Tensor]  # per environment, (N_e,) shared or (K, N_e) per member
    features: list[torch.Tensor]  # per environment, (K, N_e, F): the penultimate layer
    risks: torch.Tensor  # (K, E): mean BCE per member and environment
    # per environment: (N_e, *input) shared by the members, or (K, N_e, *input) per member
    inputs: list[torch.Tensor] = field(default_factory=list)
    shared_inputs: bool = True
    # the model under the run's autocast: forward(x, shared) -> (logits (K, N) fp32, feats)
    forward: Callable[[torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor]] | None = None
    step: int = 0


@dataclass(frozen=True)
class MethodContext:
    """What a method may need to know about the run beyond its config."""

    seeds: tuple[int, ...] = (0,)
    n_envs: int = 2
    feature_dim: int = 1
    device: torch.device = torch.device("cpu")


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
    # the method's own config keys, declared once: default, valid values, search distribution
    # (pipeline.config gathers them into TrainConfig, which checks them when it is built)
    hparams: dict[str, HParam] = {}

    def __init__(self, cfg: TrainConfig, ctx: MethodContext | None = None):
        self.cfg, self.ctx = cfg, ctx or MethodContext()

    def predict(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The prediction (K, N) from the model's logits (K, N) and features (K, N, F), in
        training and evaluation alike: the model's logits, unless the method predicts with its
        own heads (IRM-Game's ensemble)."""
        return logits

    def parameters(self) -> list[torch.nn.Parameter]:
        """Per-member parameters the method owns (member axis first), optimised with the model."""
        return []

    def regularizer(self, batch: StepBatch) -> torch.Tensor:
        """An unscheduled term added to the objective, (K,): e.g. IB-IRM's feature variance."""
        return torch.zeros_like(batch.risks[:, 0])

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
