"""Models, one plain ``nn.Module`` each, and their K-member stacked forms for batched seeds.

A stacked model holds the weights of K independently initialised members (member k is built
exactly as a single model with seed ``seeds[k]``) and evaluates all of them in one forward pass.
Members never mix: the loss is a sum of per-member terms, and Adam is elementwise, so member k
trains exactly as it would alone, up to the rounding of batched versus plain matmuls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from pipeline.errors import ConfigError, lookup

FORMULATIONS = ("auto", "bmm", "linear")


class MLP(nn.Module):
    """The MLP of IRM's ``main.py``: input -> H -> H -> 1, ReLU, Xavier-uniform, zero biases.

    ``grayscale=True`` sums the two colour channels first (``--grayscale_model``), so the model
    cannot see colour by construction.
    """

    def __init__(self, input_shape: Sequence[int], hidden_dim: int, grayscale: bool = False):
        super().__init__()
        self.input_shape, self.grayscale = tuple(input_shape), grayscale
        in_features = math.prod(input_shape[1:] if grayscale else input_shape)
        self.lin1 = nn.Linear(in_features, hidden_dim)
        self.lin2 = nn.Linear(hidden_dim, hidden_dim)
        self.lin3 = nn.Linear(hidden_dim, 1)
        for lin in (self.lin1, self.lin2, self.lin3):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[: x.dim() - len(self.input_shape)]
        if self.grayscale:
            return x.reshape(*lead, self.input_shape[0], -1).sum(dim=-2)
        return x.reshape(*lead, -1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # in place, as main.py's nn.ReLU(True): no second (N, H) tensor per layer
        h = torch.relu_(self.lin1(self.flatten(x)))
        return torch.relu_(self.lin2(h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N,) and the penultimate representation (N, H)."""
        feats = self.features(x)
        return self.lin3(feats).squeeze(-1), feats


class LeNet(nn.Module):
    """LeNet-style CNN: three conv, two pooling, two fully connected layers.

    Adapted to the input: convs keep the size (padding 2), each pooling halves it, and the third
    conv's kernel covers what is left, so 14x14 and 28x28 inputs both end in a 120-vector.
    """

    def __init__(self, input_shape: Sequence[int], hidden_dim: int = 84):
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=2)
        self.conv3 = nn.Conv2d(16, 120, (height // 4, width // 4))
        self.fc1 = nn.Linear(120, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 1)
        self.input_shape = tuple(input_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.conv3(h)).flatten(1)
        feats = F.relu(self.fc1(h))
        return self.fc2(feats).squeeze(-1), feats


class ResNet18(nn.Module):
    """torchvision's ResNet-18 (``weights=None``) with GroupNorm and one logit.

    Adapted to the data: the first conv takes the dataset's channel count (7x7, stride 2, as in
    torchvision), and the head is ``Linear(512, 1)``; ``forward`` returns the logit and the 512-d
    pooled representation. Recorded deviation: BatchNorm is replaced by ``GroupNorm(32, C)``
    (``norm_layer``), because BatchNorm's running statistics are buffers, which the stacked
    (``vmap``) form cannot update per member; GroupNorm also makes an example's output
    independent of the rest of its batch. ``hidden_dim`` is ignored. No pretrained weights
    (IRMBed starts from ImageNet weights and resizes its inputs to 224x224).
    """

    def __init__(self, input_shape: Sequence[int], groups: int = 32):
        super().__init__()
        from torchvision.models import resnet18

        self.input_shape = tuple(input_shape)
        net = resnet18(weights=None, num_classes=1,
                       norm_layer=lambda channels: nn.GroupNorm(groups, channels))
        if input_shape[0] != 3:
            net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3,
                                  bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.net = net  # net.fc is Linear(512, 1) (num_classes=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        h = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        h = n.layer4(n.layer3(n.layer2(n.layer1(h))))
        feats = torch.flatten(n.avgpool(h), 1)
        return n.fc(feats).squeeze(-1), feats


class DomainBedCNN(nn.Module):
    """DomainBed's ``MNIST_CNN`` featurizer and a linear head (its model for ColoredMNIST).

    facebookresearch/DomainBed@b93c22a ``domainbed/networks.py``: conv 3x3 to 64, conv 3x3
    stride 2 to 128, two more 3x3 convs at 128, each ReLU then ``GroupNorm(8, C)``, the mean over
    the spatial positions (128-d), then ``Classifier`` = ``Linear(128, num_classes)``. Recorded
    deviation: one logit (BCE) where DomainBed has two (cross-entropy). Softmax over two logits
    is the sigmoid of their difference, so both heads express the same functions and IRM's
    scale penalty is the same function of the logit difference; the optimiser sees 129 head
    parameters instead of 258. ``hidden_dim`` is ignored.
    """

    def __init__(self, input_shape: Sequence[int]):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, padding=1)
        self.conv2 = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(128, 128, 3, 1, padding=1)
        self.conv4 = nn.Conv2d(128, 128, 3, 1, padding=1)
        self.norms = nn.ModuleList([nn.GroupNorm(8, 64)] + [nn.GroupNorm(8, 128) for _ in range(3)])
        self.head = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for conv, norm in zip((self.conv1, self.conv2, self.conv3, self.conv4), self.norms,
                              strict=True):
            h = norm(F.relu(conv(h)))
        feats = h.mean(dim=(2, 3))
        return self.head(feats).squeeze(-1), feats


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[Sequence[int], int], nn.Module]
    stacked: Callable[[list[nn.Module], str], nn.Module]
    description: str
    # examples per member in one evaluation forward; None = the whole environment at once (the
    # MLP, as IRM's main.py). Convolutions keep ~0.5 MB of activations per example: DomainBed's
    # 23k-image environment took 15 GB in one forward.
    eval_chunk: int | None = None


