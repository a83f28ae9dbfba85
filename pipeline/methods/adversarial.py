"""Adversarial methods: FGSM adversarial training and DANN's environment adversary.

Both keep the member axis first and never mix members: member k's perturbation comes from
member k's loss alone, and member k's adversary sees member k's features alone.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pipeline.hparams import HParam
from pipeline.methods.base import Method, StepBatch, bce
from pipeline.seeds import derive_seed


def fgsm_inputs(batch: StepBatch, epsilon: float) -> list[torch.Tensor]:
    """Each environment's FGSM inputs ``clip(x + epsilon * sign(grad_x BCE_k), 0, 1)``,
    (K, N_e, *input), detached: member k's perturbation comes from member k's loss alone."""
    if batch.forward is None or not batch.inputs:
        raise ValueError("fgsm: the step batch has no inputs or forward function")
    k = batch.risks.shape[0]
    sizes = [lg.shape[-1] for lg in batch.logits]
    x = torch.cat(batch.inputs, dim=0 if batch.shared_inputs else 1)
    if batch.shared_inputs:  # every member gets its own perturbation of the shared input
        x = x.unsqueeze(0).expand(k, *x.shape)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits, _ = batch.forward(x, False)
        # member k's loss depends on member k's inputs only: the sum gives each its own
        loss = sum(bce(lg, y).sum() for lg, y in
                   zip(logits.split(sizes, dim=1), batch.labels, strict=True))
        (grad,) = torch.autograd.grad(loss, x)
    x_adv = (x.detach() + epsilon * grad.sign()).clamp(0.0, 1.0)
    return list(x_adv.split(sizes, dim=1))


class FGSM(Method):
    """Adversarial training with the fast gradient sign method (Goodfellow et al. 2015).

    Source: the write-up on invariant-risk penalties in the project's reference list: FGSM
    perturbations ``x + epsilon * sign(grad_x loss)``, the adversarial loss added to the clean
    loss.

    Per step and member k, with every training environment's inputs x (the step's batch):
    ``x_adv = clip(x + fgsm_epsilon * sign(grad_x BCE_k(x)), 0, 1)``, detached (no gradient
    through the perturbation), and the penalty is the mean over training environments of
    ``BCE_k(x_adv)``. The objective is the loop's ``risk + lambda * penalty``: the schedule's
    penalty weight is the adversarial loss's weight (lambda = 1: clean + adversarial loss, as
    in the source; Goodfellow et al.'s ``alpha = 0.5`` mix is the same up to a factor 2).

    Differences: the perturbation is always clipped to [0, 1], the pixel range of the image
    datasets the trainer accepts (their inputs are divided by the pixel scale). The gradient is
    that of the per-environment mean BCE (the sign is the same as for the pooled mean); the
    loop's L2 term is not part of it. With augmentation, x is the augmented input.
    """

    name = "adversarial"
    description = "FGSM adversarial training: BCE on x + eps * sign(grad_x BCE), clipped to [0, 1]"
    has_penalty = True
    hparams = {"fgsm_epsilon": HParam(0.1, "FGSM step in input units (pixels in [0, 1])",
                                      low=0.0, high=1.0, low_open=True,
                                      search={"log_uniform": [1.0e-2, 3.0e-1]})}

    def adversarial_inputs(self, batch: StepBatch) -> list[torch.Tensor]:
        """Each environment's FGSM inputs, (K, N_e, *input), detached, per member."""
        return fgsm_inputs(batch, self.cfg.fgsm_epsilon)

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        sizes = [lg.shape[-1] for lg in batch.logits]
        x_adv = torch.cat(self.adversarial_inputs(batch), dim=1)
        logits, _ = batch.forward(x_adv, False)
        terms = [bce(lg, y) for lg, y in
                 zip(logits.split(sizes, dim=1), batch.labels, strict=True)]
        return torch.stack(terms, 1).mean(1)


