"""The IRM paper appendix's two-environment linear example (the "minimal IRM implementation").

``example_1(env)``: ``x = randn(n, d) * env``, ``y = x + randn(n, d) * env``,
``z = y + randn(n, d)``; inputs ``cat(x, z)``, target ``y.sum(1)``; env = 0.1 and 1.0,
n = 10000, d = 2. The draws come from one ``torch.Generator`` seeded with the data seed, in the
appendix's order (environment by environment: x, then y's noise, then z's), in float32 like the
appendix, so ``torch.manual_seed(seed)`` before the appendix code gives the same numbers.
Solve it with :func:`pipeline.sem.appendix.solve_appendix`.
"""

from __future__ import annotations

import torch

from pipeline.environments.store import Environment
from pipeline.errors import ConfigError, as_number, check_range

SEM_APPENDIX_DEFAULTS = {"n_samples": 10000, "dim": 2, "env_scales": [0.1, 1.0]}


def example(n: int, d: int, scale: float, gen: torch.Generator) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    """The appendix's ``example_1(n, d, env)``: inputs cat(x, z) (n, 2d), target y.sum(1) (n,)."""
    x = torch.randn(n, d, generator=gen) * scale
    y = x + torch.randn(n, d, generator=gen) * scale
    z = y + torch.randn(n, d, generator=gen)
    return torch.cat((x, z), 1), y.sum(1)


def build_sem_appendix(params: dict, seed: int) -> tuple[list[Environment], dict]:
    n = as_number("n_samples", params["n_samples"], int)
    check_range("n_samples", n, 2)  # the penalty needs two halves
    d = as_number("dim", params["dim"], int)
    check_range("dim", d, 1)
    scales = params["env_scales"]
    if not isinstance(scales, list | tuple) or len(scales) < 2:
        raise ConfigError(f"env_scales = {scales!r} must list at least two environment scales, "
                          "e.g. the appendix's [0.1, 1.0]")
    scales = [as_number(f"env_scales[{i}]", s) for i, s in enumerate(scales)]
    for i, s in enumerate(scales):
        check_range(f"env_scales[{i}]", s, 0.0, low_open=True)
    params.update({"n_samples": n, "dim": d, "env_scales": scales})
    gen = torch.Generator().manual_seed(seed)
    envs = []
    for i, scale in enumerate(scales):
        x, y = example(n, d, scale, gen)
        envs.append(Environment(f"train{i}", "train", x, y, {"env_scale": scale}))
    notes = [f"x = randn(n, {d}) * env, y = x + randn(n, {d}) * env, z = y + randn(n, {d}); "
             f"inputs cat(x, z), target y.sum(1); env scales {scales}, n = {n}",
             f"float32 draws from torch.Generator().manual_seed({seed}), environment by "
             "environment in the appendix's order",
             "invariant solution: weight 1 on every x input, 0 on every z input ('solution')"]
    info = {"task": "regression", "source": "synthetic", "reduced": False, "notes": notes,
            "input_shape": [2 * d], "pixel_scale": None,
            "solution": [1.0] * d + [0.0] * d}
    return envs, info
