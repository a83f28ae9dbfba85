"""The IRM paper's synthetic linear SEM (``code/experiment_synthetic/sem.py``, reference section 2).

Setup codes: F/P = fully/partially observed (hidden confounder), O/E = homo/heteroskedastic noise
on Y, U/S = unscrambled/scrambled inputs. The true causal coefficients are saved with the data.
"""

from __future__ import annotations

import torch

from pipeline.environments.store import Environment
from pipeline.errors import ConfigError, as_number, check_range

SEM_SETUPS = ("FOU", "FOS", "FEU", "FES", "POU", "POS", "PEU", "PES")
SEM_DEFAULTS = {"setup": "FOU", "dim": 10, "n_samples": 1000, "env_sigmas": [0.2, 2.0, 5.0],
                "ones": True}


class ChainEquationModel:
    """x -> y -> z with an optional hidden confounder h, as in the IRM repository."""

    def __init__(self, dim: int, ones: bool, scramble: bool, hetero: bool, hidden: bool,
                 gen: torch.Generator):
        self.hetero, self.d, self.gen = hetero, dim // 2, gen
        d = self.d

        def randn(*shape):
            return torch.randn(*shape, generator=gen)

        self.wxy = torch.eye(d) if ones else randn(d, d) / dim
        self.wyz = torch.eye(d) if ones else randn(d, d) / dim
        self.scramble = torch.linalg.qr(randn(dim, dim))[0] if scramble else torch.eye(dim)
        if hidden:
            self.whx, self.why, self.whz = randn(d, d) / dim, randn(d, d) / dim, randn(d, d) / dim
        else:
            self.whx, self.why, self.whz = torch.eye(d), torch.zeros(d, d), torch.zeros(d, d)

    def solution(self) -> torch.Tensor:
        """True coefficients on the unscrambled (x, z) inputs: W_xy's row sums, then zeros."""
        return torch.cat((self.wxy.sum(1), torch.zeros(self.d))).view(-1, 1)

    def sample(self, n: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        def noise():
            return torch.randn(n, self.d, generator=self.gen)

        h = noise() * sigma
        x = h @ self.whx + noise() * sigma
        if self.hetero:
            y = x @ self.wxy + h @ self.why + noise() * sigma
            z = y @ self.wyz + h @ self.whz + noise()
        else:
            y = x @ self.wxy + h @ self.why + noise()
            z = y @ self.wyz + h @ self.whz + noise() * sigma
        return torch.cat((x, z), 1) @ self.scramble, y.sum(1)


def parse_setup(setup: str) -> dict[str, bool]:
    if setup not in SEM_SETUPS:
        raise ConfigError(f"setup = {setup!r} is unknown; valid choices: {', '.join(SEM_SETUPS)}")
    return {"hidden": setup[0] == "P", "hetero": setup[1] == "E", "scramble": setup[2] == "S"}


def build_sem(params: dict, seed: int) -> tuple[list[Environment], dict]:
    flags = parse_setup(params["setup"])
    dim = as_number("dim", params["dim"], int)
    n = as_number("n_samples", params["n_samples"], int)
    if dim < 2 or dim % 2:
        raise ConfigError(f"dim = {dim} must be an even integer >= 2 (x and z are dim/2 each)")
    check_range("n_samples", n, 1)
    sigmas = [as_number(f"env_sigmas[{i}]", s) for i, s in enumerate(params["env_sigmas"])]
    if len(sigmas) < 2:
        raise ConfigError(f"env_sigmas needs at least two environments (got {sigmas})")
    for i, s in enumerate(sigmas):
        check_range(f"env_sigmas[{i}]", s, 0.0, low_open=True)
    gen = torch.Generator().manual_seed(seed)
    sem = ChainEquationModel(dim, bool(params["ones"]), gen=gen, **flags)
    envs = []
    for i, sigma in enumerate(sigmas):
        x, y = sem.sample(n, sigma)
        envs.append(Environment(f"env{i}", "train", x, y, {"sigma": sigma}))
    envs.append(Environment("solution", "meta", sem.solution().view(1, -1), torch.zeros(1),
                            {"what": "true causal coefficients on unscrambled (x, z)"},
                            {"scramble": sem.scramble}))
    info = {"task": "regression", "source": "synthetic", "reduced": False,
            "notes": [f"setup {params['setup']}: {flags}"],
            "input_shape": [dim], "pixel_scale": None}
    return envs, info
