"""Paper figures (seaborn), each saved as PNG and PDF with labelled axes and units.

Every figure says in its title what selected or fixed the configurations it shows, because a
reader cannot judge an accuracy without knowing whether test data chose it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed (CI, clusters)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from pipeline.config import make_config  # noqa: E402
from pipeline.environments.sem import SEM_SETUPS  # noqa: E402
from pipeline.evaluate import per_step_train_keys  # noqa: E402
from pipeline.report.published import (  # noqa: E402
    PUBLISHED_PROTOCOL_DATASET,
    PUBLISHED_PROTOCOL_ROWS,
    PUBLISHED_SEM,
)
from pipeline.schedules import curve  # noqa: E402
from pipeline.selection import SELECTION_RULES  # noqa: E402

CHANCE, OPTIMAL_INVARIANT = 50.0, 75.0  # Colored MNIST, in % (label noise 0.25)


def save(fig, path: Path | str, title_size: float = 9) -> list[Path]:
    """Write ``path``.png and ``path``.pdf; returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for ax in fig.axes:
        ax.title.set_fontsize(title_size)  # two-line titles naming data and selection must fit
    fig.tight_layout()
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    fig.savefig(out[0], dpi=150)
    fig.savefig(out[1], metadata={"CreationDate": None})  # no timestamp: same bytes each run
    plt.close(fig)
    return out


