"""The IRM paper appendix's minimal IRMv1 loop, with closed-form gradients.

The appendix (related-work.md, "The minimal IRM implementation")::

    phi = Parameter(ones(2d, 1)); dummy_w = Parameter([1.0]); opt = SGD([phi], lr=1e-3)
    for iteration in range(50000):
        for x_e, y_e in environments:
            p = randperm(len(x_e))
            error_e = mse(x_e[p] @ phi * dummy_w, y_e[p])       # per sample
            penalty += grad(error_e[0::2].mean(), dummy_w) * grad(error_e[1::2].mean(), dummy_w)
            error += error_e.mean()
        (1e-5 * error + penalty).backward(); opt.step()

Here the same loop in float64 without autograd. With f = x . phi, half A (even positions of the
permutation) of size m, ``d/dw mean_A (w f - y)^2 at w = 1`` is
``g_A = 2/m (phi' S_A phi - phi' b_A)`` with S_A = sum_A x x', b_A = sum_A x y, and its gradient
in phi is ``2/m (2 S_A phi - b_A)``; half B is the rest (S - S_A). The half sums of many
iterations come from one matrix product (a 0/1 mask of the even positions times the per-sample
products), so each iteration only does 2d x 2d algebra. The permutations are drawn with
``torch.randperm`` from a generator seeded with ``seed``, iteration by iteration and environment
by environment, exactly as the appendix draws them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.errors import ConfigError, as_number, check_range


@dataclass
class AppendixResult:
    """phi after the last update, each environment's mean squared error there, the history."""

    phi: list[float]
    errors: list[float]
    penalty: float  # the last iteration's penalty (before its update), summed over environments
    iterations: int
    seconds: float
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"phi": self.phi, "errors": self.errors, "penalty": self.penalty,
                "iterations": self.iterations, "seconds": self.seconds, "history": self.history}


def _as_pairs(envs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pairs = []
    for env in envs:
        x, y = (env.x, env.y) if hasattr(env, "x") else env
        x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
        if x.dim() != 2 or y.shape != x.shape[:1] or len(y) < 2:
            raise ConfigError(f"each environment needs x (n, D) and y (n,) with n >= 2; got "
                              f"{tuple(x.shape)} and {tuple(y.shape)}")
        pairs.append((x, y.reshape(-1)))
    if not pairs or len({x.shape[1] for x, _ in pairs}) != 1:
        raise ConfigError("solve_appendix needs at least one environment, all with the same "
                          "number of inputs")
    return pairs


def solve_appendix(envs: Sequence, iterations: int = 50000, lr: float = 1e-3,
                   error_weight: float = 1e-5, seed: int = 0, record_every: int = 1000,
                   chunk: int = 500) -> AppendixResult:
    """Run the appendix's loop on ``envs`` (Environments, or (x, y) pairs); returns phi & errors.

    phi starts at ones, the dummy w is 1.0 and never trained, SGD on phi only; the objective is
    ``error_weight * sum_e error_e + sum_e penalty_e``.
    """
    iterations = as_number("iterations", iterations, int)
    check_range("iterations", iterations, 1)
    check_range("lr", as_number("lr", lr), 0.0, low_open=True)
    pairs = _as_pairs(envs)
    start_time = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    dim, n_envs = pairs[0][0].shape[1], len(pairs)
    rows, cols = np.triu_indices(dim)
    n_tri = len(rows)
    # per sample: the upper triangle of x x' and x y; their half sums give S_A and b_A
    per_sample = [torch.cat([x[:, rows] * x[:, cols], x * y[:, None]], 1) for x, y in pairs]
    sizes = [len(y) for _, y in pairs]
    total_xx = np.stack([(x.T @ x).numpy() for x, _ in pairs])  # (E, D, D)
    total_xy = np.stack([(x.T @ y).numpy() for x, y in pairs])  # (E, D)
    total_yy = np.array([float(y @ y) for _, y in pairs])
    n = np.array(sizes, dtype=np.float64)
    coef_a = 2 / np.ceil(n / 2)  # 2 / |A|: A = the even positions of the permutation
    coef_b = 2 / np.floor(n / 2)
    coef_err = (error_weight * 2 / n)[:, None]
    masks = [torch.zeros(min(chunk, iterations), size, dtype=torch.float64) for size in sizes]
    perms = [torch.empty(min(chunk, iterations), size, dtype=torch.int64) for size in sizes]
    phi = np.ones(dim)
    history: list[dict] = []
    penalty = 0.0

    def errors_at(phi: np.ndarray) -> list[float]:
        return ((total_xx @ phi @ phi - 2 * total_xy @ phi + total_yy) / n).tolist()

    done = 0
    while done < iterations:
        steps = min(chunk, iterations - done)
        for t in range(steps):  # the appendix's order: per iteration, per environment
            for e, size in enumerate(sizes):
                torch.randperm(size, generator=gen, out=perms[e][t])
        half_xx = np.empty((steps, n_envs, dim, dim))
        half_xy = np.empty((steps, n_envs, dim))
        for e in range(n_envs):
            mask = masks[e][:steps]
            mask.zero_()
            mask.scatter_(1, perms[e][:steps, 0::2], 1.0)
            sums = (mask @ per_sample[e]).numpy()
            half_xx[:, e, rows, cols] = sums[:, :n_tri]
            half_xx[:, e, cols, rows] = sums[:, :n_tri]
            half_xy[:, e] = sums[:, n_tri:]
        for t in range(steps):
            xx_a, xy_a = half_xx[t], half_xy[t]
            v_all = total_xx @ phi  # (E, D)
            v_a = xx_a @ phi
            v_b = v_all - v_a
            q_all = total_xy @ phi
            q_a = xy_a @ phi
            g_a = coef_a * (v_a @ phi - q_a)  # (E,): d/dw of each half's mean loss
            g_b = coef_b * (v_b @ phi - (q_all - q_a))
            grad = ((g_b * coef_a)[:, None] * (2 * v_a - xy_a)
                    + (g_a * coef_b)[:, None] * (2 * v_b - (total_xy - xy_a))
                    + coef_err * (v_all - total_xy)).sum(0)
            penalty = float(g_a @ g_b)
            phi = phi - lr * grad
            step = done + t + 1
            if record_every and (step % record_every == 0 or step == iterations):
                history.append({"iteration": step, "phi": phi.tolist(),
                                "errors": errors_at(phi), "penalty": penalty})
        done += steps
    return AppendixResult(phi.tolist(), errors_at(phi), penalty, iterations,
                          time.perf_counter() - start_time, history)
