"""A plain per-seed implementation written like IRM's ``main.py``: the baseline to check against.

One seed at a time, fp32, the IRMv1 penalty by double backprop through a dummy scale, and every
environment (the test one included) run through the forward pass and penalty at every step,
exactly as the original does. The batched trainer must match it (tests) and beat it (benchmarks).
"""

from __future__ import annotations

import time

import torch

from pipeline.config import TrainConfig
from pipeline.environments import EnvSet
from pipeline.models import build_member


def _mean_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, y)


def _mean_accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    preds = (logits > 0.0).float()
    return ((preds - y).abs() < 1e-2).float().mean()


def _penalty(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    scale = torch.tensor(1.0, device=logits.device).requires_grad_()
    loss = _mean_nll(logits * scale, y)
    grad = torch.autograd.grad(loss, [scale], create_graph=True)[0]
    return torch.sum(grad**2)


def train_plain(cfg: TrainConfig, seed: int, envset: EnvSet,
                    device: str | torch.device = "cpu",
                    record: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Train one seed of an IRM/ERM config the way ``main.py`` does; final accuracy per env.

    The environments are the training ones plus the first test one (the original's three).
    ``record``, if given, receives the per-step ``nll``, ``penalty`` and ``objective`` and the
    seconds spent in the training loop (``loop_seconds``, set-up excluded).
    """
    if cfg.method not in ("erm", "irm") or cfg.batch_size or cfg.schedule != "constant":
        raise ValueError("the reference covers IRM's main.py only: erm/irm, full batch, constant")
    mlp = build_member(cfg.model, envset.manifest["input_shape"], cfg.hidden_dim, seed).to(device)
    envs = [(e.name, envset.inputs(e).to(device), e.y.float().to(device))
            for e in [*envset.train, envset.test[0]]]
    train_names = [e.name for e in envset.train]
    optimizer = torch.optim.Adam(mlp.parameters(), lr=cfg.lr)
    start = time.perf_counter()
    for step in range(cfg.steps):
        results = {}
        for name, x, y in envs:
            logits = mlp(x)[0]
            results[name] = (_mean_nll(logits, y), _mean_accuracy(logits, y), _penalty(logits, y))
        train_nll = torch.stack([results[n][0] for n in train_names]).mean()
        train_penalty = torch.stack([results[n][2] for n in train_names]).mean()
        weight_norm = torch.tensor(0.0, device=device)
        for w in mlp.parameters():
            weight_norm += w.norm().pow(2)
        loss = train_nll.clone()
        loss += cfg.l2_weight * weight_norm
        penalty_weight = (cfg.penalty_weight if step >= cfg.anneal_iters
                          else cfg.weight_before_anneal)
        if cfg.method == "irm":
            loss += penalty_weight * train_penalty
        if penalty_weight > 1.0 and cfg.method == "irm":
            loss /= penalty_weight
        if record is not None:
            for key, value in (("nll", train_nll), ("penalty", train_penalty), ("objective", loss)):
                record.setdefault(key, []).append(value.item())
        if step == cfg.steps - 1:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if next(mlp.parameters()).is_cuda:
        torch.cuda.synchronize()
    if record is not None:
        record["loop_seconds"] = [time.perf_counter() - start]
    out = {f"{name}_acc": acc.item() for name, (_, acc, _) in results.items()}
    out["train_acc"] = sum(out[f"{n}_acc"] for n in train_names) / len(train_names)
    return out
