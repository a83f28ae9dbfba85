"""Per-member parameters a method owns (environment heads, statistics networks), initialised
from each member's seed alone so that member k of a batched run equals seed k run alone."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.seeds import derive_seed


def member_linear(seeds: tuple[int, ...], name: str, fan_in: int, fan_out: int,
                  device: torch.device, init: str = "linear") -> tuple[nn.Parameter, nn.Parameter]:
    """A stacked linear layer, weight (K, fan_out, fan_in) and bias (K, fan_out): member k's is
    ``nn.Linear(fan_in, fan_out)``'s default init (``init = "linear"``), or Xavier-uniform with
    zero bias (``"xavier"``, TensorFlow's dense default), drawn on the CPU under
    ``derive_seed(seed_k, name)``."""
    weights, biases = [], []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, name))
            layer = nn.Linear(fan_in, fan_out)
            if init == "xavier":
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        weights.append(layer.weight.detach())
        biases.append(layer.bias.detach())
    return (nn.Parameter(torch.stack(weights).to(device)),
            nn.Parameter(torch.stack(biases).to(device)))


def apply_linear(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(K, N, in) -> (K, N, out), each member its own layer."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
