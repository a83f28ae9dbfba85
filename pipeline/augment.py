"""Data augmentation of training images: torchvision's RandomAffine, drawn per image and member.

torchvision's ``RandomAffine`` draws one set of parameters per call, so a batch would share
one transform. Here every image of every member gets its own rotation, shear and scale (as a
per-image ``RandomAffine`` in a data loader would), and the whole batch is warped in one
``grid_sample``. The matrix is torchvision's ``_get_inverse_affine_matrix`` with the tensor
path's conventions (centre of the image, nearest-neighbour, zero fill), so each
image equals ``torchvision.transforms.v2.functional.affine`` with the same parameters (tested).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from pipeline.hparams import HParam

if TYPE_CHECKING:  # the type only: pipeline.config gathers these declarations
    from pipeline.config import TrainConfig

# Augmentation of the training inputs (image datasets); the ranges are torchvision's.
HPARAMS: dict[str, HParam] = {
    "augment": HParam("none", "augmentation of the training images", choices=("none", "affine")),
    "aug_degrees": HParam(15.0, "affine: rotation drawn from U(-degrees, degrees)", low=0.0,
                          high=180.0),
    "aug_shear": HParam(10.0, "affine: x-shear (degrees) drawn from U(-shear, shear)", low=0.0,
                        high=89.0),
    "aug_scale_min": HParam(0.9, "affine: scale drawn from U(scale_min, scale_max)", low=0.0,
                            low_open=True),
    "aug_scale_max": HParam(1.1, "affine: see aug_scale_min (>= aug_scale_min)", low=0.0,
                            low_open=True),
}


def affine_params(n: int, cfg: TrainConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Rotation (degrees), x-shear (degrees) and scale for ``n`` images, from one generator."""
    u = torch.rand(3, n, generator=gen, dtype=torch.float64)
    return {"angle": (2 * u[0] - 1) * cfg.aug_degrees,
            "shear": (2 * u[1] - 1) * cfg.aug_shear,
            "scale": cfg.aug_scale_min + u[2] * (cfg.aug_scale_max - cfg.aug_scale_min)}


def inverse_affine_theta(angle: torch.Tensor, shear: torch.Tensor, scale: torch.Tensor,
                         height: int, width: int) -> torch.Tensor:
    """``affine_grid``'s theta (N, 2, 3): torchvision's inverse matrix, in normalised coords."""
    rot = torch.deg2rad(angle)
    sx = torch.deg2rad(shear)
    a, b = torch.cos(rot), -torch.cos(rot) * torch.tan(sx) - torch.sin(rot)
    c, d = torch.sin(rot), -torch.sin(rot) * torch.tan(sx) + torch.cos(rot)
    inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    inv = inv / scale[:, None, None]
    # pixel offsets from the centre -> normalised [-1, 1] coordinates (align_corners=False)
    to_norm = torch.tensor([[2.0 / width, 0.0], [0.0, 2.0 / height]], dtype=inv.dtype)
    from_norm = torch.tensor([[width / 2.0, 0.0], [0.0, height / 2.0]], dtype=inv.dtype)
    theta = to_norm @ inv @ from_norm
    return torch.cat([theta, torch.zeros(len(theta), 2, 1, dtype=theta.dtype)], dim=2)


def random_affine(x: torch.Tensor, cfg: TrainConfig,
                  generators: list[torch.Generator]) -> torch.Tensor:
    """Warp (K, N, C, H, W) images: member k's N images draw from ``generators[k]``."""
    k, n, channels, height, width = x.shape
    params = [affine_params(n, cfg, g) for g in generators]
    theta = inverse_affine_theta(*(torch.cat([p[name] for p in params])
                                   for name in ("angle", "shear", "scale")), height, width)
    flat = x.reshape(k * n, channels, height, width)
    grid = F.affine_grid(theta.to(torch.float32).to(x.device), list(flat.shape),
                         align_corners=False)
    out = F.grid_sample(flat.float(), grid, mode="nearest", padding_mode="zeros",
                        align_corners=False)
    return out.to(x.dtype).reshape(x.shape)


def describe(cfg: TrainConfig) -> str:
    """One line for the report: what augmentation a run used."""
    if cfg.augment == "none":
        return "none"
    return (f"affine per image: rotation U(-{cfg.aug_degrees:g}, {cfg.aug_degrees:g}) deg, "
            f"shear U(-{cfg.aug_shear:g}, {cfg.aug_shear:g}) deg, scale "
            f"U({cfg.aug_scale_min:g}, {cfg.aug_scale_max:g})")


__all__ = ["affine_params", "describe", "inverse_affine_theta", "random_affine"]
