"""The schedule study's figures (seaborn; PNG + PDF at a paper's column width, 3.4 in).

Each title names the data (and whether it is REDUCED) and what chose the configurations shown:
a family's trials and its selection (the search's rule), or a grid with no selection at all.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from pipeline.config import PRESETS
from pipeline.report.figures import (
    CHANCE,
    OPTIMAL_INVARIANT,
    draw_schedules,
    longest_runs,
    save,
    seeded_global_numpy,
)
from pipeline.selection import SELECTION_RULES

COLUMN = 3.4  # inches: one column of a two-column paper
FAMILY_ORDER = ["constant", "step", "linear", "polynomial", "exponential"]


def _title(ax, text: str) -> None:
    """A title that fits the column above a narrower axes: lines wrapped at 48 characters."""
    ax.set_title("\n".join(textwrap.fill(line, 48) for line in text.split("\n")), fontsize=7)


def rule_text(rule: str) -> str:
    return f"{rule} (USES TEST DATA)" if SELECTION_RULES[rule].uses_test_data else rule


def data_text(trials: pd.DataFrame) -> str:
    dataset = ", ".join(sorted(set(trials["config.dataset"].astype(str))))
    reduced = trials.get("data_reduced")
    return dataset + (" (REDUCED data)" if reduced is not None and reduced.any() else "")


def _ok_last(trials: pd.DataFrame) -> pd.DataFrame:
    last = longest_runs(trials)
    return last[last["status"] == "ok"].copy()


def family_trials(searches: dict[str, tuple[pd.DataFrame, dict]], path: Path | str
                  ) -> list[Path]:
    """Test accuracy of every trial per schedule family (one dot per trial, hue = method), the
    trial each family's search selected marked with a black star. ``searches``: family label
    -> (trials table, best.json)."""
    rows, chosen, rules, frames = [], [], set(), []
    for (trials, best) in searches.values():
        frames.append(trials)
        ok = _ok_last(trials)
        rules.update(trials["selection"].astype(str))
        for _, r in ok.iterrows():
            rows.append({"family": r["config.schedule"], "method": r["config.method"],
                         "test %": 100 * r["test_acc.mean"], "key": r["trial_key"]})
        if best and best.get("trial_key"):
            chosen.append(best["trial_key"])
    frame = pd.DataFrame(rows)
    order = [f for f in FAMILY_ORDER if f in set(frame.get("family", []))]
    methods = sorted(set(frame.get("method", [])))
    fig, ax = plt.subplots(figsize=(COLUMN, 2.9))
    if not frame.empty:
        with seeded_global_numpy(0):  # seaborn jitters with np.random: same dots each run
            sns.stripplot(data=frame, x="family", y="test %", hue="method", order=order,
                          hue_order=methods, dodge=len(methods) > 1, jitter=0.15, size=4,
                          alpha=0.75, ax=ax, legend=len(methods) > 1)
        sel = frame[frame["key"].isin(chosen)]
        offsets = _dodge_offsets(methods)
        ax.scatter([order.index(f) + offsets[m] for f, m in zip(sel["family"], sel["method"],
                                                               strict=True)],
                   sel["test %"], marker="*", s=150, facecolor="none", edgecolor="black",
                   lw=0.9, zorder=5, label="selected")  # hollow: the dot stays visible
    ax.axhline(OPTIMAL_INVARIANT, color="grey", lw=0.7, ls=":")
    ax.axhline(CHANCE, color="grey", lw=0.7, ls="--")
    ax.legend(fontsize=6.5, loc="lower left")
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    ax.set(xlabel="", ylabel="test accuracy (%)", ylim=(0, 100))
    trials = pd.concat(frames, ignore_index=True)
    _title(ax, f"Trials per schedule family, {data_text(trials)}; selection: "
               f"{', '.join(rule_text(r) for r in sorted(rules))}\nstar: selected; dotted "
               "75% (invariant), dashed 50% (chance)")
    return save(fig, path, title_size=7)


def _dodge_offsets(methods: list[str]) -> dict[str, float]:
    """Where seaborn's dodged strips put each hue around the category's centre."""
    if len(methods) <= 1:
        return {m: 0.0 for m in methods}
    width = 0.8 / len(methods)
    return {m: -0.4 + width * (i + 0.5) for i, m in enumerate(methods)}


def selected_schedules(configs: dict[str, dict], path: Path | str, subtitle: str
                       ) -> list[Path]:
    """lambda(t) of each family's selected configuration on a log axis; lines that coincide
    (every family holds weight 1 before its anneal) stay visible (:func:`draw_schedules`),
    and the legend sits below the axes."""
    fig, ax = plt.subplots(figsize=(COLUMN, 3.3))
    draw_schedules(ax, list(configs.items()), log=True)
    ax.set_yscale("log")
    ax.set(xlabel="training step", ylabel="penalty weight λ (log scale)")
    _title(ax, f"λ(t) of each family's selected configuration\n{subtitle}")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.27), ncol=2,
              frameon=False)
    return save(fig, path, title_size=7)


def landscape(trials: pd.DataFrame, path: Path | str, preset: str = "irm_paper"
              ) -> list[Path]:
    """Test accuracy (mean over seeds) over penalty weight x anneal iterations, every grid
    point (no selection), diverged cells marked, the preset's (lambda, anneal) marked."""
    ok = _ok_last(trials)
    ok["test %"] = 100 * ok["test_acc.mean"]
    weights = sorted(set(trials["config.penalty_weight"]))
    anneals = sorted(set(trials["config.anneal_iters"]))
    grid = ok.pivot_table(index="config.anneal_iters", columns="config.penalty_weight",
                          values="test %", aggfunc="mean").reindex(index=anneals,
                                                                   columns=weights)
    fig, ax = plt.subplots(figsize=(COLUMN, 3.1))
    sns.heatmap(grid, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                annot_kws={"fontsize": 6}, cbar_kws={"label": "test accuracy (%)"},
                xticklabels=[_weight_label(w) for w in weights], yticklabels=anneals)
    last = longest_runs(trials)
    status = {(r["config.anneal_iters"], r["config.penalty_weight"]): r["status"]
              for _, r in last.iterrows()}
    for i, a in enumerate(anneals):  # no number: a marked cell, what happened to it
        for j, w in enumerate(weights):
            if math.isnan(grid.loc[a, w]):
                mark = "div" if status.get((a, w)) == "diverged" else "fail"
                ax.text(j + 0.5, i + 0.5, mark, ha="center", va="center", fontsize=6,
                        color="red")
    p = PRESETS[preset]
    x = _position(p["penalty_weight"], weights, log=min(weights) > 0)
    y = _position(p["anneal_iters"], anneals, log=False)
    inside = (min(weights) <= p["penalty_weight"] <= max(weights)
              and min(anneals) <= p["anneal_iters"] <= max(anneals))
    ax.scatter([x], [y], marker="X", s=70, color="white", edgecolor="red", lw=1.2, zorder=5,
               clip_on=False)
    ax.tick_params(labelsize=6)
    ax.set(xlabel="penalty weight λ", ylabel="anneal iterations")
    steps = int(trials["steps"].max())
    n = int(trials["n_seeds"].max())
    _title(ax, f"IRM test accuracy over λ x anneal, {data_text(trials)}\nevery grid point "
               f"(no selection), {steps} steps, mean of {n} seed{'s' * (n > 1)}\nX: {preset} "
               f"(λ {p['penalty_weight']:.3g}, anneal {p['anneal_iters']}"
               f"{'' if inside else ', outside the grid: at its edge'})")
    return save(fig, path, title_size=7)


