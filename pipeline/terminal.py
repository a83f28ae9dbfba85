"""What a person reads while the study runs: a result's accuracy table, training progress
lines, and the one ``mean ± std`` formatter that every table (terminal, markdown, LaTeX) uses.

Nothing here knows published numbers or captions (those are the report's): the training stages
import this module to print what they computed, and editing the report never re-runs them.
"""

from __future__ import annotations

import math
import sys

TEX_PM = r"$\pm$"


def pm(mean: float | None, std: float | None, digits: int = 1, *, tex: bool = False,
       missing: str | None = None) -> str:
    """``mean ± std`` with ``digits`` decimals (``$\\pm$`` in LaTeX); ``missing`` (default: an
    em dash, ``--`` in LaTeX) when there is no number, a NaN included."""
    if mean is None or std is None or math.isnan(mean) or math.isnan(std):
        return missing if missing is not None else ("--" if tex else "—")
    return f"{mean:.{digits}f} {TEX_PM if tex else '±'} {std:.{digits}f}"


def pct(stat: dict | None) -> str:
    """An aggregated metric (``{"mean", "std"}`` in [0, 1]) as ``mean ± std`` in %."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    return pm(100 * stat["mean"], 100 * stat["std"], missing="n/a")


def result_table(result) -> str:
    """Per-environment accuracy (mean ± std over seeds, ddof = 0) plus the run's provenance.

    ``result``: a train result's dict (``TrainResult.to_dict()``), or anything with ``to_dict``.
    """
    r = result.to_dict() if hasattr(result, "to_dict") else result
    metrics, cfg, data, rt = r["metrics"], r["config"], r["data"], r["runtime"]
    acc_names = [n for n in metrics if n.endswith("_acc")]
    order = sorted(acc_names, key=lambda n: (n != "train_acc", not n.startswith("train"), n))
    n_ok = next(iter(metrics.values()))["n"] if metrics else 0
    diverged = [m for m in r["members"] if m["status"] == "diverged"]
    lines = [
        f"{cfg['method']} on {data['dataset']} ({cfg['model']}, {len(r['seeds'])} seeds "
        f"{r['seeds'][0]}..{r['seeds'][-1]}, {rt['steps_run']} steps, {rt['dtype']}, "
        f"{rt['device']}, {rt['threads']} threads)",
        f"data: {data['source']}" + ("  [REDUCED DATA: smoke test, not a reproduction]"
                                     if data["reduced"] else ""),
        "",
        f"{'environment':<16} {'accuracy % (mean ± std)':>24}",
    ]
    lines += [f"{n[:-4]:<16} {pct(metrics[n]):>24}" for n in order]
    lines.append(f"({n_ok} members averaged; std with ddof=0)")
    if rt.get("dtype_reason") and rt["dtype_reason"] != "requested":
        lines.append(f"precision {rt['dtype']}: {rt['dtype_reason']}")
    for m in diverged:
        lines.append(f"seed {m['seed']}: DIVERGED at step {m['diverged_step']} (not averaged)")
    return "\n".join(lines)


def markdown_summary(results: list[dict]) -> str:
    """One row per result file: what ran, on which data, and train/test accuracy over seeds."""
    header = ("| dataset (source) | method | config | seeds | dtype | train % | test % "
              "| gray test % | diverged |")
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for r in results:
        cfg, data, metrics = r["config"], r["data"], r["metrics"]
        source = data["source"] + (", REDUCED" if data["reduced"] else "")
        config = (f"H={cfg['hidden_dim']}, lr={cfg['lr']:.3g}, l2={cfg['l2_weight']:.3g}, "
                  f"lambda={cfg['penalty_weight']:.6g}, anneal={cfg['anneal_iters']}, "
                  f"{r['runtime']['steps_run']} steps")
        n_div = sum(m["status"] == "diverged" for m in r["members"])
        lines.append(f"| {data['dataset']} ({source}) | {cfg['method']} | {config} | "
                     f"{len(r['seeds'])} | {r['runtime']['dtype']} | "
                     f"{pct(metrics.get('train_acc'))} | {pct(metrics.get('test_acc'))} | "
                     f"{pct(metrics.get('test_gray_acc'))} | {n_div} |")
    return "\n".join(lines)


def progress_line(info: dict) -> str:
    """One line of a run's progress (the trainer's ``progress`` callback argument)."""
    tests = "  ".join(f"{k[:-4]} {100 * v:5.1f}%" for k, v in info.items()
                      if k.endswith("_acc") and k != "train_acc")
    if info["evaluated_at"] != info["step"]:
        tests += f" (at step {info['evaluated_at']})"
    return (f"step {info['step']:>5}/{info['steps'] - 1}  lambda {info['penalty_weight']:<10.4g} "
            f"train {100 * info['train_acc']:5.1f}%  {tests}  "
            f"diverged {info['diverged']}  {info['elapsed_s']:.0f}s elapsed, "
            f"~{info['eta_s']:.0f}s left")


def print_progress(info: dict) -> None:
    """The progress printer of every training command and stage (stderr: stdout keeps the
    results, so ``train > result.txt`` still shows progress)."""
    print(progress_line(info), file=sys.stderr, flush=True)
