"""What produced a report: code revision, inputs, versions, data, seeds, selection, precision.

The report opens with it, because a number without its data source, seeds and selection rule
cannot be judged.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pandas as pd
import yaml

from pipeline.report.inputs import Inputs
from pipeline.search.space import with_declared
from pipeline.training import computed_dtype
from pipeline.versions import git_revision, library_versions

REPORT_STAGE = "report"


def inputs_hash(lock_path: Path) -> str | None:
    """sha256 of dvc.lock's entries for every stage before the report: the report's inputs."""
    if not lock_path.exists():
        return None
    lock = yaml.safe_load(lock_path.read_text()) or {}
    stages = {k: v for k, v in (lock.get("stages") or {}).items() if k != REPORT_STAGE}
    return hashlib.sha256(json.dumps(stages, sort_keys=True).encode()).hexdigest()


_ABSENT = object()


def _declared_written_out(profile: dict) -> dict:
    """The profile with its search spaces' ``KEY: default`` written out, so that the two
    profiles are compared by what they search, not by how they spell it."""
    if not isinstance(profile.get("search_spaces"), dict):
        return profile
    return {**profile, "search_spaces": with_declared(profile["search_spaces"])}


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
        diffs = scale_down(_declared_written_out(params), _declared_written_out(paper))
        lines += ["", "How this run differs from the `paper` profile (`profiles/paper.yaml`, "
                  "the full protocols):"]
        lines += [f"- {d}" for d in diffs] or ["- it does not: this is the paper profile"]
    return "\n".join(lines)
