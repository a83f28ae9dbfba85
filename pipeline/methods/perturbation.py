"""The perturbation penalty: how far the predictions move when the inputs are perturbed."""

from __future__ import annotations

import torch

from pipeline.hparams import HParam
from pipeline.methods.adversarial import FGSM, fgsm_inputs
from pipeline.methods.base import Method, StepBatch
from pipeline.seeds import derive_seed


class Perturbation(Method):
    """The mean absolute change of the logit under a perturbation of the input.

    Source: the write-up on invariant-risk penalties in the project's reference list: "a
    Wasserstein-style penalty: the distance between predictions on clean and perturbed inputs",
    approximated "by the mean absolute difference of logits".

    Per member k and training environment e: ``mean_i |f_k(x_i) - f_k(x~_i)|``, and the penalty
    is the mean over environments, weighted by the run's schedule. Gradients flow through both
    logits; the perturbed input x~ is a constant:

    - ``perturb_kind = gaussian``: ``x~ = x + perturb_sigma * z``, z standard normal, drawn per
      member from a generator on the run's device seeded ``derive_seed(seed, "perturbation")``
      (deterministic under a seed and device, independent across members; the noise is the
      size of the batch, so it is drawn where it is used, and CUDA draws other numbers than
      the CPU), not clipped;
    - ``perturb_kind = fgsm``: ``x~ = clip(x + fgsm_epsilon * sign(grad_x BCE_k), 0, 1)``, the
      ``adversarial`` method's input (member k's from member k's loss).

    The write-up gives neither the noise nor its scale; both are this repository's named options.
    """

    name = "perturbation"
    description = "Perturbation penalty: mean |f(x) - f(x~)|, x~ Gaussian noise or FGSM"
    has_penalty = True
    hparams = {
        "perturb_kind": HParam("gaussian", "the perturbation: Gaussian noise of sd "
                               "perturb_sigma, or FGSM of step fgsm_epsilon",
                               choices=("gaussian", "fgsm")),
        "perturb_sigma": HParam(0.1, "sd of the Gaussian input noise (pixels in [0, 1])",
                                low=0.0, low_open=True, search={"log_uniform": [1.0e-2, 3.0e-1]}),
        "fgsm_epsilon": FGSM.hparams["fgsm_epsilon"],
    }

    def __init__(self, cfg, ctx=None):
        super().__init__(cfg, ctx)
        self.generators = [torch.Generator(device=self.ctx.device).manual_seed(
            derive_seed(s, "perturbation")) for s in self.ctx.seeds]

    def noisy_inputs(self, batch: StepBatch) -> list[torch.Tensor]:
        """Each environment's ``x + sigma * z``, (K, N_e, *input), each member its own z."""
        k = batch.risks.shape[0]
        if k != len(self.generators):
            raise ValueError(f"perturbation: {k} members but {len(self.generators)} seeds")
        sizes = [lg.shape[-1] for lg in batch.logits]
        x = torch.cat(batch.inputs, dim=0 if batch.shared_inputs else 1).detach()
        per_member = x.shape if batch.shared_inputs else x.shape[1:]
        z = torch.stack([torch.randn(per_member, generator=g, device=g.device)
                         for g in self.generators]).to(device=x.device, dtype=x.dtype)
        if batch.shared_inputs:
            x = x.unsqueeze(0)
        return list((x + self.cfg.perturb_sigma * z).split(sizes, dim=1))

    def perturbed_inputs(self, batch: StepBatch) -> list[torch.Tensor]:
        if batch.forward is None or not batch.inputs:
            raise ValueError("perturbation: the step batch has no inputs or forward function")
        if self.cfg.perturb_kind == "fgsm":
            return fgsm_inputs(batch, self.cfg.fgsm_epsilon)
        return self.noisy_inputs(batch)

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        sizes = [lg.shape[-1] for lg in batch.logits]
        logits, _ = batch.forward(torch.cat(self.perturbed_inputs(batch), dim=1), False)
        terms = [(clean - moved).abs().mean(-1) for clean, moved in
                 zip(batch.logits, logits.split(sizes, dim=1), strict=True)]
        return torch.stack(terms, 1).mean(1)