def longest_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its longest run length (a failed trial's row, without steps, too).
    A trial whose longest run diverged is that, not a shorter run that did not."""
    ordered = trials.sort_values("steps", na_position="first", kind="stable")
    return ordered.groupby("trial", sort=False).tail(1).sort_index()


def _finished(trials: pd.DataFrame) -> pd.DataFrame:
    """Each finished trial at its longest run length (shorter ones may end before the anneal)."""
    last = longest_runs(trials)
    ok = last[last["status"] == "ok"].copy()
    ok["test %"] = 100 * ok["test_acc.mean"]
    ok["train %"] = 100 * ok["train_acc.mean"]
    # one colour per method and schedule family (IRM and V-REx trials share the figures)
    ok["method, schedule"] = ok["config.method"] + ", " + ok["config.schedule"]
    return ok


def _title(what: str, trials: pd.DataFrame) -> str:
    rules = ", ".join(f"{rule} (USES TEST DATA)" if SELECTION_RULES[rule].uses_test_data
                      else rule for rule in sorted(set(trials["selection"].astype(str))))
    datasets = ", ".join(sorted(set(trials["config.dataset"].astype(str))))
    return f"{what}\n{datasets}, trials at their longest run, selection: {rules}"


def accuracy_vs_penalty(trials: pd.DataFrame, path: Path | str) -> list[Path]:
    """Figure 1: OOD test accuracy against the final penalty weight (the trials table's
    ``final_penalty_weight``: the weight each trial's schedule reached), by schedule family."""
    ok = _finished(trials)
    ok["penalty weight"] = ok["final_penalty_weight"]  # as the trainer recorded it
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    sns.scatterplot(data=ok, x="penalty weight", y="test %", hue="method, schedule", ax=ax)
    ax.set_xscale("log")
    ax.set(xlabel="penalty weight at the last step (log scale)", ylabel="test accuracy (%)",
           title=_title("OOD test accuracy across search trials", trials))
    return save(fig, path)


def draw_schedules(ax, named: list[tuple[str, dict]], steps: int | None = None,
                   log: bool = False) -> None:
    """λ(t) of each (label, config), over ``steps`` (None: each config's own). Schedules that
    coincide stay visible: each line is drawn thinner than the one before it, in its own dash
    pattern. ``log``: weights <= 0 (off the log axis) are left out, not drawn at a floor."""
    styles = ["-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1))]
    palette = sns.color_palette("colorblind", max(1, len(named)))
    for i, (label, config) in enumerate(named):
        cfg = make_config(None, **config)
        n = steps or cfg.steps
        weights = np.array(curve(cfg.schedule_obj(), n), dtype=float)
        if log:
            weights = np.where(weights > 0, weights, np.nan)
        ax.plot(np.arange(n), weights, color=palette[i], ls=styles[i % len(styles)],
                lw=3.4 - 2.4 * i / max(1, len(named) - 1), label=label)


def schedules_used(configs: list[dict] | dict[str, dict], steps: int,
                   path: Path | str) -> list[Path]:
    """Figure 2: the penalty-weight schedules, lambda against step.

    ``configs`` may be named ({label: config}); each curve's label says where it came from.
    Schedules that coincide (IRM and V-REx selected the same one) stay visible
    (:func:`draw_schedules`), and the legend sits below the axes, never on the curves.
    """
    named = list(configs.items()) if isinstance(configs, dict) else [(None, c) for c in configs]
    labelled = []
    for name, cfg in named:
        sched = make_config(None, **cfg)
        label = f"{sched.schedule} (anneal {sched.anneal_iters}" + (
            f", λ {sched.penalty_weight:.3g})" if sched.schedule == "constant" else ")")
        labelled.append((f"{name}: {label}" if name else label, cfg))
    fig, ax = plt.subplots(figsize=(5.5, 3.0 + 0.22 * len(named)))
    draw_schedules(ax, labelled, steps)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)  # weights are never negative; symlog would show a mirrored axis
    ax.set(xlabel="training step", ylabel="penalty weight λ (symlog scale)",
           title="Penalty-weight schedules used")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    return save(fig, path)


def training_curves(results: dict[str, dict], path: Path | str,
                    dataset: str | None = None) -> list[Path]:
    """Figure 3: train and test accuracy against step per method (mean, band over seeds)."""
    rows = []
    for name, r in results.items():
        curves = r["curves"]
        train_keys = per_step_train_keys(curves)  # not the held-out NAME_val curves
        for i, seed in enumerate(r["seeds"]):
            for j, step in enumerate(curves["step"]):
                values = [curves[k][i][j] for k in train_keys]
                if None not in values:
                    rows.append({"method": name, "seed": seed, "step": step, "split": "train",
                                 "accuracy (%)": 100 * float(np.mean(values))})
            for j, step in enumerate(curves["eval_step"]):
                value = curves["test_acc"][i][j]
                if value is not None:
                    rows.append({"method": name, "seed": seed, "step": step, "split": "test",
                                 "accuracy (%)": 100 * value})
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    sns.lineplot(data=frame[frame["split"] == "train"], x="step", y="accuracy (%)",
                 hue="method", errorbar=_population_sd, ax=ax)
    # test accuracy exists only at evaluation steps: markers show where it was measured
    sns.lineplot(data=frame[frame["split"] == "test"], x="step", y="accuracy (%)",
                 hue="method", errorbar=_population_sd, ax=ax, ls="--", marker="o",
                 legend=False)
    ax.axhline(OPTIMAL_INVARIANT, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="training step", ylabel="accuracy (%)",
           title=f"Training curves{f' on {dataset}' if dataset else ''} (solid: train, "
                 "dashed with markers: test),\nmean ± 1 std (ddof 0) over seeds; legend: "
                 "config (selection rule) or published preset")
    return save(fig, path)


def train_vs_test(trials: pd.DataFrame, path: Path | str) -> list[Path]:
    """Figure 5: train against test accuracy across trials, with 75% and 50% lines."""
    ok = _finished(trials)
    fig, ax = plt.subplots(figsize=(5.0, 4.2))
    sns.scatterplot(data=ok, x="train %", y="test %", hue="method, schedule", ax=ax)
    ax.axhline(OPTIMAL_INVARIANT, color="tab:green", ls="--", lw=1, label="optimal invariant")
    ax.axhline(CHANCE, color="tab:red", ls=":", lw=1, label="random guessing")
    ax.legend(fontsize=7)
    ax.set(xlabel="train accuracy (%)", ylabel="test accuracy (%)",
           title=_title("Train vs test accuracy across trials", trials))
    return save(fig, path)


def _population_sd(values) -> tuple[float, float]:
    """Mean ± std with ddof 0, the spread the SEM tables report (seaborn's "sd" uses ddof 1)."""
    values = np.asarray(values, dtype=float)
    return values.mean() - values.std(), values.mean() + values.std()


def sem_errors(rows: list[dict], path: Path | str) -> list[Path]:
    """Figure 6: causal and non-causal coefficient error per SEM setup and method (log scale),
    bars = mean over reps, error bars = std over reps (the IRM paper's synthetic figure), black
    ticks = the published means (a log axis cannot show the published zeros)."""
    frame = pd.DataFrame(rows)
    present = set(frame["setup"])
    setups = [s for s in SEM_SETUPS if s in present] + sorted(present - set(SEM_SETUPS))
    methods = sorted(set(frame["method"]))
    reps = frame.groupby(["setup", "method"]).size()
    reps_text = f"{reps.min()}" if reps.min() == reps.max() else f"{reps.min()}-{reps.max()}"
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.9), sharey=True)
    width = 0.8 / len(methods)  # seaborn's dodged bars: 0.8 per setup, split over the hues
    for ax, (kind, label) in zip(axes, (("causal", "causal coefficients (x)"),
                                        ("noncausal", "non-causal coefficients (z)")),
                                 strict=True):
        sns.barplot(data=frame, x="setup", y=f"{kind}_error", hue="method", order=setups,
                    hue_order=methods, errorbar=_population_sd, capsize=0.1, ax=ax,
                    legend=ax is axes[0])
        published = [(i - 0.4 + width * (j + 0.5), pub[0])
                     for i, setup in enumerate(setups) for j, method in enumerate(methods)
                     if (pub := PUBLISHED_SEM.values.get(setup, {}).get(method, {}).get(kind))
                     and pub[0] > 0]
        for k, (x, mean) in enumerate(published):
            ax.plot([x - width / 2, x + width / 2], [mean, mean], color="black", lw=1.2,
                    label=f"published ({PUBLISHED_SEM.reps} reps)" if k == 0 else None)
        ax.set(xlabel="SEM setup (F/P observed, O/E noise, U/S scrambled)",
               ylabel="coefficient error (MSE, log scale)", title=label)
    axes[0].legend(fontsize=7)
    # log scale only after both panels are drawn: seaborn averages in log space (geometric
    # means) on an axis that is already logarithmic, and the panels share the y axis
    axes[0].set_yscale("log")
    on_all = " and ".join(m.upper() for m in methods if m in ("erm", "icp"))
    notes = [f"{on_all} on all environments"] if on_all else []
    if "irm" in methods:
        notes.append("IRM's regulariser chosen on the last environment")
    fig.suptitle(f"IRM synthetic SEM study: mean ± std over {reps_text} reps per setup;\n"
                 + ", ".join(notes) + ";\nblack: the published means; a zero error (ICP's "
                 "empty or exact selections) has no bar on the log axis", fontsize=9)
    return save(fig, path)


