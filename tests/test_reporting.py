"""The accuracy table of final evaluations: a golden-output test and its rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from pipeline.reporting import accuracy_latex, accuracy_markdown, accuracy_rows

DATA = Path(__file__).parent / "data"


def _results() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((DATA / "eval_results").glob("*.json"))]


def test_tables_match_the_committed_golden_output():
    # regenerate with the snippet in tests/data/README.md after an intended change
    assert accuracy_markdown(_results()) == (DATA / "golden" / "accuracy.md").read_text()
    assert accuracy_latex(_results()) == (DATA / "golden" / "accuracy.tex").read_text()


def test_published_numbers_appear_only_for_the_full_data_protocol():
    rows = {(r["dataset"], r["reduced"], r["configuration"]): r for r in accuracy_rows(_results())}
    full = rows[("colored_mnist", False, "irm selected by irm_paper")]
    assert full["published_test"] == (66.9, 2.5)
    assert round(full["delta_test"], 2) == round(66.55 - 66.9, 2)
    reduced = rows[("colored_mnist", True, "irm_paper")]
    assert reduced["published_test"] is None and reduced["delta_test"] is None
    fashion = rows[("colored_fashion_mnist", False, "irm selected by train_domain_val")]
    assert fashion["published_test"] is None


def test_caption_flags_test_data_selection_and_reduced_data():
    text = accuracy_markdown(_results())
    assert "Selected with test data (optimistic): irm selected by irm_paper, irm_paper." in text
    assert "REDUCED data (smoke test, not comparable to published numbers): colored_mnist." in text
    honest = [r for r in copy.deepcopy(_results())
              if not r["provenance"]["uses_test_data"] and not r["data"]["reduced"]]
    assert "Selected with test data" not in accuracy_markdown(honest)
    assert "REDUCED" not in accuracy_markdown(honest)


def test_a_scaled_down_run_is_never_presented_as_a_reproduction_check():
    results = copy.deepcopy(_results())
    full = [r for r in results if r["data"]["dataset"] == "colored_mnist"
            and not r["data"]["reduced"]][0]
    assert "†" not in accuracy_markdown([full])  # the published protocol: a plain Δ
    full["seeds"] = full["seeds"][:3]
    full["config"]["dtype"] = "bf16"
    full["provenance"]["search_trials"] = 4
    text = accuracy_markdown([full])
    assert " †" in text and "not a reproduction check" in text
    assert "3 seeds, 4-trial search, dtype=bf16" in text
    assert r"$^\dagger$" in accuracy_latex([full])
