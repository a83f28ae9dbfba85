"""Compare the headline numbers of two runs of the study (``python -m pipeline compare``).

Two runs on the same machine with the same params write byte-identical ``reports/metrics.json``;
on another CPU fp32 kernels may sum in another order and numbers differ in their last digits.
This module says how far apart two runs are: per metric name, the largest absolute difference
and where it occurs; paths present in one run only; non-numeric values that differ; and, for two
checkouts, each evaluation result in ``results/evaluate/``.

The functions that compare return data (``compare_two_runs``, ``failures``); ``format_comparison``
turns it into text, so tests check the data and the command line prints the text.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pipeline.errors import ConfigError

# The numeric fields of an evaluation result (a train result): per-seed members, aggregate
# metrics, per-step curves, seeds. Its other fields (config, runtime, versions, data,
# provenance, ...) are reported when they differ but never fail a comparison: runtime and
# versions name the machine.
EVALUATION_NUMBERS = ("members", "metrics", "curves", "seeds")

Keys = tuple[str | int, ...]
SHOWN = 20  # at most this many paths per list in the text report


# -- the data ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """The absolute difference of one numeric leaf present in both runs."""

    keys: Keys  # dict keys and list indices from the root
    value: float  # |A - B|

    @property
    def path(self) -> str:
        return dotted(self.keys)

    @property
    def metric(self) -> str:
        return metric_name(self.keys)


@dataclass(frozen=True)
class TreeDiff:
    """How two JSON trees differ, leaf by leaf."""

    differences: list[Difference]  # every numeric leaf on both sides (zero differences too)
    only_a: list[str]  # dotted paths of leaves in A only
    only_b: list[str]
    mismatched: list[tuple[str, object, object]]  # (path, A, B): non-numeric leaves that differ

    def largest(self) -> Difference | None:
        """The largest numeric difference (the first path where it occurs); None if none > 0."""
        best = max(self.differences, key=lambda d: d.value, default=None)
        return best if best is not None and best.value > 0 else None

    def roots(self) -> list[str]:
        """The top-level keys under which anything differs."""
        keys = [d.keys for d in self.differences if d.value > 0]
        paths = self.only_a + self.only_b + [p for p, _, _ in self.mismatched]
        return sorted({str(k[0]) for k in keys if k} | {p.split(".")[0] for p in paths})


@dataclass(frozen=True)
class MetricRow:
    """One row of the summary table: every value of one metric name (e.g. ``test``)."""

    metric: str
    count: int  # numeric values compared
    max_difference: float
    path: str | None  # where the largest difference occurs; None when every value is equal


@dataclass(frozen=True)
class RunFile:
    """One run's metrics.json: where it is and its sha256."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class EvaluationDiff:
    """One evaluation result file compared between the two runs."""

    name: str
    numbers: TreeDiff  # EVALUATION_NUMBERS fields only
    other_fields: list[str]  # other top-level fields that differ (not a failure)


@dataclass(frozen=True)
class EvaluationsDiff:
    """The evaluation results of two checkouts (results/evaluate/*.json)."""

    files: list[EvaluationDiff]
    only_a: list[str]  # file names in A only
    only_b: list[str]


@dataclass(frozen=True)
class Comparison:
    """Everything ``compare`` found about two runs."""

    a: RunFile
    b: RunFile
    byte_identical: bool
    metrics: TreeDiff
    rows: list[MetricRow]
    evaluations: EvaluationsDiff | None  # None when not both arguments are checkouts with results
    evaluations_note: str  # why the evaluations were (not) compared


# -- locating and reading the runs -------------------------------------------------------------

def locate_metrics(arg: Path) -> Path:
    """The metrics.json an argument names, so a user may point at whichever is at hand: the
    file, a reports/ directory, or a checkout."""
    if arg.is_file():
        return arg
    if arg.is_dir():
        for candidate in (arg / "metrics.json", arg / "reports" / "metrics.json"):
            if candidate.is_file():
                return candidate
        raise ConfigError(f"{arg}: a directory without metrics.json or reports/metrics.json; "
                          "give a metrics.json file, a reports/ directory or a checkout")
    raise ConfigError(f"{arg}: no such file or directory; give a metrics.json file, a reports/ "
                      "directory or a checkout directory")


def evaluations_dir(arg: Path) -> Path | None:
    """A checkout's results/evaluate/ when it holds result files, else None: only whole
    checkouts carry the per-seed numbers behind metrics.json."""
    if not (arg.is_dir() and (arg / "reports" / "metrics.json").is_file()):
        return None
    folder = arg / "results" / "evaluate"
    return folder if any(folder.glob("*.json")) else None


def load_json(path: Path) -> object:
    """A JSON file's contents, or an error that names the file (exit status 2, not a trace)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file ({exc})") from None


def sha256(path: Path) -> str:
    """The file's sha256, to say at a glance whether two runs wrote the same bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- comparing trees ---------------------------------------------------------------------------

