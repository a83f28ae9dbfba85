"""The schedule study's table: per family, the selected configuration, its test accuracy on
fresh seeds, and how forgiving the family is to tune (the fraction of its trials within 2
points of its best), as markdown and as a booktabs LaTeX table."""

from __future__ import annotations

import math

import pandas as pd

from pipeline.report.figures import longest_runs
from pipeline.report.tables import tex_escape
from pipeline.selection import SELECTION_RULES
from pipeline.terminal import pm

WITHIN = 0.02  # 2 points of the selection score
SHOWN = {"anneal_iters": "anneal", "penalty_weight": "λ", "ramp_iters": "ramp",
         "poly_k": "k", "poly_power": "p", "exp_rate": "rate", "penalty_cap": "cap",
         "step_milestones": "at", "step_values": "λ"}


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "→".join(_short(v) for v in value)
    if isinstance(value, str) and "," in value:  # a list chosen as "50,150"
        return "→".join(_short(float(v)) if "." in v or "e" in v else v
                        for v in value.split(","))
    return str(value)


def schedule_rows(searches: dict[str, tuple[pd.DataFrame, dict]],
                  evaluations: dict[str, dict]) -> list[dict]:
    """One row per family search (key ``dataset-method-family``), in the key order given."""
    rows = []
    for key, (trials, best) in searches.items():
        dataset, method, family = key.rsplit("-", 2)
        last = longest_runs(trials)  # every trial once, failed ones included
        n_trials = last["trial"].nunique()
        scores = last.loc[last["status"] == "ok", "score"].dropna()
        top = scores.max() if len(scores) else None
        near = int((scores >= top - WITHIN).sum()) if top is not None else 0
        result = evaluations.get(key) or {}
        test = (result.get("metrics") or {}).get("test_acc")
        searched = (best or {}).get("searched") or {}
        selections = set(last["selection"].dropna().astype(str)) or {
            (best or {}).get("selection", "?")}
        rows.append({
            "key": key, "dataset": dataset, "method": method, "family": family,
            "selection": ", ".join(sorted(selections)),
            "selected": ", ".join(f"{SHOWN.get(k, k)} {_short(v)}"
                                  for k, v in searched.items() if k != "schedule"),
            "test": (100 * test["mean"], 100 * test["std"]) if test else None,
            "n_eval": len(result.get("seeds") or []),
            "eval_diverged": sum(m["status"] != "ok" for m in result.get("members") or []),
            "trials": n_trials, "near": near,
            "n_diverged": int((last["status"] == "diverged").sum())})
    return rows


def _cells(row: dict, tex: bool) -> list[str]:
    test = pm(*(row["test"] or (None, None)), tex=tex)
    if row["eval_diverged"]:  # the mean is over the seeds that did not diverge
        test += f" ({row['eval_diverged']}/{row['n_eval']} diverged)"
    forgiving = f"{row['near']}/{row['trials']}" + (
        f" ({row['n_diverged']} diverged)" if row["n_diverged"] else "")
    selected = row["selected"] or "nothing selected"
    return [row["family"], tex_escape(selected).replace("λ", r"$\lambda$").replace(
        "→", r"$\to$") if tex else selected, test, forgiving]


def schedule_caption(rows: list[dict], fixed: dict) -> str:
    rules = sorted({r["selection"] for r in rows})
    uses = any(SELECTION_RULES[rule].uses_test_data for r in rules for rule in r.split(", ")
               if rule in SELECTION_RULES)
    trials = sorted({r["trials"] for r in rows})
    n_eval = sorted({r["n_eval"] for r in rows})
    fixed_text = ", ".join(f"{k} {v}" for k, v in sorted(fixed.items()))
    return (f"Penalty-weight schedule families, {', '.join(sorted({r['dataset'] for r in rows}))}"
            f", {', '.join(sorted({r['method'] for r in rows}))}: each family searched at "
            f"random with the same budget ({'/'.join(map(str, trials))} trials), everything "
            f"else fixed ({fixed_text}); the selected configuration (selection: "
            f"{', '.join(rules)}{', which USES TEST DATA' if uses else ''}) retrained on "
            f"{'/'.join(map(str, n_eval))} fresh seeds: test accuracy (%) mean ± std (ddof 0) over "
            f"the seeds that did not diverge. "
            f"Forgiving: trials whose selection score is within {100 * WITHIN:.0f} points of "
            f"the family's best, of all its trials (diverged ones count as not within).")


HEADER = ["family", "selected configuration", "test %", "forgiving"]


def schedule_markdown(rows: list[dict], fixed: dict) -> str:
    lines = []
    for dataset_method in dict.fromkeys((r["dataset"], r["method"]) for r in rows):
        part = [r for r in rows if (r["dataset"], r["method"]) == dataset_method]
        lines += [f"**{dataset_method[0]}, {dataset_method[1]}**", "",
                  "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(_cells(r, False)) + " |" for r in part]
        lines.append("")
    return "\n".join(lines) + f"*{schedule_caption(rows, fixed)}*\n"


def schedule_latex(rows: list[dict], fixed: dict, label: str = "tab:schedules") -> str:
    body = []
    for dataset_method in dict.fromkeys((r["dataset"], r["method"]) for r in rows):
        body.append(r"\multicolumn{4}{l}{\textit{" + tex_escape(", ".join(dataset_method))
                    + r"}} \\")
        body += [" & ".join(_cells(r, True)) + r" \\" for r in rows
                 if (r["dataset"], r["method"]) == dataset_method]
    return "\n".join([
        r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{llrr}", r"\toprule",
        " & ".join(HEADER).replace("%", r"\%") + r" \\", r"\midrule", *body, r"\bottomrule",
        r"\end{tabular}",
        r"\caption{" + tex_escape(schedule_caption(rows, fixed)).replace("±", r"$\pm$")
        .replace("λ", r"$\lambda$") + "}", rf"\label{{{label}}}", r"\end{table}", ""])


def best_family(rows: list[dict]) -> dict[str, str]:
    """``dataset-method`` -> the family whose selection scored highest on fresh seeds."""
    out = {}
    for r in rows:
        k = f"{r['dataset']}-{r['method']}"
        if r["test"] and not math.isnan(r["test"][0]) and (
                k not in out or r["test"][0] > out[k][1]):
            out[k] = (r["family"], r["test"][0])
    return {k: v[0] for k, v in out.items()}
