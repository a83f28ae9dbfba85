"""A mutual-information regulariser between the model's output and the environment (MINE)."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from pipeline.hparams import HParam
from pipeline.methods.base import Method, StepBatch
from pipeline.methods.heads import apply_linear, member_linear
from pipeline.seeds import derive_seed

HIDDEN = 64  # the source's statistics network: two hidden layers of 64
ESTIMATORS = ("dv", "jsd", "kl")


def layer_norm(h: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Layer normalisation over the last axis with per-member scale and shift (K, H)."""
    return F.layer_norm(h, h.shape[-1:]) * scale.unsqueeze(1) + shift.unsqueeze(1)


def dv_bound(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan: ``mean(T_joint) - log mean(exp T_marginal)``, (K, N) x 2 -> (K,)."""
    return joint.mean(-1) - (torch.logsumexp(marginal, -1) - math.log(marginal.shape[-1]))


def jsd_bound(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """The GAN (Jensen-Shannon) form: ``-(BCE(T_joint, 1) + BCE(T_marginal, 0)) + log 4``."""
    return -(F.softplus(-joint).mean(-1) + F.softplus(marginal).mean(-1)) + math.log(4.0)


class MINE(Method):
    """A statistics network T per member estimates I(z; e) between the model's output z and the
    environment e; the model minimises the estimate while T maximises its bound.

    Source: ``Justin-Tan/invariant_reps@dda5b0a00530c4b2d4ce578e17a0e8ef28aeb31b:model.py``
    and ``@a4e70e38:network.py`` (``Network.MINE``; TensorFlow):

    - T sees ``concat(z, s)`` through Dense(64) -> LayerNorm -> ELU, twice, then Dense(1),
      Xavier-initialised; z is the classifier's logit (``mine_on = logit``; ``features``
      uses the penultimate representation instead), s here the one-hot environment (the
      source's pivot is a continuous scalar);
    - the marginal pairs shuffle s over the batch (``tf.random_shuffle``), a new permutation
      per evaluation, drawn per member from ``derive_seed(seed, "mine")``;
    - ``mine_estimator = dv`` (the source's default): T maximises the Donsker-Varadhan bound
      ``mean T(z, s) - log mean exp T(z, s')`` and the model's penalty is ``relu(bound)``
      (the source's 'minmax' cost ``MI_lambda * relu(MINE_lower_bound)``); ``jsd``: the same
      with the GAN bound ``-(BCE(T_joint, 1) + BCE(T_marginal, 0)) + log 4`` (``-JSD``);
      ``kl``: T trains on the GAN bound and the penalty is ``mean T(z, s)`` on joint pairs, the
      density-ratio estimate of KL(p(z, s) || p(z) p(s)) (the source's ``-kl`` update,
      ``mean(log D - log(1 - D))``, which is ``mean(T_joint)``);
    - T takes ``mine_steps`` Adam steps (lr ``mine_lr``) per model step (the source's
      ``MI_iterations`` = 16 and ``MINE_learning_rate`` = 8e-4) on z detached from the
      model; the penalty then holds T fixed.

    Differences: under ``dv`` T's output bias stays at 0 (the bound does not depend on it);
    T trains on the step's batch (the source feeds it test-set batches); the
    penalty weight is the schedule's (the source's ``MI_lambda``, constant, default 0); no
    spectral norm or JSD gradient regulariser (options of the source, off by default).
    """

    name = "mine"
    description = "MINE: a statistics network's bound on I(output; environment) as the penalty"
    has_penalty = True
    hparams = {
        "mine_estimator": HParam("dv", "T's bound and the penalty: dv (Donsker-Varadhan), jsd "
                                 "(GAN bound) or kl (GAN-trained T, penalty mean T_joint)",
                                 choices=ESTIMATORS),
        "mine_on": HParam("logit", "z: the model's logit (the source) or its penultimate "
                          "features", choices=("logit", "features")),
        "mine_steps": HParam(16, "updates of the statistics network per step (the source's "
                             "MI_iterations)", low=1, search={"choice": [1, 4, 16]}),
        "mine_lr": HParam(8.0e-4, "the statistics network's Adam learning rate", low=0.0,
                          low_open=True, search={"log_uniform": [1.0e-4, 1.0e-2]}),
    }

    def __init__(self, cfg, ctx=None):
        super().__init__(cfg, ctx)
        ctx = self.ctx
        z_dim = 1 if cfg.mine_on == "logit" else ctx.feature_dim
        dims = [z_dim + ctx.n_envs, HIDDEN, HIDDEN, 1]
        self.layers = [member_linear(ctx.seeds, f"mine{i}", a, b, ctx.device, init="xavier")
                       for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True))]
        k = len(ctx.seeds)
        self.norms = [(torch.nn.Parameter(torch.ones(k, HIDDEN, device=ctx.device)),
                       torch.nn.Parameter(torch.zeros(k, HIDDEN, device=ctx.device)))
                      for _ in range(2)]
        trained = self.own_parameters()
        if cfg.mine_estimator == "dv":  # T + c has the same DV bound: the output bias's
            # gradient is rounding noise, which Adam's normalised steps would turn into a
            # random walk (member k of a batched run would drift from seed k alone); fix it at 0
            trained = [p for p in trained if p is not self.layers[-1][1]]
        self.optimizer = torch.optim.Adam(trained, lr=cfg.mine_lr)
        self.generators = [torch.Generator().manual_seed(derive_seed(s, "mine"))
                           for s in ctx.seeds]

    def own_parameters(self) -> list[torch.nn.Parameter]:
        return [p for pair in [*self.layers, *self.norms] for p in pair]

    def statistic(self, pairs: torch.Tensor, detach: bool = False) -> torch.Tensor:
        """T of (K, N, z_dim + E) pairs -> (K, N)."""
        h = pairs
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            if detach:
                w, b = w.detach(), b.detach()
            h = apply_linear(w, b, h)
            if i < last:
                scale, shift = self.norms[i]
                if detach:
                    scale, shift = scale.detach(), shift.detach()
                h = F.elu(layer_norm(h, scale, shift))
        return h.squeeze(-1)

    def inputs(self, batch: StepBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """z (K, N, z_dim) over the pooled environments and the one-hot environment (N, E)."""
        if self.cfg.mine_on == "logit":
            z = torch.cat(batch.logits, dim=1).unsqueeze(-1)
        else:
            z = torch.cat(batch.features, dim=1)
        env = torch.cat([torch.full((lg.shape[-1],), e, dtype=torch.long)
                         for e, lg in enumerate(batch.logits)])
        onehot = F.one_hot(env, len(batch.logits)).to(device=z.device, dtype=torch.float32)
        return z.float(), onehot

    def pairs(self, z: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint (z_i, s_i) and marginal (z_i, s_pi(i)) pairs, each member its own pi."""
        k, n = z.shape[:2]
        if k != len(self.generators):
            raise ValueError(f"mine: {k} members but {len(self.generators)} seeds")
        perm = torch.stack([torch.randperm(n, generator=g) for g in self.generators])
        shuffled = onehot[perm.to(onehot.device)]  # (K, N, E)
        joint = torch.cat([z, onehot.expand(k, n, -1)], -1)
        return joint, torch.cat([z, shuffled], -1)

    def bound(self, joint: torch.Tensor, marginal: torch.Tensor, kind: str) -> torch.Tensor:
        return dv_bound(joint, marginal) if kind == "dv" else jsd_bound(joint, marginal)

    def fit_statistic(self, z: torch.Tensor, onehot: torch.Tensor) -> None:
        """``mine_steps`` ascent steps of T's bound on detached z."""
        kind = "dv" if self.cfg.mine_estimator == "dv" else "jsd"
        z = z.detach()
        with torch.enable_grad():
            for _ in range(self.cfg.mine_steps):
                joint, marginal = self.pairs(z, onehot)
                self.optimizer.zero_grad(set_to_none=True)
                loss = -self.bound(self.statistic(joint), self.statistic(marginal), kind)
                loss.sum().backward()  # members are independent: the sum gives each its own
                self.optimizer.step()
        for p in self.own_parameters():  # (the DV bias is not in the optimizer)
            p.grad = None

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        z, onehot = self.inputs(batch)
        self.fit_statistic(z, onehot)
        joint, marginal = self.pairs(z, onehot)
        t_joint = self.statistic(joint, detach=True)
        if self.cfg.mine_estimator == "kl":
            return t_joint.mean(-1).to(batch.risks)
        t_marginal = self.statistic(marginal, detach=True)
        return F.relu(self.bound(t_joint, t_marginal, self.cfg.mine_estimator)).to(batch.risks)
