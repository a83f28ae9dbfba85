"""The shape of the code: no import cycles, training never imports presentation, a short README.

The import graph is read from the source (every ``import``, function-level ones included; an
import under ``if TYPE_CHECKING:`` never runs, so it is no edge), as DVC's code deps are.
"""

from __future__ import annotations

import pytest

from tests.dvc_stages.import_graph import ROOT, import_closure, library_graph

# what only the report reads: tables, captions, published numbers, figures
PRESENTATION = "pipeline/report"
TRAINING_STAGES = ("stages.make_envs", "stages.search", "stages.evaluate",
                   "stages.evaluate_protocol", "stages.evaluate_sem")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_library_has_no_import_cycle():
    graph = library_graph()
    assert "pipeline.methods" in graph["pipeline.config"]  # the walk sees real edges
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("stage", TRAINING_STAGES)
def test_training_stages_import_no_presentation_code(stage):
    """Editing a caption, a table or a published number must not re-run any training."""
    closure = {str(p) for p in import_closure(stage)}
    assert not {p for p in closure if p.startswith(PRESENTATION)}, closure


def test_readme_is_an_entry_point():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024
    for needle in ("make reproduce", "make test", "docs/"):
        assert needle in readme


def test_citations_name_upstream_sources_not_a_document_users_lack():
    """Sources are cited by repository@commit and path (or paper section), never by the
    sections of a notes file that is not in the repository."""
    files = [*ROOT.glob("*.md"), *ROOT.glob("*.yaml"), *(ROOT / "docs").rglob("*.md"),
             *(ROOT / "pipeline").rglob("*.py"), *(ROOT / "stages").rglob("*.py"),
             *(ROOT / "profiles").glob("*.yaml")]
    offending = [f"{p.relative_to(ROOT)}: {needle}" for p in files
                 for needle in ("irm-protocols", "reference section", "../shared")
                 if needle in p.read_text()]
    assert offending == []
