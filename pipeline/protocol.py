"""The protocol table: every method with IRM's published hyperparameters (Fishr's protocol).

Fishr's Colored MNIST script (alexrame/fishr@7b8fdf1, ``coloredmnist/train_coloredmnist.py``)
re-ran ERM, IRM, V-REx and Fishr with the
IRM paper's tuned hyperparameters (the ``irm_paper`` preset) and 10 seeds, and reported train,
test and grayscale-test accuracy. This module runs that protocol for every method in the
registry: a row is the preset plus the row's changes (its method, the method's own
hyperparameters, a model or augmentation), all recorded in the result. The preset was selected
by the IRM paper with test data, so every row says it uses test data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config import PRESETS, coerce, make_config
from pipeline.errors import ConfigError, lookup, unknown_name_message
from pipeline.evaluate import (
    EXECUTION_KEYS,
    PRESET_PROVENANCE,
    check_fresh_seeds,
    checked_section,
    mapping_param,
)
from pipeline.latex import escape as tex_escape
from pipeline.training import ProgressFn, computed_dtype, train

PROTOCOL_KEYS = ("datasets", "rows", "preset", "seeds", "row_set", "execution")
# What a row may not change: that would no longer be the preset's protocol.
ROW_FIXED = ("dataset", "envs_dir", "seeds")
# Fishr README Table 2 (alexrame/fishr@7b8fdf1, README.md): mean ± std (ddof 0) over 10 seeds,
# full MNIST.
PUBLISHED_PROTOCOL_ROWS = {
    "erm": {"train": (86.4, 0.2), "test": (14.0, 0.7), "gray": (71.0, 0.7)},
    "irm": {"train": (71.0, 0.5), "test": (65.6, 1.8), "gray": (66.1, 0.2)},
    "vrex": {"train": (71.7, 1.5), "test": (67.2, 1.5), "gray": (68.6, 2.2)},
    "fishr": {"train": (71.0, 0.9), "test": (69.5, 1.0), "gray": (70.2, 1.1)},
}
PUBLISHED_PROTOCOL_SOURCE = ("Fishr README Table 2 (alexrame/fishr@7b8fdf1): "
                             "IRM's hyperparameters for every method, 10 seeds, full MNIST")
PUBLISHED_PROTOCOL_DATASET = "colored_mnist"
PUBLISHED_SEEDS = 10


@dataclass(frozen=True)
class ProtocolSettings:
    datasets: list[str]
    rows: list[str]
    preset: str
    seeds: list[int]
    row_set: dict[str, dict]  # row -> its changes to the preset (method defaults to the row)
    execution: dict  # how every row executes (dtype here is a recorded deviation)

    def row_changes(self, row: str) -> dict:
        """The row's changes to the preset, its method made explicit."""
        lookup({r: None for r in dict.fromkeys([*self.rows, *self.row_set])}, row,
               "protocol row")
        return {"method": row, **self.row_set.get(row, {})}


def protocol_settings(section: dict | None) -> ProtocolSettings:
    """Validate ``params.yaml: protocol``; every error names the key and the valid choices."""
    section = checked_section("protocol", section, PROTOCOL_KEYS)
    datasets, rows = section.get("datasets", []), section.get("rows", [])
    for key, value in (("datasets", datasets), ("rows", rows)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"protocol.{key} = {value!r} must be a list of names")
    preset = str(section.get("preset", "irm_paper"))
    lookup(PRESETS, preset, "protocol.preset")
    seeds = section.get("seeds", list(range(2000, 2010)))
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool)
                                              for s in seeds):
        raise ConfigError(f"protocol.seeds = {seeds!r} must be a list of integers")
    row_set = mapping_param("protocol.row_set", section.get("row_set"))
    for row, changes in row_set.items():  # rows not run now may be defined too
        changes = mapping_param(f"protocol.row_set.{row}", changes)
        for key in changes:
            if key in ROW_FIXED:
                raise ConfigError(f"protocol.row_set.{row}.{key}: a row may not change its "
                                  f"{key}; the protocol fixes it")
        row_set[row] = {k: coerce(k, v) for k, v in changes.items()}
        _check_own_hyperparameters(row, {"method": row, **row_set[row]})
    execution = {k: coerce(k, v) for k, v in
                 mapping_param("protocol.execution", section.get("execution")).items()}
    for key in execution:
        if key not in (*EXECUTION_KEYS, "dtype"):
            raise ConfigError(unknown_name_message("key in protocol.execution", key,
                                                   (*EXECUTION_KEYS, "dtype")))
    settings = ProtocolSettings(datasets, rows, preset, check_fresh_seeds(seeds, []), row_set,
                                execution)
    for row in dict.fromkeys([*rows, *row_set]):  # every row is valid before any training
        try:
            make_config(preset, **settings.row_changes(row), **execution)
        except ConfigError as exc:
            raise ConfigError(f"protocol row {row!r}: {exc}") from None
    return settings


