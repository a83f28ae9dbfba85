"""InvRat (Chang et al. 2020) as IRMBed runs it: an environment-aware predictor as the rival."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from pipeline.hparams import HParam
from pipeline.methods.base import Method, StepBatch, bce
from pipeline.methods.heads import member_linear


def pooled_bce(logits: list[torch.Tensor], labels: list[torch.Tensor]) -> torch.Tensor:
    """The mean BCE over the examples of all environments together, (K,)."""
    n = sum(lg.shape[-1] for lg in logits)
    return sum(bce(lg, y) * lg.shape[-1] for lg, y in zip(logits, labels, strict=True)) / n


class InvRat(Method):
    """InvRat-EC: one linear environment-aware head per environment, rival of the model's own
    (environment-agnostic) head on the same features.

    Source: ``IRMBed/IRMBed@21f7691eb380d017ce3dd0d93b6262f4f928f2ad:train.py``
    (``compute_irm_free_same_step_penalty_loss``, ``irm_main_loss``) and
    ``@612d2e6623506e49acf431c72d4c496203ea1033:resnet_ofc.py`` (``ResNetSepFcOFC``: the
    heads ``class_classifier_sep{1..4}``, each ``nn.Linear(features, 1)``). Per step and member:

    1. ``invrat_inner_steps`` updates of the aware heads alone (their own optimizer; the source's
       ``step_sep``) on ``L_aware``, the pooled BCE with each example scored by its own
       environment's head, on features detached from the featurizer (``only_backward_fc``);
    2. the penalty ``max(0, L_agnostic - L_aware)`` on the step's batch, both pooled BCEs, with
       the aware heads held fixed and gradients into the features (so a positive penalty pushes
       the representation to make the environment-aware head no better than the agnostic one).

    Differences, each by design: the source scales the penalty by ``4 / (512 * lr *
    penalty_welr)`` (512 the ResNet-18 width); here ``penalty_weight`` absorbs any constant.
    The aware heads' optimizer is Adam at the run's ``lr`` (the source: SGD, momentum 0.9, at
    ``lr * penalty_welr`` = lr by default) on the same batch (the source draws another); they
    are initialised as ``nn.Linear`` under ``derive_seed(seed, "invrat")`` (the source copies
    the agnostic head into them at the end of the warm-up) and trained from step 0. The source's
    penalised step updates the featurizer alone (its agnostic head is frozen once the penalty
    is on, ``step_rep``); here the loop's one optimizer updates the whole model. The
    embedding-based variant (InvRat-EB, ``ResNetSep2FcInvRat``) is not built.
    """

    name = "invrat"
    description = "InvRat: max(0, L_agnostic - L_env_aware), per-environment heads as the rival"
    has_penalty = True
    hparams = {"invrat_inner_steps": HParam(1, "updates of the environment-aware heads per step "
                                            "(IRMBed's num_inners)", low=1,
                                            search={"int": [1, 5]})}

    def __init__(self, cfg, ctx=None):
        super().__init__(cfg, ctx)
        ctx = self.ctx
        self.weight, self.bias = member_linear(ctx.seeds, "invrat", ctx.feature_dim,
                                               ctx.n_envs, ctx.device)
        self.optimizer = torch.optim.Adam([self.weight, self.bias], lr=cfg.lr)

    def aware_logits(self, features: list[torch.Tensor], weight: torch.Tensor,
                     bias: torch.Tensor) -> list[torch.Tensor]:
        """Each environment's examples scored by its own head: (K, N_e) per environment."""
        if len(features) != weight.shape[1]:
            raise ValueError(f"invrat: {len(features)} environments of features but "
                             f"{weight.shape[1]} heads")
        return [torch.baddbmm(bias[:, e, None, None], f.to(weight.dtype),
                              weight[:, e, :, None]).squeeze(-1)
                for e, f in enumerate(features)]

    def fit_aware_heads(self, batch: StepBatch) -> None:
        features = [f.detach() for f in batch.features]
        with torch.enable_grad():
            for _ in range(self.cfg.invrat_inner_steps):
                self.optimizer.zero_grad(set_to_none=True)
                loss = pooled_bce(self.aware_logits(features, self.weight, self.bias),
                                  batch.labels)
                loss.sum().backward()  # members are independent: the sum gives each its own
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        self.fit_aware_heads(batch)
        aware = pooled_bce(self.aware_logits(batch.features, self.weight.detach(),
                                             self.bias.detach()), batch.labels)
        agnostic = pooled_bce(batch.logits, batch.labels)
        return F.relu(agnostic - aware.to(agnostic))