class _GradReverse(torch.autograd.Function):
    """Identity forward, negated gradient backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


def grad_reverse(x: torch.Tensor) -> torch.Tensor:
    return _GradReverse.apply(x)


class DANN(Method):
    """Domain-adversarial training (Ganin et al. 2016) with an environment adversary.

    Sources: Justin-Tan/invariant_reps (README: "adversarial training where an
    adversary predicts the sensitive variable from the representation", here the environment)
    and DomainBed's ``DANN`` (``domainbed/algorithms.py``, ``AbstractDANN``).

    Each member k owns an adversary A_k: features (F) -> ``dann_hidden`` -> ReLU -> n_envs
    logits (``dann_hidden = 0``: one linear layer), initialised as ``nn.Linear`` does under the
    seed ``derive_seed(seed_k, "dann")``. The penalty is the adversary's cross-entropy for the
    environment index, the mean over the pooled training examples, on gradient-reversed
    features: ``penalty_k = CE(A_k(GradReverse(phi_k(x))), e)``. One backward pass moves A_k
    down the cross-entropy and the featurizer phi_k up it. The schedule's weight multiplies
    the penalty, so it scales both sides (the adversary's step and the featurizer's reversed
    gradient; Adam makes the adversary's step nearly independent of the scale).

    Differences from DomainBed's DANN: DomainBed alternates discriminator steps and generator
    steps (``d_steps_per_g_step``) with two Adam optimizers (``lr_d``, ``lr_g``,
    ``beta1 = 0.5``, ``weight_decay_d``) and an optional gradient penalty on the
    discriminator's input; its generator loss is ``CE_class - lambda * disc_loss``. Here both
    are updated in the same step by the run's one Adam (lr, default betas), with no gradient
    penalty, no dropout, one hidden layer (DomainBed's default ``mlp_depth = 3`` has two), and
    no L2 on the adversary (the loop's L2 covers the model only). The adversary only learns
    while the schedule's weight is non-zero (``weight_before_anneal: 0`` freezes it), and the
    loop's ``divide_loss`` rule divides its gradient too.
    """

    name = "dann"
    description = "DANN: an environment adversary on gradient-reversed features"
    has_penalty = True
    hparams = {"dann_hidden": HParam(256, "hidden width of the environment adversary "
                                     "(0 = linear)", low=0, search={"choice": [0, 64, 256]})}

    def __init__(self, cfg, ctx=None):
        super().__init__(cfg, ctx)
        ctx = self.ctx
        dims = [ctx.feature_dim, *([cfg.dann_hidden] if cfg.dann_hidden else []), ctx.n_envs]
        members = [self.build_adversary(seed, dims) for seed in ctx.seeds]
        self.weights, self.biases = [], []
        for i in range(len(dims) - 1):
            w = torch.stack([m[i].weight.detach() for m in members])
            b = torch.stack([m[i].bias.detach() for m in members])
            self.weights.append(nn.Parameter(w.to(ctx.device)))
            self.biases.append(nn.Parameter(b.to(ctx.device)))

    @staticmethod
    def build_adversary(seed: int, dims: list[int]) -> nn.ModuleList:
        """One member's adversary, initialised from its seed alone (on the CPU)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "dann"))
            pairs = zip(dims[:-1], dims[1:], strict=True)
            return nn.ModuleList([nn.Linear(a, b) for a, b in pairs])

    def parameters(self) -> list[nn.Parameter]:
        return [*self.weights, *self.biases]

    def adversary(self, feats: torch.Tensor) -> torch.Tensor:
        """Environment logits (K, N, n_envs) of features (K, N, F), each member its own."""
        h = feats.float()
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < last:
                h = F.relu(h)
        return h

    def adversary_loss(self, features: list[torch.Tensor], reverse: bool = True) -> torch.Tensor:
        """Cross-entropy (K,) of the environment index over the pooled environments."""
        k, n_envs, dim = len(self.ctx.seeds), self.ctx.n_envs, self.ctx.feature_dim
        if len(features) != n_envs or any(f.shape[0] != k or f.shape[-1] != dim
                                          for f in features):
            raise ValueError(f"dann: expected {n_envs} environments of features (K={k}, N, "
                             f"F={dim}), got {[tuple(f.shape) for f in features]}")
        terms = []
        for env, feats in enumerate(features):
            if reverse:
                feats = grad_reverse(feats)
            terms.append(-F.log_softmax(self.adversary(feats), dim=-1)[..., env])
        return torch.cat(terms, 1).mean(1)

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        return self.adversary_loss(batch.features, reverse=True)
