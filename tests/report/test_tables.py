"""The report's tables (accuracy, protocol, SEM): golden outputs and their rules."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from pipeline.report.published import PUBLISHED_PROTOCOL_ROWS
from pipeline.report.tables import (
    accuracy_latex,
    accuracy_markdown,
    accuracy_rows,
    protocol_latex,
    protocol_markdown,
    protocol_rows,
    sem_table_latex,
    sem_table_markdown,
    sem_table_rows,
    tex_escape,
)
from pipeline.sem.study import sem_summary
from tests.sem._common import REPS, SETUPS, errors_of

DATA = Path(__file__).parent.parent / "data"


def _results() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((DATA / "eval_results").glob("*.json"))]


def _golden_sem_rows() -> list[dict]:
    return json.loads((DATA / "sem_rows.json").read_text())


def test_tex_escape_escapes_the_backslash_first():
    assert tex_escape(r"a_b 5% & #1 \x") == r"a\_b 5\% \& \#1 \textbackslash{}x"


# -- the accuracy table -------------------------------------------------------------------------

def test_accuracy_tables_match_the_committed_golden_output():
    # regenerate with the snippet in tests/data/README.md after an intended change
    assert accuracy_markdown(_results()) == (DATA / "golden" / "accuracy.md").read_text()
    assert accuracy_latex(_results()) == (DATA / "golden" / "accuracy.tex").read_text()


def test_published_numbers_appear_only_for_the_full_data_protocol():
    rows = {(r["dataset"], r["reduced"], r["configuration"]): r for r in accuracy_rows(_results())}
    full = rows[("colored_mnist", False, "irm selected by irm_paper")]
    assert full["published_test"] == (66.902, 2.5403)
    assert round(full["delta_test"], 2) == round(66.55 - 66.902, 2)
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


# -- the protocol table -------------------------------------------------------------------------

def test_tables_state_the_data_the_selection_and_hide_published_deltas_on_reduced_data(
        protocol_results):
    settings, results = protocol_results
    rows = protocol_rows(results)
    assert [r["row"] for r in rows] == ["erm", "vrex"]
    assert all(r["published"] is None for r in rows)  # Fashion-MNIST, reduced: no anchor
    md = protocol_markdown(results, settings.preset)
    assert "USES TEST DATA" in md and "REDUCED" in md
    assert "Deviation: 2 seeds (the published runs: 10)" in md
    assert "vrex_penalty=squared_difference" in md
    for name, pub in PUBLISHED_PROTOCOL_ROWS.items():
        assert f"{name} {pub['train'][0]} / {pub['test'][0]}" in md
    tex = protocol_latex(results, settings.preset)
    assert tex.count(r"\\") >= len(rows) + len(PUBLISHED_PROTOCOL_ROWS)
    assert r"\toprule" in tex and "colored\\_fashion\\_mnist" in tex


def test_published_rows_appear_beside_full_mnist_results_only(protocol_results):
    _, results = protocol_results
    fake = copy.deepcopy(results[0])
    fake["data"].update({"dataset": "colored_mnist", "reduced": False})
    (row,) = protocol_rows([fake])
    assert row["published"] == PUBLISHED_PROTOCOL_ROWS["erm"]
    fake["data"]["reduced"] = True
    assert protocol_rows([fake])[0]["published"] is None


# -- the SEM table ------------------------------------------------------------------------------

def test_sem_tables_match_the_committed_golden_output():
    # regenerate with the snippet in tests/data/README.md after an intended change
    assert sem_table_markdown(_golden_sem_rows()) == (DATA / "golden" / "sem.md").read_text()
    assert sem_table_latex(_golden_sem_rows()) == (DATA / "golden" / "sem.tex").read_text()


def test_sem_table_rows_are_the_summary_with_the_published_numbers_beside_it(sem_rows):
    table = sem_table_rows(sem_rows)
    assert [{k: v for k, v in s.items() if not k.startswith("published")}
            for s in table] == sem_summary(sem_rows)
    feu_irm = next(s for s in table if (s["setup"], s["method"]) == ("FEU", "irm"))
    values = errors_of(sem_rows, "FEU", "irm", "noncausal")
    assert feu_irm["n"] == REPS
    assert feu_irm["noncausal_mean"] == pytest.approx(values.mean())
    assert feu_irm["published_noncausal_mean"] == 0.33333
    assert feu_irm["published_noncausal_std"] == 0.01568


def test_sem_markdown_table(sem_rows):
    table = sem_table_markdown(sem_rows)
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(SETUPS) * 2
    assert all(line.count("|") == 9 for line in lines)
    assert "| FEU | erm | 8 | 0." in table and "0.82076 ± 0.01378" in table
    assert re.search(r"\| FOU \| irm \| 8 \| \d\.\d{5} ± \d\.\d{5} \|", table)
    for words in ("8 reps", "last environment (sigma=5)", "1000 Adam iterations", "200 reps"):
        assert words in table
    assert table == sem_table_markdown(list(reversed(sem_rows)))  # order-independent


def test_sem_latex_table(sem_rows):
    table = sem_table_latex(sem_rows, label="tab:sem-test")
    body = table.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == len(SETUPS) * 2
    assert all(line.count(" & ") == 7 and line.endswith(r"\\") for line in body)
    assert r"\toprule" in table and r"\label{tab:sem-test}" in table
    assert r"$\sigma$=5" in table and "200 reps" in table
    assert not re.search(r"(?<!\\)_", table.replace(r"\label{tab:sem-test}", ""))


def test_icp_in_the_sem_tables(sem_rows, sem_icp_rows):
    both = sem_rows + sem_icp_rows
    table = sem_table_markdown(both)
    assert re.search(r"\| FEU \| icp \| 8 \| 1\.00000 ± 0\.00000 \| \d\.\d{5} ± \d\.\d{5} \| "
                     r"1\.00000 ± 0\.00000 \| 0\.80350 ± 0\.32425 \| — \|", table)
    assert "ICP, on all environments" in table and "alpha=0.05" in table
    latex = sem_table_latex(both)
    assert "FOU & ICP & 8 & " in latex and r"$\alpha$=0.05" in latex
    assert [s["method"] for s in sem_table_rows(both) if s["setup"] == "FOS"] == [
        "erm", "icp", "irm"]
