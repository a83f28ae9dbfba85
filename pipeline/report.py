"""The study's report: provenance, tables (markdown + LaTeX), figures (PNG + PDF), metrics.json.

Everything here reads finished results (evaluations, searches, the SEM study) and writes files;
nothing is trained. The report opens with what produced it, because a number without its data
source, seeds and selection rule cannot be judged; ``metrics.json`` holds only numbers that the
same inputs reproduce bit for bit (no times, no paths, no revisions), so two runs from scratch
can be compared byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from pipeline import figures
from pipeline.errors import ConfigError, unknown_name_message
from pipeline.provenance import git_revision, library_versions
from pipeline.reporting import accuracy_latex, accuracy_markdown, accuracy_rows
from pipeline.training import computed_dtype

REPORT_STAGE = "report"
STUDY_KEYS = ("datasets", "methods", "presets")


@dataclass(frozen=True)
class Study:
    """What the study runs (``params.yaml: study``): the matrix of the DVC stages."""

    datasets: list[str]
    methods: list[str]
    presets: list[str]


def study_settings(section: dict | None) -> Study:
    """Validate ``params.yaml: study`` against the registries, naming any bad key or value."""
    from pipeline.config import PRESETS
    from pipeline.environments import DATASETS
    from pipeline.methods import METHODS

    section = dict(section or {})
    for key in section:
        if key not in STUDY_KEYS:
            raise ConfigError(unknown_name_message("key in params.yaml 'study'", key, STUDY_KEYS))
    values = {}
    for key, registry in (("datasets", DATASETS), ("methods", METHODS), ("presets", PRESETS)):
        names = section.get(key, [])
        if not isinstance(names, list):
            raise ConfigError(f"study.{key} = {names!r} must be a list of names")
        for name in names:
            if name not in registry:
                raise ConfigError(unknown_name_message(f"name in study.{key}:", name, registry))
        values[key] = list(names)
    return Study(**values)


@dataclass
class Inputs:
    """The finished results a report is made from (paths as the DVC stages write them)."""

    evaluations: dict[str, dict]  # "dataset-config" -> evaluation result
    searches: dict[str, pd.DataFrame]  # "dataset-method" -> trials table
    best: dict[str, dict]  # "dataset-method" -> best.json
    manifests: dict[str, dict]  # dataset -> environment manifest
    sem_rows: list[dict] = field(default_factory=list)
    sem_meta: dict = field(default_factory=dict)
    protocol: dict[str, dict] = field(default_factory=dict)  # "dataset-row" -> result
    protocol_preset: str = "irm_paper"


def load_inputs(study: Study, results: Path, envs: Path, sem: Path | None,
                protocol=None) -> Inputs:
    """Read every finished result; ``protocol`` (ProtocolSettings) adds the protocol table's
    rows from ``results/protocol/DATASET-ROW.json``."""
    evaluations, searches, best, manifests = {}, {}, {}, {}
    for dataset in study.datasets:
        manifests[dataset] = json.loads((envs / dataset / "manifest.json").read_text())
        for config in [*study.methods, *study.presets]:
            name = f"{dataset}-{config}"
            evaluations[name] = json.loads((results / "evaluate" / f"{name}.json").read_text())
        for method in study.methods:
            name = f"{dataset}-{method}"
            searches[name] = pd.read_parquet(results / "search" / name / "trials.parquet")
            best[name] = json.loads((results / "search" / name / "best.json").read_text())
    sem_rows, sem_meta = [], {}
    if sem is not None:
        loaded = json.loads(sem.read_text())
        sem_rows, sem_meta = loaded["rows"], loaded["meta"]
        manifests["sem"] = json.loads((envs / "sem" / "manifest.json").read_text())
    protocol_results = {}
    if protocol is not None:
        for dataset in protocol.datasets:
            manifests[dataset] = json.loads((envs / dataset / "manifest.json").read_text())
            for row in protocol.rows:
                name = f"{dataset}-{row}"
                protocol_results[name] = json.loads(
                    (results / "protocol" / f"{name}.json").read_text())
    return Inputs(evaluations, searches, best, manifests, sem_rows, sem_meta, protocol_results,
                  protocol.preset if protocol is not None else "irm_paper")


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
        from pipeline.protocol import protocol_rows

        out["protocol"] = {}
        for row in protocol_rows(list(inputs.protocol.values())):
            out["protocol"].setdefault(row["dataset"], {})[row["row"]] = {
                name: _round(row[name][0]) if row[name] else None
                for name in ("train", "test", "gray")} | {
                "test_std": _round(row["test"][1]) if row["test"] else None,
                "seeds": row["seeds"], "diverged": row["diverged"]}
    if inputs.sem_rows:
        from pipeline.sem_study import sem_summary

        out["sem"] = {}
        for s in sem_summary(inputs.sem_rows):
            out["sem"].setdefault(s["setup"], {})[s["method"]] = {
                "causal_error": _round(s["causal_mean"], 6),
                "noncausal_error": _round(s["noncausal_mean"], 6)}
    return out


# -- provenance ---------------------------------------------------------------------------------

def inputs_hash(lock_path: Path) -> str | None:
    """sha256 of dvc.lock's entries for every stage before the report: the report's inputs."""
    if not lock_path.exists():
        return None
    lock = yaml.safe_load(lock_path.read_text()) or {}
    stages = {k: v for k, v in (lock.get("stages") or {}).items() if k != REPORT_STAGE}
    return hashlib.sha256(json.dumps(stages, sort_keys=True).encode()).hexdigest()


_ABSENT = object()


def scale_down(params: dict, paper: dict, prefix: str = "") -> list[str]:
    """Every value of ``params`` that differs from the paper profile, as 'key: ours (paper)'."""
    lines = []
    for key in sorted(set(params) | set(paper)):
        ours, theirs = params.get(key, _ABSENT), paper.get(key, _ABSENT)
        name = f"{prefix}{key}"
        if isinstance(ours, dict) and isinstance(theirs, dict):
            lines += scale_down(ours, theirs, name + ".")
        elif ours != theirs:
            lines.append(f"`{name}`: {_shown(ours)} (paper profile: {_shown(theirs)})")
    return lines


def _shown(value) -> str:
    return "not set" if value is _ABSENT else json.dumps(value)


def code_revision() -> str:
    """The git commit, ``-dirty`` only if code or params differ from it (a run rewrites
    dvc.lock and its outputs, which says nothing about the code that ran)."""
    rev = git_revision()
    if rev is None:
        return "not a git checkout"
    rev = rev.removesuffix("-dirty")
    try:
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "pipeline", "stages",
             "dvc.yaml", "params.yaml", "profiles", "pyproject.toml"],
            capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return rev
    files = sorted(line[3:] for line in changed if line.strip())
    return rev + (f"-dirty (uncommitted changes: {', '.join(files)})" if files else "")


def _seed_lines(inputs: Inputs, params: dict) -> list[str]:
    searches = sorted({(b["search"], tuple(b["seeds"])) for b in inputs.best.values()})
    search_seed = params.get("search", {}).get("seed")
    eval_seeds = sorted({tuple(r["seeds"]) for r in inputs.evaluations.values()})
    lines = [f"- data seed (environments): {params.get('make_envs', {}).get('seed')}",
             f"- search seed (sampler): {search_seed}; trial seeds: "
             + ", ".join(sorted({str(list(s)) for _, s in searches}) or ["none"]),
             "- evaluation seeds (never used by a search): "
             + ", ".join(str(list(s)) for s in eval_seeds)]
    protocol_seeds = sorted({tuple(r["seeds"]) for r in inputs.protocol.values()})
    if protocol_seeds:
        lines.append("- protocol-table seeds: " + ", ".join(str(list(s)) for s in protocol_seeds))
    if inputs.sem_meta:
        lines.append(f"- SEM: data seed {params.get('make_envs', {}).get('seed')}, "
                     f"{inputs.sem_meta.get('reps')} repetitions per setup")
    return lines


def _data_lines(inputs: Inputs, max_notes: int = 3) -> list[str]:
    lines = []
    for dataset, manifest in sorted(inputs.manifests.items()):
        flag = " **REDUCED DATA: not comparable to published numbers**" if manifest.get(
            "reduced") else ""
        lines.append(f"- `{dataset}`: {manifest.get('source')}{flag}, data seed "
                     f"{manifest.get('data_seed')}")
        notes = manifest.get("notes", [])
        lines += [f"  - {note}" for note in notes[:max_notes]]
        if len(notes) > max_notes:
            lines.append(f"  - ({len(notes) - max_notes} more notes in "
                         f"data/envs/{dataset}/manifest.json)")
    return lines


def _selection_lines(inputs: Inputs) -> list[str]:
    lines = []
    for name, best in sorted(inputs.best.items()):
        uses = " **(uses test data: oracle-style, optimistic)**" if best["uses_test_data"] else ""
        nothing = (f" **NOTHING SELECTED: {best.get('reason')}**"
                   if best.get("selected", True) is None else "")
        lines.append(f"- `{name}`: `{best['selection']}`{uses}, search `{best['search']}`"
                     f"{nothing}")
    return lines


def _reason(text) -> str:
    """A dtype reason without the note that its calibration came from the cache."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return "not recorded"
    return str(text).replace(" (cached calibration)", "")


