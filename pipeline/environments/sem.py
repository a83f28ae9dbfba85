"""The IRM paper's synthetic linear SEM (InvariantRiskMinimization ``experiment_synthetic/sem.py``).

Upstream: facebookresearch/InvariantRiskMinimization@fc185d0, ``code/experiment_synthetic/sem.py``.

Setup codes: F/P = fully/partially observed (hidden confounder), O/E = homo/heteroskedastic noise
on Y, U/S = unscrambled/scrambled inputs. One dataset holds several setups, each with ``reps``
independent repetitions stacked along a leading axis; the true coefficients are saved with them.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.environments.store import Environment
from pipeline.errors import ConfigError, as_number, check_range

SEM_SETUPS = ("FOU", "FOS", "FEU", "FES", "POU", "POS", "PEU", "PES")
SEM_DEFAULTS = {"setups": list(SEM_SETUPS), "reps": 1, "dim": 10, "n_samples": 1000,
                "env_sigmas": [0.2, 2.0, 5.0], "ones": True}


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
        raise ConfigError(f"setups: {setup!r} is unknown; valid choices: {', '.join(SEM_SETUPS)}")
    return {"hidden": setup[0] == "P", "hetero": setup[1] == "E", "scramble": setup[2] == "S"}


def parse_setups(setups) -> list[str]:
    """The requested setup codes, in order: a non-empty list of distinct known codes."""
    if isinstance(setups, str) or not isinstance(setups, list | tuple):
        raise ConfigError(f"setups = {setups!r} must be a list of setup codes, e.g. ['FOU']; "
                          f"valid choices: {', '.join(SEM_SETUPS)}")
    if not setups:
        raise ConfigError(f"setups is empty; list at least one of {', '.join(SEM_SETUPS)}")
    for setup in setups:
        parse_setup(setup)
    repeated = sorted({s for s in setups if setups.count(s) > 1})
    if repeated:
        raise ConfigError(f"setups lists {', '.join(repeated)} more than once; each setup once")
    return list(setups)


def rep_seed(seed: int, setup: str, rep: int) -> int:
    """The seed of one (setup, rep): its own stream, so adding reps or setups never shifts it."""
    return int(np.random.SeedSequence([seed, SEM_SETUPS.index(setup), rep]).generate_state(1)[0])


def sample_rep(setup: str, rep: int, seed: int, dim: int, n: int, sigmas: list[float],
               ones: bool) -> tuple[ChainEquationModel, list[tuple[torch.Tensor, torch.Tensor]]]:
    """One repetition: a fresh SEM and each environment's (x, y), from the rep's own stream."""
    gen = torch.Generator().manual_seed(rep_seed(seed, setup, rep))
    sem = ChainEquationModel(dim, ones, gen=gen, **parse_setup(setup))
    return sem, [sem.sample(n, sigma) for sigma in sigmas]


def setup_envs(setup: str, reps: int, seed: int, dim: int, n: int, sigmas: list[float],
               ones: bool) -> list[Environment]:
    """One setup's environments with the reps stacked first: x (reps, n, dim), y (reps, n)."""
    samples = [sample_rep(setup, r, seed, dim, n, sigmas, ones) for r in range(reps)]
    envs = []
    for i, sigma in enumerate(sigmas):
        x = torch.stack([data[i][0] for _, data in samples])
        y = torch.stack([data[i][1] for _, data in samples])
        envs.append(Environment(f"{setup}_env{i}", "train", x, y,
                                {"setup": setup, "sigma": sigma}))
    solution = torch.stack([sem.solution().view(-1) for sem, _ in samples])
    scramble = torch.stack([sem.scramble for sem, _ in samples])
    envs.append(Environment(f"{setup}_solution", "meta", solution, torch.zeros(reps),
                            {"setup": setup,
                             "what": "true causal coefficients on unscrambled (x, z), per rep"},
                            {"scramble": scramble}))
    return envs


def build_sem(params: dict, seed: int) -> tuple[list[Environment], dict]:
    setups = parse_setups(params["setups"])
    reps = as_number("reps", params["reps"], int)
    check_range("reps", reps, 1)
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
    envs = []
    for setup in setups:
        envs += setup_envs(setup, reps, seed, dim, n, sigmas, bool(params["ones"]))
    notes = [f"setup {s}: {parse_setup(s)}" for s in setups]
    notes.append("each (setup, rep) draws its SEM and data from torch.Generator seeded with "
                 "numpy.random.SeedSequence([data_seed, SEM_SETUPS.index(setup), rep])"
                 ".generate_state(1)[0]; adding reps or setups never changes existing ones")
    notes.append("x is (reps, n_samples, dim), y is (reps, n_samples); a setup's solution env "
                 "holds the true coefficients (reps, dim) and extra 'scramble' (reps, dim, dim)")
    info = {"task": "regression", "source": "synthetic", "reduced": False, "notes": notes,
            "input_shape": [dim], "pixel_scale": None, "setups": setups, "reps": reps}
    return envs, info