def _check_own_hyperparameters(row: str, changes: dict) -> None:
    """A row may set its own method's hyperparameters, not another method's (a silent no-op)."""
    from pipeline.methods import METHODS

    method = METHODS.get(changes["method"])
    if method is None:
        return  # make_config names the unknown method
    for name, other in METHODS.items():
        for key in other.hparams:
            if key in changes and key not in method.hparams:
                raise ConfigError(f"protocol.row_set.{row}.{key} is not a hyperparameter of "
                                  f"{changes['method']!r} (it belongs to {name!r}); it would "
                                  "change nothing")


def evaluate_protocol_row(settings: ProtocolSettings, row: str, dataset: str,
                          envs_dir: str | None = None,
                          progress: ProgressFn | None = None) -> dict:
    """Train one row of the protocol table on one dataset with the protocol's seeds."""
    changes = settings.row_changes(row)
    values = {**changes, **settings.execution, "dataset": dataset,
              **({"envs_dir": envs_dir} if envs_dir else {})}
    result = train(make_config(settings.preset, **values), settings.seeds,
                   progress=progress).to_dict()
    how, uses_test = PRESET_PROVENANCE[settings.preset]
    preset = PRESETS[settings.preset]
    result["provenance"] = {
        "kind": "protocol", "row": row, "preset": settings.preset, "selection": how,
        "uses_test_data": uses_test, "changes": changes,
        "deviations": {k: v for k, v in settings.execution.items()
                       if k == "dtype" and v != "fp32"},
        "preset_values": {k: v for k, v in preset.items() if k != "method"}}
    return result


# -- the table -----------------------------------------------------------------------------------

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


def _pm(pair, tex: bool = False) -> str:
    if pair is None or any(math.isnan(v) for v in pair):
        return "n/a"  # no member finished (see the diverged column)
    return f"{pair[0]:.1f} $\\pm$ {pair[1]:.1f}" if tex else f"{pair[0]:.1f} ± {pair[1]:.1f}"


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
        pub_text = (" / ".join(_pm(pub[k]) for k in ("train", "test", "gray")) if pub else "")
        lines.append(f"| {r['dataset']} | {r['row']} | {r['method']} | {_changes_text(r)} | "
                     f"{_pm(r['train'])} | {_pm(r['test'])} | {_pm(r['gray'])} | "
                     f"{r['diverged']}/{r['seeds']} | {pub_text} |")
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
                     f"{_pm(r['train'], True)} & {_pm(r['test'], True)} & "
                     f"{_pm(r['gray'], True)} & {r['diverged']}/{r['seeds']} \\\\")
    lines.append(r"\midrule")
    for name, v in PUBLISHED_PROTOCOL_ROWS.items():
        lines.append(f"published (full MNIST) & {tex_escape(name)} & "
                     f"{_pm(v['train'], True)} & {_pm(v['test'], True)} & "
                     f"{_pm(v['gray'], True)} & \\\\")
    lines += [r"\bottomrule", r"\end{tabular}",
              f"\\caption{{{tex_escape(protocol_caption(rows, preset))}}}",
              f"\\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
