"""IRM-Game (Ahuja et al. 2020) as IRMBed runs it: an ensemble of environment heads, each
updated by best response on its own environment."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.methods.base import Method, StepBatch, bce
from pipeline.methods.heads import member_linear


class IRMGame(Method):
    """V-IRM-style game: E linear heads on the model's features predict by the mean of their
    logits; each head plays best response on its environment, the featurizer on all of them.

    Source: ``IRMBed/IRMBed@21f7691eb380d017ce3dd0d93b6262f4f928f2ad:train.py``
    (``compute_irm_game_free_same_step_penalty_loss``) and
    ``@612d2e6623506e49acf431c72d4c496203ea1033:resnet_ofc.py`` (``ResNetSepFcGame``: the
    prediction is ``0.5 * (class_classifier_sep1(x) + class_classifier_sep2(x))``, the mean of
    the heads' logits; the model's own head is never used). Per step and member:

    1. the featurizer's gradient is that of the loop's risk of the ensemble's prediction
       (:meth:`predict`), applied by the loop's optimizer;
    2. then, for e = 1..E in turn, head e alone takes one step of its own optimizer on the BCE
       of the ensemble (the other heads fixed, those before it already updated) over
       environment e's examples, on features detached from the featurizer (the source's
       ``only_backward_fc``).

    IRM-Game has no penalty: the source's ``irm_penalty_weight`` only divides the featurizer's
    loss by ``1 + lambda``, which the schedule does not do here (``has_penalty = False``).
    Differences: the heads' optimizers are Adam at the run's ``lr`` (the source: SGD, momentum
    0.9, at ``lr * penalty_lrml``, which no script of the source defines); the heads play on the
    step's batch (the source draws another) after the featurizer's gradient is taken (the source
    updates the featurizer after the heads); each head is initialised as ``nn.Linear`` under
    ``derive_seed(seed, "irmgame")`` (the source copies its unused agnostic head into all of
    them at the end of the warm-up) and any number of environments is allowed (the source: 2
    or 4). The loop's L2 term covers the model (its unused output layer included), not the heads.
    """

    name = "irmgame"
    description = "IRM-Game: ensemble of per-environment heads, best-response updates (IRMBed)"

    def __init__(self, cfg, ctx=None):
        super().__init__(cfg, ctx)
        ctx = self.ctx
        weight, bias = member_linear(ctx.seeds, "irmgame", ctx.feature_dim, ctx.n_envs,
                                     ctx.device)
        # one parameter pair and one optimizer per head: a head's step moves that head alone
        self.weights = [nn.Parameter(weight[:, e].detach().clone()) for e in range(ctx.n_envs)]
        self.biases = [nn.Parameter(bias[:, e].detach().clone()) for e in range(ctx.n_envs)]
        self.optimizers = [torch.optim.Adam([w, b], lr=cfg.lr)
                           for w, b in zip(self.weights, self.biases, strict=True)]

    def heads(self, features: torch.Tensor, live: int | None = None) -> torch.Tensor:
        """The ensemble's logits (K, N) of features (K, N, F): the mean of the heads' logits,
        with only head ``live`` carrying gradients when it is given."""
        out = None
        for e, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if live is not None and e != live:
                w, b = w.detach(), b.detach()
            logit = torch.baddbmm(b[:, None, None], features.to(w.dtype), w[:, :, None])
            out = logit if out is None else out + logit
        return out.squeeze(-1) / len(self.weights)

    def predict(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.heads(features).to(logits.dtype)

    def best_responses(self, batch: StepBatch) -> None:
        """Each head's step on its own environment, in turn (Gauss-Seidel, as the source)."""
        if len(batch.features) != len(self.weights):
            raise ValueError(f"irmgame: {len(batch.features)} environments but "
                             f"{len(self.weights)} heads")
        with torch.enable_grad():
            for e, (feats, labels) in enumerate(zip(batch.features, batch.labels, strict=True)):
                opt = self.optimizers[e]
                opt.zero_grad(set_to_none=True)
                bce(self.heads(feats.detach(), live=e), labels).sum().backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

    def backward(self, objective: torch.Tensor, batch: StepBatch,
                 params: list[torch.Tensor]) -> None:
        objective.sum().backward()  # the featurizer's gradient, through the current heads
        for w, b in zip(self.weights, self.biases, strict=True):
            w.grad = b.grad = None  # the heads move by their best responses alone
        self.best_responses(batch)
