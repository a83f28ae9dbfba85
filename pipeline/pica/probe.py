"""A linear probe: L2-regularised logistic regression fitted by L-BFGS in float64 (CPU),
deterministic, on features standardised with the training examples' mean and std."""

from __future__ import annotations

import numpy as np
import torch


def fit_probe(x: np.ndarray, y: np.ndarray, l2: float = 1e-4, iterations: int = 200):
    """(weights, bias, mean, std, gradient norm at the end) of ``min mean BCE(x w + b, y) +
    l2 |w|^2`` on standardised x."""
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    xs = torch.from_numpy((x - mean) / std)
    ys = torch.from_numpy(y.astype(np.float64))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iterations, tolerance_grad=1e-10,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, ys) \
            + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    closure()  # the gradient at the solution: recorded, so an unconverged fit shows
    grad_norm = float(torch.cat([w.grad, b.grad.reshape(1)]).norm())
    return w.detach().numpy(), float(b.detach()), mean, std, grad_norm


def probe_accuracy(probe, x: np.ndarray, y: np.ndarray) -> float:
    w, b, mean, std, _ = probe
    return float((((x - mean) / std @ w + b > 0) == (y > 0.5)).mean())
