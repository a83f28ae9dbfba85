"""Plain-text tables of results for the terminal and the README."""

from __future__ import annotations

from pipeline.training import TrainResult


def _pct(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def result_table(result: TrainResult | dict) -> str:
    """Per-environment accuracy (mean ± std over seeds, ddof = 0) plus the run's provenance."""
    r = result.to_dict() if isinstance(result, TrainResult) else result
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
    lines += [f"{n[:-4]:<16} {_pct(metrics[n]):>24}" for n in order]
    lines.append(f"({n_ok} members averaged; std with ddof=0)")
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
                     f"{_pct(metrics.get('train_acc'))} | {_pct(metrics.get('test_acc'))} | "
                     f"{_pct(metrics.get('test_gray_acc'))} | {n_div} |")
    return "\n".join(lines)
