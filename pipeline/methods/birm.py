"""Bayesian IRM (Lin et al. 2022): IRMv1's penalty averaged over sampled classifier scales."""

from __future__ import annotations

import torch

from pipeline.hparams import HParam
from pipeline.methods.base import Method, StepBatch
from pipeline.seeds import derive_seed


def birm_scale_grad(logits: torch.Tensor, labels: torch.Tensor, w: torch.Tensor,
                    weight: float = 1.0) -> torch.Tensor:
    """``weight * d/dw mean_i BCE(w * f_i, y_i)`` at each sampled w, in closed form.

    ``logits`` (K, N), ``labels`` (N,) or (K, N), ``w`` (K, S): the gradient is
    ``weight * mean_i((sigmoid(w f_i) - y_i) f_i)``, shape (K, S).
    """
    f = logits.unsqueeze(1)  # (K, 1, N)
    y = labels.expand_as(logits).unsqueeze(1)
    return weight * ((torch.sigmoid(w.unsqueeze(-1) * f) - y) * f).mean(-1)


class BIRM(Method):
    """Bayesian IRM's full-batch penalty (``bayes_fullbatch``).

    Source: linyongver/Bayesian-Invariant-Risk-Minmization@71f40c8, ``main.py``::

        ebd.re_init_with_noise(flags.prior_sd_coef/flags.data_num)
        train_logits_w = ebd(train_g).view(-1, 1)*train_logits
        train_nll = mean_nll(train_logits_w, train_y)
        grad = autograd.grad(train_nll * flags.envs_num, ebd.parameters(), create_graph=True)[0]
        train_penalty +=  1/sampleN * torch.mean(grad**2)

    where ``re_init_with_noise`` draws ``torch.normal(ones(envs_num), noise_sd)``: one scalar
    classifier per environment, ``w_e ~ N(1, sd)`` with the standard deviation (not the
    variance) ``sd = prior_sd_coef / data_num``, data_num the number of training examples of
    all environments together (20,000 in ``auto_CMNIST.sh``, prior_sd_coef 1200). With N the
    examples of all environments, E of them, and S = ``birm_samples`` (the source's
    ``sampleN = 10``), the penalty of member k is

        mean_s mean_e [ (E / N) * sum_{i in e} (sigmoid(w_se f_i) - y_i) f_i ]^2,

    the closed form of the source's gradient of the pooled mean NLL times ``envs_num`` (with
    equal environment sizes, the gradient of environment e's mean NLL). Here N is the step's
    example count: the training set in full batch (BIRM's protocol), the minibatch otherwise,
    where sd = prior_sd_coef / (E * batch_size) is far larger than the source's.

    The w are drawn per member from a CPU ``torch.Generator`` seeded with
    ``derive_seed(seed, "birm")`` (S x E standard normals per step), then moved to the device:
    deterministic under a seed, independent across members. The source draws from the global
    (seeded) torch RNG.

    Loop options that give the source's loop: ``weight_before_anneal: 0`` (its lambda is 0 before
    ``penalty_anneal_iters``), ``penalty_weight``/``anneal_iters`` (10000 and 200 in
    ``auto_CMNIST.sh``). Not reproduced: the source divides the loss by ``1 + lambda`` when
    lambda > 1 (``jump_rule: divide_loss`` divides by lambda, a factor lambda / (1 + lambda)
    ~ 1 - 1e-4 apart at 1e4); its ``StepLR(step_size=steps/2, gamma=0.1)`` (the loop has no
    learning-rate schedule); and its NLL term is that of the last sample's perturbed logits
    (``train_nll`` is overwritten in the sampling loop), where here it is the loop's risk at
    w = 1.
    """

    name = "birm"
    description = "Bayesian IRM: IRMv1's squared gradient averaged over w_e ~ N(1, sd) samples"
    has_penalty = True
    hparams = {
        "birm_samples": HParam(10, "samples of each environment's variational classifier",
                               low=1),
        "birm_prior_sd_coef": HParam(1200.0, "the classifier's sd is prior_sd_coef / data_num "
                                     "(BIRM's script: 1200)", low=0.0, low_open=True,
                                     search={"log_uniform": [1.0e2, 1.0e4]}),
    }

    def __init__(self, cfg, ctx=None):
        super().__init__(cfg, ctx)
        self.generators = [torch.Generator().manual_seed(derive_seed(s, "birm"))
                           for s in self.ctx.seeds]

    def draw(self, n_envs: int) -> torch.Tensor:
        """Standard normals (K, S, E), one block per member from its own generator."""
        return torch.stack([torch.randn(self.cfg.birm_samples, n_envs, generator=g)
                            for g in self.generators])

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        k, n_envs = batch.risks.shape
        if k != len(self.generators):
            raise ValueError(f"birm: {k} members in the batch but {len(self.generators)} seeds")
        n = sum(lg.shape[-1] for lg in batch.logits)
        sd = self.cfg.birm_prior_sd_coef / n
        logits0 = batch.logits[0]
        w = 1.0 + sd * self.draw(n_envs).to(device=logits0.device, dtype=logits0.dtype)
        terms = []
        for env, (logits, labels) in enumerate(zip(batch.logits, batch.labels, strict=True)):
            # d/dw_e of E * (pooled mean NLL) = (E * N_e / N) * d/dw_e (env e's mean NLL)
            grad = birm_scale_grad(logits, labels, w[:, :, env], n_envs * logits.shape[-1] / n)
            terms.append(grad.pow(2))  # (K, S)
        return torch.stack(terms, -1).mean((1, 2))