def _precision_lines(inputs: Inputs) -> list[str]:
    """Which precision (``auto`` resolved) every result was computed in, why, and where."""
    groups: dict[tuple, list[str]] = {}
    for kind, results in (("evaluation", inputs.evaluations), ("protocol", inputs.protocol)):
        for name, r in sorted(results.items()):
            rt = r.get("runtime", {})
            key = (computed_dtype(r), _reason(rt.get("dtype_reason")),
                   rt.get("cuda_device") or rt.get("cpu") or rt.get("device"),
                   rt.get("cpu_capability"))
            groups.setdefault(key, []).append(f"{kind} `{name}`")
    for name, trials in sorted(inputs.searches.items()):
        if "dtype" not in trials:
            continue
        for _, row in trials.drop_duplicates(["dtype", "dtype_reason", "cpu", "cpu_capability"]
                                             if "cpu" in trials else ["dtype"]).iterrows():
            key = tuple(None if pd.isna(v) else v for v in (
                row.get("dtype"), _reason(row.get("dtype_reason")), row.get("cpu"),
                row.get("cpu_capability")))
            key = (key[0] or "?", *key[1:])
            names = groups.setdefault(key, [])
            if f"search `{name}`" not in names:
                names.append(f"search `{name}`")
    lines = []
    for (dtype, reason, machine, capability), names in sorted(groups.items(),
                                                               key=lambda kv: str(kv[0])):
        where = f" on {machine}" + (f" ({capability})" if capability else "") if machine else ""
        lines.append(f"- **{dtype}**{where}: {reason}; {', '.join(names)}")
    return lines


