"""The SEM study: every method on every (setup, rep) of a ``sem`` dataset, and its summary.

One row per (setup, method, rep): the causal and non-causal coefficient errors of the method's
solution mapped back to the unscrambled basis, as upstream ``code/experiment_synthetic/main.py``
(facebookresearch/InvariantRiskMinimization@fc185d0) computes them. The summary is the mean and
population std over reps; setting it beside the published numbers is the report's job
(``pipeline.report.tables``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from pipeline.environments import EnvSet
from pipeline.environments.sem import SEM_SETUPS
from pipeline.errors import ConfigError, as_number, check_range, lookup
from pipeline.sem.estimators import (
    ICP_ALPHA,
    IRM_ITERATIONS,
    IRM_LR,
    IRM_REGS,
    SEM_METHODS,
    SemOptions,
    errors,
    stack_dataset,
)
from pipeline.terminal import pm

SEM_STUDY_DEFAULTS = {"methods": ["erm", "icp", "irm"], "irm_iterations": IRM_ITERATIONS,
                      "irm_lr": IRM_LR, "irm_regs": list(IRM_REGS), "icp_alpha": ICP_ALPHA}


def check_sem_arguments(methods, irm_iterations, irm_lr, irm_regs, icp_alpha) -> dict:
    """The study's settings checked and normalised, as keyword arguments of
    :func:`run_sem_study` (plain JSON types, so results can record them)."""
    settings = {"methods": methods, "irm_iterations": irm_iterations, "irm_lr": irm_lr,
                "irm_regs": irm_regs, "icp_alpha": icp_alpha}
    for key in ("methods", "irm_regs"):
        if isinstance(settings[key], str) or not isinstance(settings[key], list | tuple):
            raise ConfigError(f"{key} = {settings[key]!r} must be a list")
    methods = list(settings["methods"])
    if not methods:
        raise ConfigError(f"methods is empty; valid choices: {', '.join(sorted(SEM_METHODS))}")
    for name in methods:
        lookup(SEM_METHODS, name, "SEM method")
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise ConfigError(f"methods lists {', '.join(repeated)} more than once")
    iterations = as_number("irm_iterations", settings["irm_iterations"], int)
    check_range("irm_iterations", iterations, 0)
    lr = as_number("irm_lr", settings["irm_lr"])
    check_range("irm_lr", lr, 0.0, low_open=True)
    if not settings["irm_regs"]:
        raise ConfigError(f"irm_regs is empty; the original searches {list(IRM_REGS)}")
    regs = [as_number(f"irm_regs[{i}]", r) for i, r in enumerate(settings["irm_regs"])]
    for i, reg in enumerate(regs):
        check_range(f"irm_regs[{i}]", reg, 0.0, 1.0)
    alpha = as_number("icp_alpha", settings["icp_alpha"])
    check_range("icp_alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    return {"methods": methods, "irm_iterations": iterations, "irm_lr": lr, "irm_regs": regs,
            "icp_alpha": alpha}


def run_sem_study(envset: EnvSet, methods: list[str] | tuple[str, ...] = ("erm", "icp", "irm"),
                  irm_iterations: int = IRM_ITERATIONS, irm_lr: float = IRM_LR,
                  irm_regs: tuple[float, ...] | list[float] = IRM_REGS,
                  icp_alpha: float = ICP_ALPHA,
                  progress: Callable[[str], None] | None = None) -> list[dict]:
    """One row per (setup, method, rep): causal and non-causal coefficient error of the method's
    solution mapped back to the unscrambled basis (``S @ w_hat``, as upstream ``sem.py``)."""
    settings = check_sem_arguments(methods, irm_iterations, irm_lr, irm_regs, icp_alpha)
    methods = settings["methods"]
    options = SemOptions(settings["irm_iterations"], settings["irm_lr"],
                         tuple(settings["irm_regs"]), settings["icp_alpha"], progress)
    data = stack_dataset(envset)
    rows = []
    for method in methods:
        if progress:
            progress(f"{method}: {len(data.keys())} (setup, rep) pairs")
        fit = SEM_METHODS[method](data, options)
        w_hat = (data.scramble @ fit.solution.unsqueeze(-1)).squeeze(-1)
        causal, noncausal = errors(data.truth, w_hat)
        for i, (setup, rep) in enumerate(data.keys()):
            rows.append({"setup": setup, "method": method, "rep": rep,
                         "causal_error": causal[i].item(), "noncausal_error": noncausal[i].item(),
                         **{k: v[i].item() for k, v in fit.extra.items()}, **fit.settings})
    order = {s: i for i, s in enumerate(data.setups)}
    return sorted(rows, key=lambda r: (order[r["setup"]], methods.index(r["method"]), r["rep"]))


# -- the summary over reps -----------------------------------------------------------------------

def _setup_order(setup: str) -> tuple[int, str]:
    return (SEM_SETUPS.index(setup) if setup in SEM_SETUPS else len(SEM_SETUPS), setup)


def _reg_counts(rows: list[dict]) -> str | None:
    if "reg" not in rows[0]:
        return None
    counts = Counter(r["reg"] for r in rows)
    return ", ".join(f"{reg:g}×{counts[reg]}" for reg in sorted(counts))


def sem_summary(rows: list[dict]) -> list[dict]:
    """Per (setup, method), in setup order: mean and population std (ddof 0) over reps of both
    errors, the number of reps and IRM's chosen regularisers."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["setup"], row["method"]), []).append(row)
    summary = []
    for (setup, method), group in sorted(groups.items(),
                                         key=lambda kv: (_setup_order(kv[0][0]), kv[0][1])):
        entry = {"setup": setup, "method": method, "n": len(group), "regs": _reg_counts(group)}
        for kind in ("causal", "noncausal"):
            values = np.array([r[f"{kind}_error"] for r in group], dtype=np.float64)
            entry[f"{kind}_mean"], entry[f"{kind}_std"] = float(values.mean()), float(values.std())
        summary.append(entry)
    return summary


def summary_text(rows: list[dict]) -> str:
    """What the SEM stage prints: per setup and method, the mean ± std over reps of both errors
    (the report sets them beside the published numbers)."""
    lines = [f"{'setup':<6} {'method':<7} {'reps':>5}  {'causal error':<19} "
             f"{'non-causal error':<19} IRM reg chosen (×reps)"]
    for s in sem_summary(rows):
        lines.append(f"{s['setup']:<6} {s['method']:<7} {s['n']:>5}  "
                     f"{pm(s['causal_mean'], s['causal_std'], 5):<19} "
                     f"{pm(s['noncausal_mean'], s['noncausal_std'], 5):<19} "
                     f"{s['regs'] or '—'}")
    lines.append("(coefficient errors (MSE) in the unscrambled basis; mean ± std with ddof=0 "
                 "over reps)")
    return "\n".join(lines)
