"""AND-mask (Parascandolo et al. 2021): keep the gradient components the environments agree on."""

from __future__ import annotations

import torch

from pipeline.hparams import HParam
from pipeline.methods.base import Method, StepBatch


def and_mask(grads: torch.Tensor, tau: float) -> torch.Tensor:
    """The agreement mask of per-environment gradients ``(E, K, ...)``: ``|mean_e sign| >= tau``."""
    return (torch.sign(grads).mean(0).abs() >= tau).to(grads.dtype)


def masked_mean_gradient(grads: torch.Tensor, tau: float) -> torch.Tensor:
    """DomainBed's ``mask_grads`` for one parameter, per member: ``(E, K, ...)`` -> ``(K, ...)``.

    ``mask * mean_e(grads) / (1e-10 + density)``, where the density (the kept fraction) is
    computed over each member's own elements, so members do not mix.
    """
    mask = and_mask(grads, tau)
    density = mask.reshape(mask.shape[0], -1).mean(1)
    density = density.reshape(-1, *([1] * (mask.dim() - 1)))
    return mask * grads.mean(0) / (1e-10 + density)


class ANDMask(Method):
    """AND-mask: the risk gradient is the environments' mean gradient, masked where they disagree.

    Follows DomainBed ``facebookresearch/DomainBed@domainbed/algorithms.py`` (``ANDMask.update``
    and ``mask_grads``): per-environment gradients ``g_e`` of each environment's risk, mask
    ``|mean_e sign(g_e)| >= tau`` per element, gradient ``mask * mean_e g_e / (1e-10 + mask
    density)``. Differences: (1) the density is computed per member (over the elements of each
    member's slice of a parameter tensor), where DomainBed has one model; (2) the rest of the
    objective (IRM's L2 term over all parameters) is differentiated normally and added unmasked
    (DomainBed has Adam's weight decay, 0 for ColoredMNIST, outside the mask); (3) with
    ``risk_reduction = sum`` the masked gradient is that of the summed risks (``E`` times the
    mean), DomainBed averages; (4) the loss is BCE on one logit, not cross-entropy.
    """

    name = "andmask"
    description = "AND-mask: environment-averaged gradients masked by sign agreement"
    has_penalty = False
    hparams = {"andmask_tau": HParam(1.0, "keep where |mean sign| >= tau (DomainBed default 1)",
                                     low=0.0, high=1.0,
                                     search={"uniform": [0.5, 1.0]})}  # DomainBed: U(0.5, 1)

    def backward(self, objective: torch.Tensor, batch: StepBatch,
                 params: list[torch.Tensor]) -> None:
        risks, n_envs = batch.risks, batch.risks.shape[1]
        per_env = []  # per environment: a gradient (or None) for every parameter
        for e in range(n_envs):
            per_env.append(torch.autograd.grad(risks[:, e].sum(), params, retain_graph=True,
                                               allow_unused=True))
        # everything but the risk term (the L2 term, ...): differentiated as usual
        rest = objective - self.risk(risks)
        rest_grads = torch.autograd.grad(rest.sum(), params, allow_unused=True)
        scale = float(n_envs) if self.cfg.risk_reduction == "sum" else 1.0
        for i, p in enumerate(params):
            env_grads = [g[i] if g[i] is not None else torch.zeros_like(p) for g in per_env]
            grad = scale * masked_mean_gradient(torch.stack(env_grads), self.cfg.andmask_tau)
            if rest_grads[i] is not None:
                grad = grad + rest_grads[i]
            p.grad = grad if p.grad is None else p.grad + grad