def _weight_label(w: float) -> str:
    """1e2, 3e3, 0: a penalty weight in a tick's width."""
    return "0" if w == 0 else f"{w:.0e}".replace("e+0", "e").replace("e+", "e").replace(
        "e-0", "e-")


def _position(value: float, ticks: list[float], log: bool) -> float:
    """Where ``value`` falls on a heatmap axis whose cell centres are ``ticks`` (clipped to
    the axis: a preset outside the grid is marked at its edge)."""
    f = (lambda v: math.log10(v)) if log else (lambda v: float(v))
    coords = [f(t) for t in ticks]
    v = min(max(f(value), coords[0]), coords[-1])
    return float(np.interp(v, coords, np.arange(len(coords)))) + 0.5


def power_sweep(trials: pd.DataFrame, path: Path | str) -> list[Path]:
    """Final train and test accuracy against p for lambda = k * t^p (mean ± std over seeds),
    diverged points marked at the bottom."""
    ok = _ok_last(trials)
    rows = []
    for _, r in ok.iterrows():
        for split in ("train", "test"):
            rows.append({"p": r["config.poly_power"], "split": split,
                         "accuracy (%)": 100 * r[f"{split}_acc.mean"],
                         "std": 100 * r[f"{split}_acc.std"]})
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(COLUMN, 2.6))
    for split, color in (("train", "tab:blue"), ("test", "tab:orange")):
        part = frame[frame["split"] == split].sort_values("p") if not frame.empty else frame
        if not part.empty:
            ax.errorbar(part["p"], part["accuracy (%)"], yerr=part["std"], marker="o", ms=3,
                        capsize=2, color=color, label=split)
    dead = sorted(set(trials["config.poly_power"]) - set(ok["config.poly_power"]))
    if dead:
        ax.scatter(dead, [2] * len(dead), marker="x", color="red", label="diverged")
    ax.axhline(OPTIMAL_INVARIANT, color="grey", lw=0.7, ls=":")
    ax.axhline(CHANCE, color="grey", lw=0.7, ls="--")
    ax.set(xlabel="power p in λ = k·t^p", ylabel="final accuracy (%)", ylim=(0, 100))
    ax.legend(fontsize=6.5, loc="lower left")
    cfg = trials.iloc[0]
    n = int(trials["n_seeds"].max())
    _title(ax, f"λ = {cfg['config.poly_k']:g}·t^p from step {cfg['config.anneal_iters']}, "
               f"{int(trials['steps'].max())} steps, {data_text(trials)}\nevery p (no "
               f"selection), mean ± std over {n} seed{'s' * (n > 1)}")
    return save(fig, path, title_size=7)
