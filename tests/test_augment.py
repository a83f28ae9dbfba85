"""Affine augmentation: torchvision's transform, per image and per member, seeded."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from pipeline.augment import affine_params, inverse_affine_theta, random_affine
from pipeline.config import make_config
from pipeline.errors import ConfigError
from pipeline.training import Trainer, train


def test_each_image_equals_torchvisions_affine_with_the_same_parameters():
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(6, 2, 14, 14, generator=gen) * 255).round()
    params = affine_params(6, make_config(None, aug_degrees=30, aug_shear=15), gen)
    theta = inverse_affine_theta(params["angle"], params["shear"], params["scale"], 14, 14)
    grid = torch.nn.functional.affine_grid(theta.float(), list(images.shape),
                                           align_corners=False)
    ours = torch.nn.functional.grid_sample(images, grid, mode="nearest", align_corners=False)
    for i in range(6):
        reference = TF.affine(images[i], angle=params["angle"][i].item(), translate=[0, 0],
                              scale=params["scale"][i].item(),
                              shear=[params["shear"][i].item(), 0.0],
                              interpolation=InterpolationMode.NEAREST)
        assert torch.equal(ours[i], reference), i


def test_parameters_are_drawn_in_the_configured_ranges():
    cfg = make_config(None, aug_degrees=10, aug_shear=5, aug_scale_min=0.8, aug_scale_max=1.2)
    p = affine_params(2000, cfg, torch.Generator().manual_seed(1))
    assert p["angle"].abs().max() <= 10 and p["angle"].abs().max() > 9
    assert p["shear"].abs().max() <= 5
    assert 0.8 <= p["scale"].min() and p["scale"].max() <= 1.2


def test_members_get_their_own_transforms_from_their_own_generators():
    x = torch.rand(1, 4, 2, 14, 14).expand(2, 4, 2, 14, 14)
    cfg = make_config(None, augment="affine")
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    out = random_affine(x, cfg, gens)
    assert out.shape == x.shape
    assert not torch.equal(out[0], out[1])
    again = random_affine(x, cfg, [torch.Generator().manual_seed(s) for s in (0, 1)])
    assert torch.equal(out, again)


def test_identity_parameters_leave_images_unchanged():
    x = torch.rand(1, 3, 2, 14, 14)
    cfg = make_config(None, augment="affine", aug_degrees=0, aug_shear=0, aug_scale_min=1.0,
                      aug_scale_max=1.0)
    assert torch.equal(random_affine(x, cfg, [torch.Generator().manual_seed(0)]), x)


def test_lenet_with_augmentation_trains_and_each_member_sees_other_images(tiny_envs):
    cfg = make_config(None, model="lenet", augment="affine", steps=3, hidden_dim=16,
                      eval_every=2)
    trainer = Trainer(cfg, [0, 1], envset=tiny_envs)
    batch = trainer._forward_train(0)
    assert not batch.shared_inputs and batch.inputs[0].shape[0] == 2
    assert not torch.equal(batch.inputs[0][0], batch.inputs[0][1])
    result = train(cfg, [0, 1], envset=tiny_envs)
    assert all(m["status"] == "ok" for m in result.members)
    assert result.config["augment"] == "affine"


@pytest.mark.parametrize("key,value", [("aug_degrees", -1.0), ("aug_shear", 95.0),
                                       ("aug_scale_min", 0.0), ("augment", "mixup")])
def test_bad_augmentation_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        make_config(None, **{key: value})