def provenance_markdown(inputs: Inputs, params: dict, paper: dict | None,
                        lock_path: Path) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in sorted(library_versions().items()))
    lines = ["## Provenance", "",
             f"- git revision: `{code_revision()}`",
             f"- inputs (sha256 of dvc.lock without the report stage): "
             f"`{inputs_hash(lock_path) or 'no dvc.lock'}`",
             f"- versions: {versions}", "", "Data sources:", *_data_lines(inputs), "",
             "Seeds:", *_seed_lines(inputs, params), "",
             "Precision (`dtype`; `auto` as resolved on the machine that ran it):",
             *(_precision_lines(inputs) or ["- no results"]), "",
             "Model selection (search -> selected configuration):", *_selection_lines(inputs)]
    if paper is not None:
        diffs = scale_down(params, paper)
        lines += ["", "How this run differs from the `paper` profile (`profiles/paper.yaml`, "
                  "the full protocols):"]
        lines += [f"- {d}" for d in diffs] or ["- it does not: this is the paper profile"]
    return "\n".join(lines)


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
                    (4, "accuracy_heatmap", figures.accuracy_heatmap,
                     "test accuracy over penalty weight x anneal iterations"),
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
    if inputs.protocol:
        png = figures.protocol_accuracy(list(inputs.protocol.values()),
                                        out / "fig7_protocol_accuracy")[0]
        drawn.append(("Figure 7: every method with IRM's published hyperparameters (the "
                      "protocol table), test and grayscale-test accuracy per seed.", png))
    if inputs.sem_rows:
        png = figures.sem_errors(inputs.sem_rows, out / "fig6_sem_errors")[0]
        drawn.append(("Figure 6: SEM study, causal and non-causal coefficient error per "
                      "method.", png))
    return sorted(drawn, key=lambda d: d[0])


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
    (tables / "accuracy.md").write_text(acc_md)
    (tables / "accuracy.tex").write_text(accuracy_latex(evaluations))
    sections = ["# IRM study report", "", provenance_markdown(inputs, params, paper, lock_path),
                "", "## Accuracy of the final evaluation", "", acc_md,
                "LaTeX: [`tables/accuracy.tex`](tables/accuracy.tex)", ""]
    if inputs.protocol:
        from pipeline.protocol import protocol_latex, protocol_markdown

        results = list(inputs.protocol.values())
        protocol_md = protocol_markdown(results, inputs.protocol_preset)
        (tables / "protocol.md").write_text(protocol_md)
        (tables / "protocol.tex").write_text(protocol_latex(results, inputs.protocol_preset))
        sections += ["## Every method under the IRM protocol (IRM's hyperparameters)", "",
                     protocol_md, "LaTeX: [`tables/protocol.tex`](tables/protocol.tex)", ""]
    if inputs.sem_rows:
        from pipeline.sem_study import sem_table_latex, sem_table_markdown

        sem_md = sem_table_markdown(inputs.sem_rows)
        (tables / "sem.md").write_text(sem_md)
        (tables / "sem.tex").write_text(sem_table_latex(inputs.sem_rows))
        sections += ["## SEM study: coefficient errors", "", sem_md,
                     "LaTeX: [`tables/sem.tex`](tables/sem.tex)", ""]
    sections += ["## Figures", ""]
    for caption, png in draw_figures(inputs, study, figs):
        rel = png.relative_to(out)
        sections += [f"![{caption}]({rel.as_posix()})", "",
                     f"*{caption}* PDF: [`{rel.with_suffix('.pdf').as_posix()}`]"
                     f"({rel.with_suffix('.pdf').as_posix()})", ""]
    markdown = "\n".join(sections)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(to_html(markdown))
    metrics = headline_metrics(inputs)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
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
