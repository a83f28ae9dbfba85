"""The report's tables, each as markdown and as a booktabs LaTeX table.

- the accuracy table: every final evaluation beside the IRM paper's numbers;
- the protocol table: every method with IRM's hyperparameters beside Fishr's numbers;
- the SEM table: the SEM study's errors beside the IRM paper's.

Every ``mean ± std`` is :func:`pipeline.terminal.pm`'s; every LaTeX cell and caption goes
through :func:`tex_escape`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.config import PRESET_PROVENANCE
from pipeline.report.published import (
    IRM_PUBLISHED_SETUP,
    PUBLISHED,
    PUBLISHED_PROTOCOL_DATASET,
    PUBLISHED_PROTOCOL_ROWS,
    PUBLISHED_PROTOCOL_SOURCE,
    PUBLISHED_SEEDS,
    PUBLISHED_SEM,
    PUBLISHED_SOURCE,
)
from pipeline.sem.study import sem_summary
from pipeline.terminal import TEX_PM, pm
from pipeline.training import computed_dtype


def tex_escape(text: str) -> str:
    """``text`` safe inside a LaTeX table cell or caption (backslash first, then the rest)."""
    return (text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
            .replace("&", r"\&").replace("#", r"\#"))


def _pm(pair: tuple[float, float] | None, tex: bool = False, missing: str | None = None) -> str:
    """A (mean, std) pair, or None, through :func:`pipeline.terminal.pm` (1 decimal)."""
    return pm(*(pair or (None, None)), tex=tex, missing=missing)


# -- the method x dataset table of final evaluations --------------------------------------------

def protocol_deviations(result: dict) -> list[str]:
    """How a result's run differs from the published setup (empty: it does not)."""
    prov = result.get("provenance") or {}
    out = [f"{k}={v}" for k, v in sorted((prov.get("deviations") or {}).items())
           if k != "dtype"]
    if len(result["seeds"]) != IRM_PUBLISHED_SETUP["seeds"]:
        out.append(f"{len(result['seeds'])} seeds")
    trials = prov.get("search_trials")
    if prov.get("kind") == "selected" and trials not in (None,
                                                         IRM_PUBLISHED_SETUP["search_trials"]):
        out.append(f"{trials}-trial search")
    dtype = computed_dtype(result)
    if dtype != IRM_PUBLISHED_SETUP["dtype"]:
        out.append(f"dtype={dtype}")
    return out


def configuration_of(result: dict) -> tuple[str, str, bool | None]:
    """(configuration label, how it was chosen, uses test data) from a result's provenance."""
    prov = result.get("provenance") or {}
    if prov.get("kind") == "selected":
        return (f"{result['config']['method']} selected by {prov['selection']}",
                f"search {prov['search']}", prov["uses_test_data"])
    if prov.get("kind") == "preset":
        return prov["preset"], prov["selection"], prov["uses_test_data"]
    if prov.get("kind") == "nothing_selected":
        return (f"{result['config']['method']} selected by {prov['selection']}",
                f"search {prov['search']}: NOTHING SELECTED ({prov['reason']})",
                prov["uses_test_data"])
    return f"{result['config']['method']} (fixed config)", "no provenance recorded", None


def accuracy_rows(results: list[dict]) -> list[dict]:
    """One row per evaluation result: train / test accuracy (%) with the published anchor."""
    rows = []
    for r in results:
        label, how, uses_test = configuration_of(r)
        data, metrics = r["data"], r["metrics"]
        published = None if data.get("reduced") else PUBLISHED.get((data["dataset"], label))
        test = metrics.get("test_acc")
        rows.append({
            "dataset": data["dataset"], "source": data.get("source"),
            "reduced": bool(data.get("reduced")), "configuration": label, "chosen": how,
            "uses_test_data": uses_test, "seeds": len(r["seeds"]),
            "diverged": sum(m["status"] != "ok" for m in r["members"]),
            "train": _pct_pair(metrics.get("train_acc")), "test": _pct_pair(test),
            "published_train": published["train"] if published else None,
            "published_test": published["test"] if published else None,
            "deviations": protocol_deviations(r) if published else [],
            "delta_test": (100 * test["mean"] - published["test"][0])
            if published and test else None})
    return sorted(rows, key=lambda row: (row["dataset"], row["configuration"]))


def _pct_pair(stat: dict | None) -> tuple[float, float] | None:
    return None if not stat else (100 * stat["mean"], 100 * stat["std"])


