"""The whole report: report.md, report.html, tables/, figures/ and metrics.json.

``metrics.json`` holds only numbers that the same inputs reproduce bit for bit (no times, no
paths, no revisions), so two runs from scratch can be compared byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.outputs import write_atomic, write_json
from pipeline.params.study import Study
from pipeline.report import figures, schedule_figures
from pipeline.report import pica as pica_report
from pipeline.report.inputs import Inputs
from pipeline.report.provenance import provenance_markdown
from pipeline.report.schedule_table import (
    best_family,
    schedule_latex,
    schedule_markdown,
    schedule_rows,
)
from pipeline.report.tables import (
    accuracy_latex,
    accuracy_markdown,
    accuracy_rows,
    protocol_latex,
    protocol_markdown,
    protocol_rows,
    sem_table_latex,
    sem_table_markdown,
)
from pipeline.sem.study import sem_summary

# -- metrics.json: the headline numbers ---------------------------------------------------------


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def headline_metrics(inputs: Inputs) -> dict:
    """Test and train accuracy (%) per dataset and configuration; SEM errors per setup/method."""
    out: dict = {"accuracy": {}}
    for row in accuracy_rows(list(inputs.evaluations.values())):
        key = row["configuration"].replace(" selected by ", "_selected_by_")
        entry = {"train": _round(row["train"][0]) if row["train"] else None,
                 "test": _round(row["test"][0]) if row["test"] else None,
                 "test_std": _round(row["test"][1]) if row["test"] else None,
                 "seeds": row["seeds"], "diverged": row["diverged"]}
        out["accuracy"].setdefault(row["dataset"], {})[key] = entry
    if inputs.protocol:
        out["protocol"] = {}
        for row in protocol_rows(list(inputs.protocol.values())):
            out["protocol"].setdefault(row["dataset"], {})[row["row"]] = {
                name: _round(row[name][0]) if row[name] else None
                for name in ("train", "test", "gray")} | {
                "test_std": _round(row["test"][1]) if row["test"] else None,
                "seeds": row["seeds"], "diverged": row["diverged"]}
    if inputs.pica is not None:  # PICA's cosine on the synthetic case, each probe's test
        out["pica"] = {"synthetic_cos_mean": {
            r["method"]: _round(r["cos_mean"])
            for r in pica_report.synthetic_summary(inputs.pica["synthetic"])}}
        for name, image in inputs.pica["images"].items():
            out["pica"][name] = {f"{r['projection']}-{r['dims']}": _round(r["acc"].get("test"))
                                 for r in image["rows"]}
    if inputs.schedule_searches:
        rows = schedule_rows(inputs.schedule_searches, inputs.schedule_evaluations)
        out["schedules"] = {}
        for row in rows:
            out["schedules"].setdefault(f"{row['dataset']}-{row['method']}", {})[
                row["family"]] = {"test": _round(row["test"][0]) if row["test"] else None,
                                  "test_std": _round(row["test"][1]) if row["test"] else None,
                                  "near_best": row["near"], "trials": row["trials"],
                                  "selection": row["selection"]}
        for key, family in best_family(rows).items():
            out["schedules"][key]["best_family"] = family
    if inputs.sem_rows:
        out["sem"] = {}
        for s in sem_summary(inputs.sem_rows):
            out["sem"].setdefault(s["setup"], {})[s["method"]] = {
                "causal_error": _round(s["causal_mean"], 6),
                "noncausal_error": _round(s["noncausal_mean"], 6)}
    return out


# -- figures ------------------------------------------------------------------------------------

def penalty_trials(inputs: Inputs, dataset: str) -> pd.DataFrame:
    """The trials of every search with a penalty weight on ``dataset`` (ERM has none)."""
    frames = [t for name, t in sorted(inputs.searches.items())
              if name.startswith(f"{dataset}-") and "config.penalty_weight" in t
              and (t["config.method"] != "erm").any()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def draw_figures(inputs: Inputs, study: Study, out: Path) -> list[tuple[str, Path]]:
    """Draw every figure; returns (caption, PNG path) in report order."""
    drawn = []
    for dataset in study.datasets:
        trials = penalty_trials(inputs, dataset)
        if not trials.empty and (trials["status"] == "ok").any():
            for number, name, draw, what in (
                    (1, "accuracy_vs_penalty", figures.accuracy_vs_penalty,
                     "OOD test accuracy against the penalty weight across search trials"),
                    (5, "train_vs_test", figures.train_vs_test,
                     "train against test accuracy across trials")):
                png = draw(trials, out / f"fig{number}_{name}-{dataset}")[0]
                drawn.append((f"Figure {number} ({dataset}): {what}.", png))
    schedules = {}  # label -> config of every penalised evaluation (the selected and presets)
    for _, result in sorted(inputs.evaluations.items()):
        if result["config"]["method"] != "erm" and result.get("curves"):
            schedules.setdefault(label_of(result), result["config"])
    if schedules:
        steps = max(c["steps"] for c in schedules.values())
        png = figures.schedules_used(schedules, steps, out / "fig2_schedules_used")[0]
        drawn.append(("Figure 2: the penalty-weight schedules of the selected and published "
                      "configurations.", png))
    for dataset in study.datasets:
        runs = {label_of(r, False): r for name, r in sorted(inputs.evaluations.items())
                if name.startswith(f"{dataset}-") and r.get("curves")}
        if not runs:
            continue
        png = figures.training_curves(runs, out / f"fig3_training_curves-{dataset}",
                                      dataset)[0]
        drawn.append((f"Figure 3 ({dataset}): training curves of the final evaluation.", png))
    drawn += schedule_figure_list(inputs, out)
    if inputs.protocol:
        png = figures.protocol_accuracy(list(inputs.protocol.values()),
                                        out / "fig7_protocol_accuracy")[0]
        drawn.append(("Figure 7: every method with IRM's published hyperparameters (the "
                      "protocol table), test and grayscale-test accuracy per seed.", png))
    if inputs.pica is not None:
        png = pica_report.projection_figure(inputs.pica, out / "fig11_pica_projection")[0]
        drawn.append(("Figure 11: PICA, each environment's projection on the first principal "
                      "invariant direction and on PCA's first direction.", png))
    if inputs.sem_rows:
        png = figures.sem_errors(inputs.sem_rows, out / "fig6_sem_errors")[0]
        drawn.append(("Figure 6: SEM study, causal and non-causal coefficient error per "
                      "method.", png))
    return sorted(drawn, key=lambda d: d[0])


def schedule_figure_list(inputs: Inputs, out: Path) -> list[tuple[str, Path]]:
    """The schedule study's figures: the landscape (figure 4), the trials per family (8), the
    selected schedules (9) and the power sweep (10), per dataset."""
    drawn = []
    datasets = dict.fromkeys(k.split("-", 1)[1] for k in inputs.schedule_grids)
    datasets.update(dict.fromkeys(t["config.dataset"].iloc[0]
                                  for t, _ in inputs.schedule_searches.values()))
    for dataset in datasets:
        grid = inputs.schedule_grids.get(f"landscape-{dataset}")
        if grid is not None and (grid["status"] == "ok").any():
            png = schedule_figures.landscape(grid, out / f"fig4_landscape-{dataset}")[0]
            drawn.append((f"Figure 4 ({dataset}): IRM's test accuracy over penalty weight x "
                          "anneal iterations, every point of a grid.", png))
        searches = {k: v for k, v in inputs.schedule_searches.items()
                    if k.startswith(f"{dataset}-")}
        if searches:
            png = schedule_figures.family_trials(searches, out / f"fig8_families-{dataset}")[0]
            drawn.append((f"Figure 8 ({dataset}): test accuracy of every trial per penalty-"
                          "weight schedule family, the selected ones starred.", png))
            configs = {f"{best['config']['method']}, {best['config']['schedule']}":
                       best["config"] for _, best in searches.values()
                       if best and best.get("config")}
            if configs:
                rules = sorted({best["selection"] for _, best in searches.values() if best})
                png = schedule_figures.selected_schedules(
                    configs, out / f"fig9_selected_schedules-{dataset}",
                    f"{dataset}, selection: "
                    + ", ".join(schedule_figures.rule_text(r) for r in rules))[0]
                drawn.append((f"Figure 9 ({dataset}): the penalty weight over training of each "
                              "family's selected configuration.", png))
        power = inputs.schedule_grids.get(f"power_sweep-{dataset}")
        if power is not None and len(power):
            png = schedule_figures.power_sweep(power, out / f"fig10_power_sweep-{dataset}")[0]
            drawn.append((f"Figure 10 ({dataset}): final train and test accuracy against the "
                          "power p of λ = k·t^p.", png))
    return drawn


def label_of(result: dict, with_dataset: bool = True) -> str:
    """'dataset: method (selection rule)' or 'preset' (a preset is the same on every dataset)."""
    prov = result.get("provenance") or {}
    if prov.get("kind") == "selected":
        label = f"{result['config']['method']} ({prov['selection']})"
        return f"{result['config']['dataset']}: {label}" if with_dataset else label
    return prov.get("preset", result["config"]["method"])


# -- the whole report ---------------------------------------------------------------------------

def write_report(inputs: Inputs, study: Study, params: dict, paper: dict | None,
                 out: Path, lock_path: Path = Path("dvc.lock")) -> dict:
    """Write report.md, report.html, tables/, figures/ and metrics.json under ``out``."""
    tables, figs = out / "tables", out / "figures"
    tables.mkdir(parents=True, exist_ok=True)
    evaluations = list(inputs.evaluations.values())
    acc_md = accuracy_markdown(evaluations)
    write_atomic(tables / "accuracy.md", acc_md)
    write_atomic(tables / "accuracy.tex", accuracy_latex(evaluations))
    sections = ["# IRM study report", "", provenance_markdown(inputs, params, paper, lock_path),
                "", "## Accuracy of the final evaluation", "", acc_md,
                "LaTeX: [`tables/accuracy.tex`](tables/accuracy.tex)", ""]
    if inputs.protocol:
        results = list(inputs.protocol.values())
        protocol_md = protocol_markdown(results, inputs.protocol_preset)
        write_atomic(tables / "protocol.md", protocol_md)
        write_atomic(tables / "protocol.tex", protocol_latex(results, inputs.protocol_preset))
        sections += ["## Every method under the IRM protocol (IRM's hyperparameters)", "",
                     protocol_md, "LaTeX: [`tables/protocol.tex`](tables/protocol.tex)", ""]
    if inputs.sem_rows:
        sem_md = sem_table_markdown(inputs.sem_rows)
        write_atomic(tables / "sem.md", sem_md)
        write_atomic(tables / "sem.tex", sem_table_latex(inputs.sem_rows))
        sections += ["## SEM study: coefficient errors", "", sem_md,
                     "LaTeX: [`tables/sem.tex`](tables/sem.tex)", ""]
    if inputs.pica is not None:
        pica_md = pica_report.pica_markdown(inputs.pica)
        write_atomic(tables / "pica.md", pica_md)
        write_atomic(tables / "pica.tex", pica_report.pica_latex(inputs.pica))
        sections += ["## Unsupervised IRM: PICA", "", pica_md,
                     "LaTeX: [`tables/pica.tex`](tables/pica.tex)", ""]
    if inputs.schedule_searches:
        rows = schedule_rows(inputs.schedule_searches, inputs.schedule_evaluations)
        schedule_md = schedule_markdown(rows, inputs.schedule_fixed)
        write_atomic(tables / "schedules.md", schedule_md)
        write_atomic(tables / "schedules.tex", schedule_latex(rows, inputs.schedule_fixed))
        sections += ["## Penalty-weight schedule families", "", schedule_md,
                     "LaTeX: [`tables/schedules.tex`](tables/schedules.tex)", ""]
        for name, shared in sorted(inputs.schedule_sharing.items()):
            sections.append(f"- {name}: {shared['steps_trained']} steps trained for the "
                            f"{shared['steps_alone']} of its runs alone "
                            f"({100 * shared['saving']:.0f}% shared: runs that agree on their "
                            "first updates train them once; each run's numbers are its own)")
        sections.append("")
    sections += ["## Figures", ""]
    for caption, png in draw_figures(inputs, study, figs):
        rel = png.relative_to(out)
        sections += [f"![{caption}]({rel.as_posix()})", "",
                     f"*{caption}* PDF: [`{rel.with_suffix('.pdf').as_posix()}`]"
                     f"({rel.with_suffix('.pdf').as_posix()})", ""]
    markdown = "\n".join(sections)
    write_atomic(out / "report.md", markdown)
    write_atomic(out / "report.html", to_html(markdown))
    metrics = headline_metrics(inputs)
    write_json(out / "metrics.json", metrics, indent=1, sort_keys=True)
    return metrics


def to_html(markdown: str) -> str:
    """A standalone HTML page of the report (figures linked relative to it)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>IRM study report"
            f"</title><style>{style}</style></head><body>\n{body}</body></html>\n")