def protocol_accuracy(results: list[dict], path: Path | str) -> list[Path]:
    """Figure 7: the protocol table per seed: test and gray-test accuracy of every row, one
    panel per dataset, with Fishr's published test means (full MNIST) as black marks."""
    records = []
    for r in results:
        prov, data = r["provenance"], r["data"]
        panel = f"{data['dataset']}" + (" (REDUCED data)" if data.get("reduced") else "")
        for m in r["members"]:
            if m["status"] != "ok":
                continue
            for metric, key in (("test", "test_acc"), ("gray test", "test_gray_acc")):
                if key in m["metrics"]:
                    records.append({"panel": panel, "row": prov["row"], "metric": metric,
                                    "accuracy": 100 * m["metrics"][key]})
    frame = pd.DataFrame(records)
    panels = list(dict.fromkeys(frame["panel"])) if not frame.empty else ["(no finished runs)"]
    rows = list(dict.fromkeys(r["provenance"]["row"] for r in results))
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8.0, 0.8 * len(rows)),
                                                      3.4 * len(panels) + 0.8), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        part = frame[frame["panel"] == panel] if not frame.empty else frame
        if not part.empty:
            with seeded_global_numpy(0):  # seaborn jitters with np.random: same dots each run
                sns.stripplot(data=part, x="row", y="accuracy", hue="metric", order=rows,
                              hue_order=["test", "gray test"], dodge=True, size=3.5, ax=ax,
                              legend=ax is axes[0, 0])
        # Fishr's numbers are for full Colored MNIST: drawn on that panel only
        published = [(i, PUBLISHED_PROTOCOL_ROWS[row]["test"][0]) for i, row in enumerate(rows)
                     if row in PUBLISHED_PROTOCOL_ROWS and panel == PUBLISHED_PROTOCOL_DATASET]
        for n, (i, mean) in enumerate(published):
            ax.plot([i - 0.4, i + 0.4], [mean] * 2, color="black", lw=1.2,
                    label="published test (Fishr, full MNIST)" if n == 0 else None)
        ax.set(xlabel="", ylabel="accuracy (%)", title=panel, ylim=(0, 100))
        ax.axhline(50, color="grey", lw=0.6, ls=":")
        ax.tick_params(axis="x", rotation=30)
    if axes[0, 0].get_legend_handles_labels()[0]:  # below the panels, clear of the dots
        axes[-1, 0].legend(*axes[0, 0].get_legend_handles_labels(), fontsize=8, ncol=3,
                           loc="upper center", bbox_to_anchor=(0.5, -0.3))
        if axes[0, 0] is not axes[-1, 0]:
            axes[0, 0].get_legend().remove()
    fig.suptitle("Every method with IRM's published hyperparameters\n(irm_paper: selected with "
                 "test data, USES TEST DATA); one dot per seed,\nblack bar: Fishr's published "
                 "test mean (on the full Colored MNIST panel only)", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


@contextmanager
def seeded_global_numpy(seed: int):
    """numpy's global generator seeded for a block, and put back as it was after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)