def accuracy_caption(rows: list[dict]) -> str:
    """What the accuracy table is: its statistic, how each configuration was chosen, which used
    test data or reduced data, and where a published number is not comparable."""
    chosen = sorted({f"{r['configuration']}: {r['chosen']}" for r in rows})
    test_users = sorted({r["configuration"] for r in rows if r["uses_test_data"]})
    parts = ["Accuracy (%) of the final evaluation: mean ± std (ddof = 0) over the evaluation "
             "seeds that did not diverge, final step.",
             "Configurations: " + "; ".join(chosen) + "."]
    if test_users:
        parts.append("Selected with test data (optimistic): " + ", ".join(test_users) + ".")
    if any(r["reduced"] for r in rows):
        parts.append("REDUCED data (smoke test, not comparable to published numbers): "
                     + ", ".join(sorted({r["dataset"] for r in rows if r["reduced"]})) + ".")
    if any(r["published_test"] for r in rows):
        parts.append(f"Published: {PUBLISHED_SOURCE}; Δ = ours − published test accuracy.")
    deviating = sorted({f"{r['dataset']} {r['configuration']}: {', '.join(r['deviations'])}"
                        for r in rows if r["deviations"]})
    if deviating:
        parts.append("† not the published protocol (" + "; ".join(deviating) + "), so Δ is "
                     "not a reproduction check.")
    return " ".join(parts)