def build_member(model: str, input_shape: Sequence[int], hidden_dim: int, seed: int) -> nn.Module:
    """One model initialised from ``seed`` alone (on the CPU, so CUDA runs start identically)."""
    spec = lookup(MODELS, model, "model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build(input_shape, hidden_dim)


def build_stacked(model: str, input_shape: Sequence[int], hidden_dim: int, seeds: Sequence[int],
                  formulation: str = "auto") -> nn.Module:
    """K members (one per seed) as one model: forward gives logits (K, N), feats (K, N, F)."""
    if formulation not in FORMULATIONS:
        raise ConfigError(f"formulation = {formulation!r} is unknown; valid choices: "
                          f"{', '.join(FORMULATIONS)}")
    if len(seeds) < 1:
        raise ConfigError("seeds: at least one seed is needed")
    members = [build_member(model, input_shape, hidden_dim, s) for s in seeds]
    return MODELS[model].stacked(members, formulation)


class StackedMLP(nn.Module):
    """K MLPs with stacked weights.

    ``bmm`` (the default) runs every layer as one batched ``baddbmm``; a shared input (full
    batch) is broadcast over the members without a copy. ``linear`` runs the first layer as one
    GEMM with the K weight matrices concatenated and the deeper layers as one ``F.linear`` per
    member (the plain GEMM kernels). Which is faster depends on the device and dtype; see
    benchmarks/bench_trainer.py.
    """

    def __init__(self, members: list[MLP], formulation: str = "auto"):
        super().__init__()
        first = members[0]
        self.input_shape, self.grayscale = first.input_shape, first.grayscale
        self.flatten = first.flatten
        self.formulation = formulation
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for name in ("lin1", "lin2", "lin3"):
            layers = [getattr(m, name) for m in members]
            self.weights.append(nn.Parameter(torch.stack([lin.weight.detach() for lin in layers])))
            self.biases.append(nn.Parameter(torch.stack([lin.bias.detach() for lin in layers])))

    @property
    def n_members(self) -> int:
        return self.weights[0].shape[0]

    def _use_bmm(self, x: torch.Tensor) -> bool:
        # The trainer resolves auto by timing both on the machine (pipeline.precision); a
        # model built directly with auto uses bmm, the natural batched kernel.
        return self.formulation in ("auto", "bmm")

    def _layer(self, h: torch.Tensor, i: int, use_bmm: bool) -> torch.Tensor:
        w, b = self.weights[i], self.biases[i]
        if use_bmm:
            return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        return torch.stack([F.linear(h[k], w[k], b[k]) for k in range(len(w))])

    def forward(self, x: torch.Tensor, shared: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` is (N, *input) shared by all members, or (K, N, *input) with ``shared=False``."""
        w1, b1 = self.weights[0], self.biases[0]
        k, hidden = w1.shape[0], w1.shape[1]
        x = self.flatten(x)
        use_bmm = self._use_bmm(x)
        if shared and use_bmm:  # the input broadcast over members: no copy, (K, N, H) out
            h = torch.baddbmm(b1.unsqueeze(1), x.unsqueeze(0).expand(k, *x.shape),
                              w1.transpose(1, 2))
        elif shared:  # one GEMM, (N, D) @ (D, K*H), then a transposed view
            h = F.linear(x, w1.reshape(k * hidden, -1), b1.reshape(-1))
            h = h.view(x.shape[0], k, hidden).transpose(0, 1)
        else:
            h = self._layer(x, 0, use_bmm)
        # in place: each pre-activation is a fresh (K, N, H) tensor that nothing else needs
        # (ReLU's backward reads its output), so this saves an allocation and a memory pass
        h = torch.relu_(h)
        feats = torch.relu_(self._layer(h, 1, use_bmm))
        return self._layer(feats, 2, use_bmm).squeeze(-1), feats

    def member_parameters(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]


class VmapStack(nn.Module):
    """Any model stacked with ``torch.func``: ``vmap`` over the members' parameters."""

    def __init__(self, members: list[nn.Module], formulation: str = "auto"):
        super().__init__()
        params, buffers = stack_module_state(members)
        if buffers:  # e.g. BatchNorm statistics: they would need per-member state updates
            raise ConfigError(f"models with buffers ({', '.join(buffers)}) cannot be stacked")
        self.names = list(params)
        self.stacked = nn.ParameterList([nn.Parameter(params[n]) for n in self.names])
        base = members[0]
        self.input_shape = base.input_shape
        self._base = [base.to("meta")]  # a list keeps it out of this module's parameters

    @property
    def n_members(self) -> int:
        return self.stacked[0].shape[0]

    def forward(self, x: torch.Tensor, shared: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        base = self._base[0]

        def one(params, xi):
            return functional_call(base, dict(zip(self.names, params, strict=True)), (xi,))

        return vmap(one, in_dims=(0, None if shared else 0))(tuple(self.stacked), x)

    def member_parameters(self) -> list[torch.Tensor]:
        return list(self.stacked)


CONV_EVAL_CHUNK = 1024

MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(lambda shape, h: MLP(shape, h), StackedMLP,
                     "IRM's MLP on the flattened two-channel image"),
    "mlp_gray": ModelSpec(lambda shape, h: MLP(shape, h, grayscale=True), StackedMLP,
                          "IRM's grayscale MLP: the colour channels are summed first"),
    "lenet": ModelSpec(lambda shape, h: LeNet(shape, h), VmapStack,
                       "LeNet-style CNN (3 conv, 2 pool, 2 fc); hidden_dim is the fc width",
                       eval_chunk=CONV_EVAL_CHUNK),
    "resnet18": ModelSpec(lambda shape, h: ResNet18(shape), VmapStack,
                          "torchvision ResNet-18, random init, first conv for the input's "
                          "channels, 1-logit head on the 512-d pooled features; GroupNorm(32) "
                          "instead of BatchNorm (no buffers, so it can be stacked); "
                          "hidden_dim unused", eval_chunk=CONV_EVAL_CHUNK),
    "domainbed_cnn": ModelSpec(lambda shape, h: DomainBedCNN(shape), VmapStack,
                               "DomainBed's MNIST_CNN (4 conv, GroupNorm(8), mean-pooled 128-d) "
                               "and a 1-logit linear head; hidden_dim unused",
                               eval_chunk=CONV_EVAL_CHUNK),
}


def squared_weight_norm(model: nn.Module) -> torch.Tensor:
    """Per-member sum of squared parameters, biases included (IRM's ``weight_norm``): (K,)."""
    total = None
    for p in model.member_parameters():
        term = p.pow(2).reshape(p.shape[0], -1).sum(1)
        total = term if total is None else total + term
    return total
