"""`python -m pipeline compare`: how far two runs' numbers differ, and its exit status."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.compare import compare_two_runs, difference, exit_status, flatten, format_comparison

METRICS = {
    "accuracy": {
        "colored_mnist": {
            "erm_paper": {"diverged": 0, "seeds": 3, "test": 24.2897, "test_std": 0.1497,
                          "train": 99.848},
            "irm_paper": {"diverged": 0, "seeds": 3, "test": 60.063, "test_std": 5.3267,
                          "train": 76.5967},
        },
    },
    "sem": {"FEU": {"erm": {"causal_error": 0.826231, "noncausal_error": 0.823566},
                    "irm": {"causal_error": 0.262058, "noncausal_error": None}}},
}

EVALUATION = {
    "config": {"dataset": "colored_mnist", "method": "irm"},
    "seeds": [1000, 1001],
    "members": [{"seed": 1000, "status": "ok", "metrics": {"test_acc": 0.6}},
                {"seed": 1001, "status": "ok", "metrics": {"test_acc": 0.62}}],
    "metrics": {"test_acc": {"mean": 0.61, "std": 0.01, "n": 2, "n_diverged": 0}},
    "curves": {"step": [0, 1, 2], "test_acc": [[0.5, 0.55, 0.6], [0.5, 0.57, 0.62]]},
    "runtime": {"device": "cpu", "threads": 2},
}


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


def checkout(root: Path, metrics: dict, evaluations: dict[str, dict]) -> Path:
    write_json(root / "reports" / "metrics.json", metrics)
    for name, result in evaluations.items():
        write_json(root / "results" / "evaluate" / name, result)
    return root


def row(comparison, metric: str):
    return next(r for r in comparison.rows if r.metric == metric)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["compare", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_identical_files_are_byte_identical_and_pass(tmp_path, capsys):
    a = write_json(tmp_path / "a" / "metrics.json", METRICS)
    b = write_json(tmp_path / "b" / "metrics.json", METRICS)
    comparison = compare_two_runs(a, b)
    assert comparison.byte_identical
    assert comparison.a.sha256 == comparison.b.sha256 and len(comparison.a.sha256) == 64
    assert {r.metric for r in comparison.rows} == {
        "diverged", "seeds", "test", "test_std", "train", "causal_error", "noncausal_error"}
    assert all(r.max_difference == 0 and r.path is None for r in comparison.rows)
    assert row(comparison, "test").count == 2 and row(comparison, "causal_error").count == 2
    assert not (comparison.metrics.only_a or comparison.metrics.only_b
                or comparison.metrics.mismatched)
    assert exit_status(comparison, 0.0) == 0
    status, out, _ = run_cli(capsys, str(a), str(b))
    assert status == 0
    assert "byte-identical: yes" in out and comparison.a.sha256 in out
    assert "same within tolerance 0" in out


def test_a_changed_test_value_is_found_and_judged_by_the_tolerance(tmp_path, capsys):
    changed = copy.deepcopy(METRICS)
    changed["accuracy"]["colored_mnist"]["irm_paper"]["test"] = 60.363
    a = write_json(tmp_path / "a" / "reports" / "metrics.json", METRICS)
    b = write_json(tmp_path / "b" / "reports" / "metrics.json", changed)
    comparison = compare_two_runs(a.parent, b.parent)  # reports/ directories
    assert not comparison.byte_identical
    test = row(comparison, "test")
    assert test.max_difference == pytest.approx(0.3)
    assert test.path == "accuracy.colored_mnist.irm_paper.test"
    assert row(comparison, "train").max_difference == 0
    assert exit_status(comparison, 0.0) == 1
    assert exit_status(comparison, 0.5) == 0
    assert exit_status(comparison, 0.3) == 0  # differences are exact on the stored decimals
    status, out, _ = run_cli(capsys, str(a), str(b))
    assert status == 1
    assert "byte-identical: no" in out
    test_line = next(line for line in out.splitlines() if line.startswith("test "))
    assert "0.3" in test_line and "accuracy.colored_mnist.irm_paper.test" in test_line
    assert "DIFFERENT" in out
    assert run_cli(capsys, str(a), str(b), "--tolerance", "0.5")[0] == 0


def test_a_key_missing_on_one_side_is_listed_and_fails(tmp_path, capsys):
    fewer = copy.deepcopy(METRICS)
    del fewer["accuracy"]["colored_mnist"]["erm_paper"]["test_std"]
    fewer["sem"]["FEU"]["irm"]["noncausal_error"] = 0.3  # null against a number
    a = checkout(tmp_path / "a", METRICS, {})
    b = checkout(tmp_path / "b", fewer, {})
    comparison = compare_two_runs(a, b)
    assert comparison.metrics.only_a == ["accuracy.colored_mnist.erm_paper.test_std"]
    assert comparison.metrics.only_b == []
    assert comparison.metrics.mismatched == [("sem.FEU.irm.noncausal_error", None, 0.3)]
    assert exit_status(comparison, 100.0) == 1
    status, out, _ = run_cli(capsys, str(a), str(b), "--tolerance", "100")
    assert status == 1
    assert "only in A: accuracy.colored_mnist.erm_paper.test_std" in out
    assert "sem.FEU.irm.noncausal_error: A null, B 0.3" in out


def test_two_checkouts_compare_their_evaluation_results(tmp_path, capsys):
    other = copy.deepcopy(EVALUATION)
    other["curves"]["test_acc"][1][2] = 0.625
    other["runtime"]["threads"] = 16  # another machine: reported, not a failure
    a = checkout(tmp_path / "a", METRICS,
                 {"x.json": EVALUATION, "same.json": EVALUATION, "gone.json": EVALUATION})
    b = checkout(tmp_path / "b", METRICS, {"x.json": other, "same.json": EVALUATION})
    comparison = compare_two_runs(a, b)
    assert comparison.byte_identical
    files = {f.name: f for f in comparison.evaluations.files}
    assert set(files) == {"x.json", "same.json"}
    largest = files["x.json"].numbers.largest()
    assert largest.path == "curves.test_acc.1.2"
    assert largest.value == pytest.approx(0.005)
    assert largest.metric == "test_acc"
    assert files["x.json"].other_fields == ["runtime"]
    assert files["same.json"].numbers.largest() is None
    assert files["same.json"].numbers.roots() == [] and files["same.json"].other_fields == []
    assert comparison.evaluations.only_a == ["gone.json"]
    assert exit_status(comparison, 0.01) == 1  # gone.json is missing in B
    (a / "results" / "evaluate" / "gone.json").unlink()
    comparison = compare_two_runs(a, b)
    assert exit_status(comparison, 0.01) == 0
    assert exit_status(comparison, 0.001) == 1
    status, out, _ = run_cli(capsys, str(a), str(b))
    assert status == 1
    assert "x.json: max |A-B| 0.005 at curves.test_acc.1.2 (DIFFER in curves)" in out
    assert "other fields that differ: runtime" in out
    assert "same.json: numbers identical" in out


def test_evaluations_are_compared_only_between_checkouts(tmp_path):
    a = checkout(tmp_path / "a", METRICS, {"x.json": EVALUATION})
    comparison = compare_two_runs(a, a / "reports" / "metrics.json")
    assert comparison.evaluations is None
    assert "not compared" in format_comparison(comparison, 0.0)


def broken_json(tmp: Path) -> Path:
    path = tmp / "broken.json"
    path.write_text("{")
    return path


@pytest.mark.parametrize("make", [
    lambda tmp: tmp / "does-not-exist",
    lambda tmp: tmp,  # a directory without metrics.json
    broken_json,
])
def test_a_bad_argument_exits_2_and_names_it(tmp_path, capsys, make):
    bad = make(tmp_path)
    good = write_json(tmp_path / "good" / "metrics.json", METRICS)
    status, out, err = run_cli(capsys, str(good), str(bad))
    assert status == 2
    assert str(bad) in err and "error:" in err
    assert out == ""


def test_a_negative_tolerance_is_refused(tmp_path, capsys):
    good = write_json(tmp_path / "metrics.json", METRICS)
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(good), str(good), "--tolerance", "-1"])
    assert exc.value.code == 2
    assert "number >= 0" in capsys.readouterr().err


def test_flatten_and_difference_edge_cases():
    assert flatten({"a": [1, {"b": 2}], "c": {}, "d": None}) == {
        ("a", 0): 1, ("a", 1, "b"): 2, ("c",): {}, ("d",): None}
    assert difference(60.363, 60.063) == 0.3
    assert difference(math.nan, math.nan) == 0.0
    assert difference(math.nan, 1.0) == math.inf
    assert difference(3, 3.0) == 0.0
