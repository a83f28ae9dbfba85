"""Deep CORAL (Sun and Saenko 2016) as in DomainBed: match feature means and covariances."""

from __future__ import annotations

import torch

from pipeline.methods.base import Method, StepBatch


def mean_cov_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DomainBed's ``mmd`` with ``kernel_type = mean_cov``, per member: (K, N, F) x 2 -> (K,).

    ``mean((mu_x - mu_y)^2) + mean((C_x - C_y)^2)``; the covariances divide by N - 1.
    """
    mean_x, mean_y = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    cent_x, cent_y = x - mean_x, y - mean_y
    cov_x = cent_x.transpose(1, 2) @ cent_x / (x.shape[1] - 1)
    cov_y = cent_y.transpose(1, 2) @ cent_y / (y.shape[1] - 1)
    mean_diff = (mean_x - mean_y).pow(2).flatten(1).mean(1)
    cov_diff = (cov_x - cov_y).pow(2).flatten(1).mean(1)
    return mean_diff + cov_diff


class CORAL(Method):
    """CORAL: mean over pairs of environments of the mean and covariance mismatch of the features.

    Follows DomainBed ``facebookresearch/DomainBed@domainbed/algorithms.py`` (``AbstractMMD.mmd``
    with ``gaussian=False``, i.e. ``CORAL``, and ``AbstractMMD.update``): for every pair i < j,
    ``(mu_i - mu_j)^2 .mean() + (C_i - C_j)^2 .mean()`` with unbiased (N - 1) covariances,
    divided by the number of pairs (0 with one environment), per member, on the penultimate
    features (``StepBatch.features``, cast to at least float32). Difference: DomainBed weights it
    by a constant ``mmd_gamma``; here ``penalty_weight`` and the run's schedule (with IRM's
    division of the loss by a weight > 1 under ``jump_rule = divide_loss``) weight it.
    """

    name = "coral"
    description = "CORAL: feature mean and covariance matching across environments"
    has_penalty = True

    def penalty(self, batch: StepBatch) -> torch.Tensor:
        feats = [f.to(torch.promote_types(f.dtype, torch.float32)) for f in batch.features]
        total = torch.zeros_like(batch.risks[:, 0])
        n_pairs = 0
        for i in range(len(feats)):
            for j in range(i + 1, len(feats)):
                total = total + mean_cov_distance(feats[i], feats[j]).to(total)
                n_pairs += 1
        return total / n_pairs if n_pairs else total