def accuracy_markdown(results: list[dict]) -> str:
    rows = accuracy_rows(results)
    lines = ["| dataset (source) | configuration | seeds | train % | test % | published train % "
             "| published test % | Δ test |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        source = f"{r['source']}{', REDUCED' if r['reduced'] else ''}"
        delta = "—" if r["delta_test"] is None else f"{r['delta_test']:+.1f}" + (
            " †" if r["deviations"] else "")
        seeds = f"{r['seeds']}" + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
        lines.append(f"| {r['dataset']} ({source}) | {r['configuration']} | {seeds} | "
                     f"{_pm(r['train'])} | {_pm(r['test'])} | {_pm(r['published_train'])} | "
                     f"{_pm(r['published_test'])} | {delta} |")
    return "\n".join(lines) + "\n\n" + accuracy_caption(rows) + "\n"


def accuracy_latex(results: list[dict], label: str = "tab:accuracy") -> str:
    """A booktabs table for papers (needs ``\\usepackage{booktabs}``)."""
    rows = accuracy_rows(results)
    body = []
    for r in rows:
        dataset = tex_escape(r["dataset"]) + (r" (reduced)" if r["reduced"] else "")
        delta = "--" if r["delta_test"] is None else f"{r['delta_test']:+.1f}" + (
            r"$^\dagger$" if r["deviations"] else "")
        seeds = f"{r['seeds']}" + (f" ({r['diverged']} div.)" if r["diverged"] else "")
        body.append(f"{dataset} & {tex_escape(r['configuration'])} & {seeds} & "
                    f"{_pm(r['train'], True)} & {_pm(r['test'], True)} & "
                    f"{_pm(r['published_test'], True)} & {delta} \\\\")
    caption = (tex_escape(accuracy_caption(rows)).replace("±", TEX_PM)
               .replace("Δ", r"$\Delta$").replace("−", "$-$"))
    return "\n".join([
        r"\begin{table}[t]", r"\centering", r"\begin{tabular}{llrrrrr}", r"\toprule",
        r"Dataset & Configuration & Seeds & Train (\%) & Test (\%) & Published test (\%) "
        r"& $\Delta$ test \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
        f"\\caption{{{caption}}}", f"\\label{{{label}}}", r"\end{table}", ""])


# -- the protocol table: every method with IRM's published hyperparameters ----------------------

def protocol_rows(results: Sequence[dict]) -> list[dict]:
    """One row per (dataset, protocol row): train, test and gray-test accuracy (%) over seeds."""
    out = []
    for r in results:
        prov, data, metrics = r["provenance"], r["data"], r["metrics"]
        row = {"dataset": data["dataset"], "row": prov["row"], "source": data["source"],
               "reduced": bool(data.get("reduced")), "seeds": len(r["seeds"]),
               "method": r["config"]["method"], "changes": prov["changes"],
               "diverged": sum(m["status"] == "diverged" for m in r["members"]),
               "dtype": computed_dtype(r)}
        for name, key in (("train", "train_acc"), ("test", "test_acc"),
                          ("gray", "test_gray_acc")):
            stat = metrics.get(key)
            row[name] = (100 * stat["mean"], 100 * stat["std"]) if stat else None
        published = (PUBLISHED_PROTOCOL_ROWS.get(prov["row"])
                     if data["dataset"] == PUBLISHED_PROTOCOL_DATASET and not row["reduced"]
                     else None)
        row["published"] = published
        out.append(row)
    return out


def _protocol_pm(pair, tex: bool = False) -> str:
    return _pm(pair, tex, missing="n/a")  # n/a: no member finished (see the diverged column)


def _changes_text(row: dict) -> str:
    extra = {k: v for k, v in row["changes"].items() if k != "method"}
    return ", ".join(f"{k}={v}" for k, v in extra.items()) or "-"


def protocol_caption(rows: Sequence[dict], preset: str) -> str:
    """What the table is: the protocol, its selection (test data), its data, its deviations."""
    how, uses_test = PRESET_PROVENANCE[preset]
    parts = [f"Every method with the `{preset}` hyperparameters ({how}"
             + ("; USES TEST DATA" if uses_test else "") + "), full batch unless a row's "
             "changes say otherwise, final step; accuracy % as mean ± std (ddof 0) over "
             "seeds."]
    for dataset in sorted({r["dataset"] for r in rows}):
        first = next(r for r in rows if r["dataset"] == dataset)
        parts.append(f"{dataset}: {first['source']}"
                     + (" (REDUCED DATA: not comparable with the published rows)"
                        if first["reduced"] else "") + f", {first['seeds']} seeds.")
    dtypes = sorted({r["dtype"] for r in rows} - {"fp32"})
    if dtypes:
        parts.append(f"Deviation: trained in {', '.join(dtypes)} (the published runs: fp32).")
    seeds = sorted({r["seeds"] for r in rows} - {PUBLISHED_SEEDS})
    if seeds:
        parts.append(f"Deviation: {', '.join(map(str, seeds))} seeds (the published runs: "
                     f"{PUBLISHED_SEEDS}).")
    if any(r["published"] for r in rows):
        parts.append(f"Published: {PUBLISHED_PROTOCOL_SOURCE}.")
    else:
        parts.append(f"Published rows ({PUBLISHED_PROTOCOL_SOURCE}) are listed for reference "
                     "only: no row here ran on the full MNIST they used.")
    return " ".join(parts)


def protocol_markdown(results: Sequence[dict], preset: str = "irm_paper") -> str:
    rows = protocol_rows(results)
    lines = ["| dataset | row | method | changes to the preset | train % | test % "
             "| gray test % | diverged | published train / test / gray |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pub = r["published"]
        pub_text = (" / ".join(_protocol_pm(pub[k]) for k in ("train", "test", "gray"))
                    if pub else "")
        lines.append(f"| {r['dataset']} | {r['row']} | {r['method']} | {_changes_text(r)} | "
                     f"{_protocol_pm(r['train'])} | {_protocol_pm(r['test'])} | "
                     f"{_protocol_pm(r['gray'])} | {r['diverged']}/{r['seeds']} | {pub_text} |")
    lines.append("")
    lines.append("Published reference rows (full MNIST): "
                 + "; ".join(f"{name} {v['train'][0]} / {v['test'][0]} / {v['gray'][0]}"
                             for name, v in PUBLISHED_PROTOCOL_ROWS.items()) + ".")
    lines.append("")
    lines.append(protocol_caption(rows, preset))
    return "\n".join(lines) + "\n"


def protocol_latex(results: Sequence[dict], preset: str = "irm_paper",
                   label: str = "tab:protocol") -> str:
    rows = protocol_rows(results)
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{llllll}", r"\toprule",
             r"Dataset & Row & Train (\%) & Test (\%) & Gray test (\%) & Diverged \\",
             r"\midrule"]
    for r in rows:
        lines.append(f"{tex_escape(r['dataset'])} & {tex_escape(r['row'])} & "
                     f"{_protocol_pm(r['train'], True)} & {_protocol_pm(r['test'], True)} & "
                     f"{_protocol_pm(r['gray'], True)} & {r['diverged']}/{r['seeds']} \\\\")
    lines.append(r"\midrule")
    for name, v in PUBLISHED_PROTOCOL_ROWS.items():
        lines.append(f"published (full MNIST) & {tex_escape(name)} & "
                     f"{_protocol_pm(v['train'], True)} & {_protocol_pm(v['test'], True)} & "
                     f"{_protocol_pm(v['gray'], True)} & \\\\")
    lines += [r"\bottomrule", r"\end{tabular}",
              f"\\caption{{{tex_escape(protocol_caption(rows, preset))}}}",
              f"\\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# -- the SEM table: the SEM study beside the IRM paper's numbers --------------------------------

def sem_table_rows(rows: list[dict]) -> list[dict]:
    """:func:`pipeline.sem.study.sem_summary` (per setup and method, mean and population std over
    reps) with the published mean and std of each error beside it (None where none)."""
    out = []
    for entry in sem_summary(rows):
        published = PUBLISHED_SEM.values.get(entry["setup"], {}).get(entry["method"], {})
        entry = dict(entry)
        for kind in ("causal", "noncausal"):
            pub = published.get(kind)
            entry[f"published_{kind}_mean"] = pub[0] if pub else None
            entry[f"published_{kind}_std"] = pub[1] if pub else None
        out.append(entry)
    return out


def _sem_pm(mean: float | None, std: float | None, tex: bool = False) -> str:
    return pm(mean, std, 5, tex=tex)


def sem_caption(rows: list[dict], summary: list[dict]) -> str:
    """What the SEM table is: the errors, the statistic, each method as run, the source."""
    counts = sorted({s["n"] for s in summary})
    reps = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    parts = ["Coefficient errors on the IRM paper's linear SEM: causal error = mean squared error "
             "of the coefficients on the causal inputs x, non-causal error = the same on the "
             "non-causal inputs z (true value 0), both in the unscrambled basis; mean ± "
             f"population std (ddof 0) over {reps} reps per setup.",
             "ERM: least squares without intercept on all environments pooled."]
    icp = next((r for r in rows if r["method"] == "icp"), None)
    if icp:
        parts.append("ICP, on all environments: accepts every non-empty subset of the inputs "
                     "whose least-squares residuals pass a Welch t-test (means) and an F-test "
                     "(variances) of each environment against the rest, Bonferroni over "
                     f"environments at alpha={icp['alpha']:g}; least squares on the "
                     "intersection of the accepted subsets (all zeros if none).")
    irm = next((r for r in rows if r["method"] == "irm"), None)
    if irm:
        parts.append(f"IRM: trained on all environments but the last for {irm['n_iterations']} "
                     f"Adam iterations (lr {irm['lr']:g}), its regulariser chosen by MSE on the "
                     f"last environment (sigma={irm['selection_env_sigma']:g}).")
    parts.append(f"Published: {PUBLISHED_SEM.source}.")
    return " ".join(parts)


def sem_table_markdown(rows: list[dict]) -> str:
    """Per (setup, method): ours and published errors (5 decimals), then the caption."""
    summary = sem_table_rows(rows)
    lines = ["| setup | method | reps | causal error | non-causal error | published causal "
             "| published non-causal | IRM reg chosen (×reps) |", "|---" * 8 + "|"]
    for s in summary:
        lines.append(f"| {s['setup']} | {s['method']} | {s['n']} | "
                     f"{_sem_pm(s['causal_mean'], s['causal_std'])} | "
                     f"{_sem_pm(s['noncausal_mean'], s['noncausal_std'])} | "
                     f"{_sem_pm(s['published_causal_mean'], s['published_causal_std'])} | "
                     f"{_sem_pm(s['published_noncausal_mean'], s['published_noncausal_std'])} | "
                     f"{s['regs'] or '—'} |")
    return "\n".join(lines) + "\n\n" + sem_caption(rows, summary) + "\n"


def sem_table_latex(rows: list[dict], label: str = "tab:sem") -> str:
    """A booktabs table for papers (needs ``\\usepackage{booktabs}``)."""
    summary = sem_table_rows(rows)
    body = []
    for s in summary:
        regs = tex_escape(s["regs"]).replace("×", r"$\times$") if s["regs"] else "--"
        body.append(
            f"{tex_escape(s['setup'])} & {tex_escape(s['method'].upper())} & {s['n']} & "
            f"{_sem_pm(s['causal_mean'], s['causal_std'], True)} & "
            f"{_sem_pm(s['noncausal_mean'], s['noncausal_std'], True)} & "
            f"{_sem_pm(s['published_causal_mean'], s['published_causal_std'], True)} & "
            f"{_sem_pm(s['published_noncausal_mean'], s['published_noncausal_std'], True)} & "
            f"{regs} \\\\")
    caption = (tex_escape(sem_caption(rows, summary)).replace("±", TEX_PM)
               .replace("sigma=", r"$\sigma$=").replace("alpha=", r"$\alpha$="))
    return "\n".join([
        r"\begin{table}[t]", r"\centering", r"\begin{tabular}{llrlllll}", r"\toprule",
        r"Setup & Method & Reps & Causal error & Non-causal error & Published causal "
        r"& Published non-causal & IRM reg chosen \\", r"\midrule", *body, r"\bottomrule",
        r"\end{tabular}", f"\\caption{{{caption}}}", f"\\label{{{label}}}", r"\end{table}", ""])
