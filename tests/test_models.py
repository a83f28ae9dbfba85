"""Models: the original MLP's shape and init, grayscale invariance, LeNet shapes, stacking."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.models import MODELS, VmapStack, build_member, build_stacked, squared_weight_norm


def test_mlp_is_xavier_initialised_with_zero_biases_and_seeded():
    a, b = (build_member("mlp", (2, 14, 14), 390, seed=3) for _ in range(2))
    c = build_member("mlp", (2, 14, 14), 390, seed=4)
    assert a.lin1.weight.shape == (390, 392)
    assert a.lin3.weight.shape == (1, 390)
    bound = (6 / (392 + 390)) ** 0.5  # Xavier-uniform
    assert a.lin1.weight.abs().max().item() <= bound
    assert a.lin1.weight.abs().max().item() > 0.9 * bound
    assert all(lin.bias.abs().sum().item() == 0 for lin in (a.lin1, a.lin2, a.lin3))
    assert torch.equal(a.lin1.weight, b.lin1.weight)
    assert not torch.equal(a.lin1.weight, c.lin1.weight)


def test_grayscale_model_cannot_see_colour():
    model = build_member("mlp_gray", (2, 14, 14), 32, seed=0)
    x = torch.rand(5, 2, 14, 14)
    red = torch.stack([x[:, 0] + x[:, 1], torch.zeros_like(x[:, 0])], 1)
    green = red.flip(1)
    torch.testing.assert_close(model(red)[0], model(green)[0])
    assert model.lin1.weight.shape[1] == 196


@pytest.mark.parametrize("shape", [(2, 14, 14), (2, 28, 28)])
def test_lenet_adapts_to_the_input_shape(shape):
    model = build_member("lenet", shape, 84, seed=0)
    logits, feats = model(torch.rand(4, *shape))
    assert logits.shape == (4,)
    assert feats.shape == (4, 84)
    kinds = [type(m).__name__ for m in model.children()]
    assert kinds == ["Conv2d", "Conv2d", "Conv2d", "Linear", "Linear"]


# ResNet-18's 20 layers (and vmap's grouped convolutions) round a little more
TOLERANCE = {"resnet18": {"rtol": 1e-4, "atol": 1e-5}}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_stacked_model_member_equals_the_single_model(name):
    seeds = [5, 6, 7]
    tol = TOLERANCE.get(name, {"rtol": 1e-5, "atol": 1e-6})
    stacked = build_stacked(name, (2, 14, 14), 16, seeds)
    x = torch.rand(6, 2, 14, 14)
    logits, feats = stacked(x)
    assert logits.shape == (3, 6)
    for k, seed in enumerate(seeds):
        single_logits, single_feats = build_member(name, (2, 14, 14), 16, seed)(x)
        torch.testing.assert_close(logits[k], single_logits, **tol)
        torch.testing.assert_close(feats[k], single_feats, **tol)
    per_member = stacked(x.unsqueeze(0).expand(3, *x.shape).clone(), shared=False)[0]
    torch.testing.assert_close(per_member, logits, **tol)


def test_weight_norm_sums_every_parameter_biases_included():
    stacked = build_stacked("mlp", (2, 14, 14), 8, [0, 1])
    with torch.no_grad():
        for p in stacked.member_parameters():
            p.fill_(1.0)
    n_params = 392 * 8 + 8 + 8 * 8 + 8 + 8 + 1
    assert squared_weight_norm(stacked).tolist() == [n_params, n_params]


def test_unknown_model_and_formulation_list_the_valid_names():
    with pytest.raises(ConfigError, match="lenet"):
        build_member("resnet", (2, 14, 14), 8, 0)
    with pytest.raises(ConfigError, match="bmm"):
        build_stacked("mlp", (2, 14, 14), 8, [0], formulation="einsum")


# ---------------------------------------------------------------- ResNet-18


@pytest.mark.parametrize("shape", [(2, 14, 14), (2, 28, 28), (3, 64, 32)])
def test_resnet18_adapts_to_the_input_and_has_no_buffers(shape):
    model = build_member("resnet18", shape, 0, seed=0)
    logits, feats = model(torch.rand(3, *shape))
    assert logits.shape == (3,) and feats.shape == (3, 512)
    assert model.net.conv1.in_channels == shape[0]
    assert model.net.fc.out_features == 1
    assert not list(model.buffers())  # GroupNorm, not BatchNorm: nothing to track per member
    norms = {type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__}
    assert norms == {"GroupNorm"}
    assert all(m.num_groups == 32 for m in model.modules() if isinstance(m, torch.nn.GroupNorm))


@pytest.mark.parametrize("shape", [(2, 14, 14), (2, 28, 28), (3, 64, 32)])
def test_stacked_resnet18_member_equals_the_single_model(shape):
    seeds = [3, 8]
    stacked = build_stacked("resnet18", shape, 0, seeds)
    x = torch.rand(5, *shape)
    logits, feats = stacked(x)
    assert logits.shape == (2, 5) and feats.shape == (2, 5, 512)
    for k, seed in enumerate(seeds):
        single_logits, single_feats = build_member("resnet18", shape, 0, seed)(x)
        torch.testing.assert_close(logits[k], single_logits, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(feats[k], single_feats, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(logits[0], logits[1])


def test_resnet18_trains_in_the_trainer(tiny_envs):
    from pipeline.config import make_config
    from pipeline.training import train

    cfg = make_config(None, model="resnet18", method="irm", penalty_weight=10.0, steps=2,
                      batch_size=8, eval_every=1, lr=1e-3)
    result = train(cfg, [0, 1], envset=tiny_envs)
    assert [m["status"] for m in result.members] == ["ok", "ok"]
    assert len(result.curves["nll"][0]) == 2
    assert result.config["model"] == "resnet18"


# ---------------------------------------------------------------- DomainBed's MNIST_CNN


def test_domainbed_cnn_has_mnist_cnns_layers_and_parameter_count():
    model = build_member("domainbed_cnn", (2, 28, 28), 0, seed=0)
    logits, feats = model(torch.rand(3, 2, 28, 28))
    assert logits.shape == (3,)
    assert feats.shape == (3, 128)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (2, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert [(n.num_groups, n.num_channels) for n in norms] == [(8, 64)] + [(8, 128)] * 3
    # MNIST_CNN with 2 input channels: 371,136 parameters; the 1-logit head adds 129
    convs = (2 * 9 * 64 + 64) + (64 * 9 * 128 + 128) + 2 * (128 * 9 * 128 + 128)
    featurizer = convs + 2 * (64 + 3 * 128)  # GroupNorm's scale and shift
    assert sum(p.numel() for p in model.parameters()) == featurizer + 129


def test_domainbed_cnn_trains_on_minibatches_in_the_trainer(tiny_envs):
    from pipeline.config import make_config
    from pipeline.training import train

    cfg = make_config(None, model="domainbed_cnn", method="irm", penalty_weight=10.0, steps=3,
                      batch_size=8, eval_every=1, jump_rule="reset_adam", anneal_iters=1)
    result = train(cfg, [0, 1], envset=tiny_envs)
    assert [m["status"] for m in result.members] == ["ok", "ok"]
    assert len(result.curves["nll"][0]) == 3


@pytest.mark.parametrize("draw", ["shared", "per_seed"])  # inputs (N, ...) and (K, N, ...)
def test_conv_models_evaluate_in_chunks_with_the_same_accuracy(tiny_envs_dir, monkeypatch, draw):
    """A chunked evaluation (bounded memory) gives what the whole environment at once gives."""
    import dataclasses

    import pipeline.training as training
    from pipeline.config import make_config

    cfg = make_config(None, dataset="colored_fashion_mnist", envs_dir=str(tiny_envs_dir),
                      model="lenet", method="erm", steps=2, batch_size=16, eval_every=100,
                      lr=1e-2, data_draw=draw)
    monkeypatch.setitem(MODELS, "lenet", dataclasses.replace(MODELS["lenet"], eval_chunk=None))
    whole = training.train(cfg, [0, 1])
    monkeypatch.setitem(MODELS, "lenet", dataclasses.replace(MODELS["lenet"], eval_chunk=700))
    sizes = []  # examples per forward, along the example axis of shared or per-member inputs
    forward = VmapStack.forward

    def spy(self, x, shared=True):
        sizes.append(x.shape[0 if shared else 1])
        return forward(self, x, shared)

    monkeypatch.setattr(VmapStack, "forward", spy)
    chunked = training.train(cfg, [0, 1])  # the test environments' parts: 700, ..., short
    assert max(sizes) == 700 and sizes.count(700) > 10
    assert "test_acc" in whole.metrics and "test_acc" in whole.curves
    assert chunked.metrics == whole.metrics
    assert chunked.curves == whole.curves