def flatten(tree: object, keys: Keys = ()) -> dict[Keys, object]:
    """Every leaf of a JSON tree by its keys (list items by index); an empty dict or list is a
    leaf, so ``{}`` against a missing field still shows."""
    if isinstance(tree, dict) and tree:
        items = tree.items()
    elif isinstance(tree, list) and tree:
        items = enumerate(tree)
    else:
        return {keys: tree}
    out: dict[Keys, object] = {}
    for key, value in items:
        out.update(flatten(value, (*keys, key)))
    return out


def dotted(keys: Keys) -> str:
    """Keys as a dotted path, e.g. ``accuracy.colored_mnist.irm_paper.test``."""
    return ".".join(str(k) for k in keys) or "(root)"


def metric_name(keys: Keys) -> str:
    """The metric a leaf measures: its last dict key (list indices skipped), so ``test`` groups
    every dataset's and configuration's test accuracy."""
    names = [k for k in keys if isinstance(k, str)]
    return names[-1] if names else dotted(keys)


def is_number(value: object) -> bool:
    """An int or float, not a bool (JSON true/false are flags, not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def difference(a: float, b: float) -> float:
    """|a - b| on the decimal text JSON stores, so 60.363 against 60.063 is exactly 0.3 and a
    tolerance of 0.3 admits it. NaN equals NaN; NaN or an infinity against another value is
    infinitely far."""
    if a == b:
        return 0.0
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return float(abs(Decimal(repr(a)) - Decimal(repr(b))))


def compare_trees(a: object, b: object) -> TreeDiff:
    """Leaf by leaf: numeric differences, paths on one side only, non-numeric leaves that
    differ (equal strings and nulls are ignored)."""
    flat_a, flat_b = flatten(a), flatten(b)
    differences, mismatched = [], []
    for keys, va in flat_a.items():
        if keys not in flat_b:
            continue
        vb = flat_b[keys]
        if is_number(va) and is_number(vb):
            differences.append(Difference(keys, difference(va, vb)))
        elif va != vb:
            mismatched.append((dotted(keys), va, vb))
    return TreeDiff(differences,
                    only_a=[dotted(k) for k in flat_a if k not in flat_b],
                    only_b=[dotted(k) for k in flat_b if k not in flat_a],
                    mismatched=mismatched)


def metric_rows(differences: list[Difference]) -> list[MetricRow]:
    """One row per metric name (sorted): how many values, the largest difference, where."""
    groups: dict[str, list[Difference]] = {}
    for d in differences:
        groups.setdefault(d.metric, []).append(d)
    rows = []
    for metric in sorted(groups):
        largest = max(groups[metric], key=lambda d: d.value)
        rows.append(MetricRow(metric, len(groups[metric]), largest.value,
                              largest.path if largest.value > 0 else None))
    return rows


# -- evaluation results ------------------------------------------------------------------------

def compare_evaluation(name: str, a: dict, b: dict) -> EvaluationDiff:
    """One result file: its numeric fields leaf by leaf, its other fields only whether they
    differ (runtime and versions name the machine, so they may)."""
    numbers = compare_trees({k: a[k] for k in EVALUATION_NUMBERS if k in a},
                            {k: b[k] for k in EVALUATION_NUMBERS if k in b})
    rest = compare_trees({k: v for k, v in a.items() if k not in EVALUATION_NUMBERS},
                         {k: v for k, v in b.items() if k not in EVALUATION_NUMBERS})
    return EvaluationDiff(name, numbers, rest.roots())


def compare_evaluations(dir_a: Path, dir_b: Path) -> EvaluationsDiff:
    """Every result file of the two checkouts with the same name, and those in one only."""
    names_a = {p.name for p in dir_a.glob("*.json")}
    names_b = {p.name for p in dir_b.glob("*.json")}
    files = []
    for name in sorted(names_a & names_b):
        a, b = load_json(dir_a / name), load_json(dir_b / name)
        if not (isinstance(a, dict) and isinstance(b, dict)):
            raise ConfigError(f"{dir_a / name} / {dir_b / name}: not evaluation results "
                              "(a JSON object each)")
        files.append(compare_evaluation(name, a, b))
    return EvaluationsDiff(files, sorted(names_a - names_b), sorted(names_b - names_a))


# -- the whole comparison ----------------------------------------------------------------------

def compare_two_runs(arg_a: Path, arg_b: Path) -> Comparison:
    """Compare two runs, each a metrics.json file, a reports/ directory or a checkout."""
    path_a, path_b = locate_metrics(arg_a), locate_metrics(arg_b)
    metrics = compare_trees(load_json(path_a), load_json(path_b))
    eval_a, eval_b = evaluations_dir(arg_a), evaluations_dir(arg_b)
    if eval_a is not None and eval_b is not None:
        evaluations, note = compare_evaluations(eval_a, eval_b), f"{eval_a} against {eval_b}"
    else:
        evaluations = None
        note = "not compared (both arguments must be checkouts with results/evaluate/*.json)"
    return Comparison(RunFile(path_a, sha256(path_a)), RunFile(path_b, sha256(path_b)),
                      path_a.read_bytes() == path_b.read_bytes(), metrics,
                      metric_rows(metrics.differences), evaluations, note)


def tree_failures(where: str, tree: TreeDiff, tolerance: float) -> list[str]:
    """Why one compared tree fails the tolerance (empty when it passes)."""
    out = []
    over = [d for d in tree.differences if d.value > tolerance]
    if over:
        largest = max(over, key=lambda d: d.value)
        out.append(f"{where}: {len(over)} number(s) differ by more than {tolerance:g} "
                   f"(largest {largest.value:.6g} at {largest.path})")
    if tree.only_a or tree.only_b:
        out.append(f"{where}: {len(tree.only_a) + len(tree.only_b)} path(s) in one run only")
    if tree.mismatched:
        out.append(f"{where}: {len(tree.mismatched)} non-numeric value(s) differ")
    return out


def failures(comparison: Comparison, tolerance: float) -> list[str]:
    """Every reason the two runs are not the same within ``tolerance``; empty means exit 0."""
    out = tree_failures("metrics.json", comparison.metrics, tolerance)
    evaluations = comparison.evaluations
    if evaluations is not None:
        for file in evaluations.files:
            out += tree_failures(file.name, file.numbers, tolerance)
        if evaluations.only_a or evaluations.only_b:
            out.append(f"results/evaluate: {len(evaluations.only_a) + len(evaluations.only_b)}"
                       " file(s) in one run only")
    return out


def exit_status(comparison: Comparison, tolerance: float) -> int:
    """0 when every number is within ``tolerance`` and nothing is missing, else 1."""
    return 1 if failures(comparison, tolerance) else 0


# -- text --------------------------------------------------------------------------------------

def format_comparison(comparison: Comparison, tolerance: float) -> str:
    """The report ``python -m pipeline compare`` prints."""
    c = comparison
    lines = [f"A: {c.a.path}  sha256 {c.a.sha256}",
             f"B: {c.b.path}  sha256 {c.b.sha256}",
             f"metrics.json byte-identical: {'yes' if c.byte_identical else 'no'}", ""]
    lines += format_rows(c.rows)
    lines += format_tree_extras(c.metrics)
    lines += ["", f"evaluation results: {c.evaluations_note}"]
    if c.evaluations is not None:
        lines += format_evaluations(c.evaluations)
    problems = failures(c, tolerance)
    lines.append("")
    if problems:
        lines.append(f"DIFFERENT (tolerance {tolerance:g}):")
        lines += [f"  {p}" for p in problems]
    else:
        lines.append(f"same within tolerance {tolerance:g}")
    return "\n".join(lines)


def format_rows(rows: list[MetricRow]) -> list[str]:
    """The per-metric table of metrics.json."""
    if not rows:
        return ["no numeric value in both runs"]
    width = max(len("metric"), *(len(r.metric) for r in rows))
    lines = [f"{'metric':<{width}}  {'values':>6}  {'max |A-B|':>10}  at"]
    for r in rows:
        lines.append(f"{r.metric:<{width}}  {r.count:>6}  {r.max_difference:>10.6g}  "
                     f"{r.path or '-'}")
    return lines


def format_tree_extras(tree: TreeDiff, indent: str = "") -> list[str]:
    """Paths in one run only and non-numeric values that differ."""
    lines = []
    for side, paths in (("A", tree.only_a), ("B", tree.only_b)):
        if paths:
            lines.append(f"{indent}only in {side}: {', '.join(paths[:SHOWN])}"
                         f"{more(len(paths))}")
    if tree.mismatched:
        lines.append(f"{indent}non-numeric values that differ:")
        lines += [f"{indent}  {path}: A {json.dumps(va)}, B {json.dumps(vb)}"
                  for path, va, vb in tree.mismatched[:SHOWN]]
        if len(tree.mismatched) > SHOWN:
            lines.append(f"{indent}  {more(len(tree.mismatched)).strip()}")
    return lines


def more(count: int) -> str:
    """' ... and N more' when a list was cut to SHOWN items (curves can have thousands)."""
    return f" ... and {count - SHOWN} more" if count > SHOWN else ""


def format_evaluations(evaluations: EvaluationsDiff) -> list[str]:
    """One line per evaluation result file, then the files in one run only."""
    lines = []
    for file in evaluations.files:
        numbers = file.numbers
        largest = numbers.largest()
        if largest is None and not numbers.roots():
            text = "numbers identical"
        elif largest is None:
            text = f"numbers DIFFER in {', '.join(numbers.roots())}"
        else:
            text = (f"max |A-B| {largest.value:.6g} at {largest.path} "
                    f"(DIFFER in {', '.join(numbers.roots())})")
        lines.append(f"  {file.name}: {text}; other fields that differ: "
                     f"{', '.join(file.other_fields) or 'none'}")
        lines += format_tree_extras(numbers, indent="    ")
    for side, names in (("A", evaluations.only_a), ("B", evaluations.only_b)):
        if names:
            lines.append(f"  only in {side}: {', '.join(names)}")
    return lines
