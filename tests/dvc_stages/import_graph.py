"""The project's import graph, read from the source: what a stage script can execute.

Every ``import`` counts, function-level ones included (the AST is walked, not ``sys.modules``
after import), so a lazily imported module cannot hide from a stage's DVC deps. An import under
``if TYPE_CHECKING:`` never runs: it is no edge. ``python -m tests.dvc_stages.import_graph
stages.search`` prints a stage's code deps as dvc.yaml lists them; ``--rewrite-dvc-yaml`` puts
every stage's into dvc.yaml (after an import changed; tests/dvc_stages checks they agree).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("pipeline", "stages")


def module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def imports_of(path: Path, name: str) -> set[str]:
    """The project modules that module ``name`` (file ``path``) imports when it runs."""
    tree = ast.parse(path.read_text())
    type_only = {id(n) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            for alias in node.names:  # a submodule imported by name is an edge to it
                full = f"{base}.{alias.name}"
                if module_file(full):
                    found.add(full)
    return {m for m in found if m.split(".")[0] in PROJECT and module_file(m)} - {name}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_closure(module: str) -> set[Path]:
    """Files (relative to the repo) of ``module`` and every project module it imports;
    importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += _parents(name)
        todo += sorted(imports_of(path, name))
    return {p.relative_to(ROOT) for p in seen}


def library_graph() -> dict[str, set[str]]:
    """``pipeline`` module -> the ``pipeline`` modules it imports (no package-parent edges)."""
    graph = {}
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        graph[name] = {m for m in imports_of(path, name) if m.startswith("pipeline")}
    return graph


def dvc_deps(module: str) -> list[str]:
    """The closure as dvc.yaml lists it: a package directory when all its files are in it."""
    files = import_closure(module)
    out = set()
    for path in files:
        top = path.parts[:2]
        package = ROOT.joinpath(*top)
        if len(path.parts) > 2 and package.is_dir():
            every = {p.relative_to(ROOT) for p in package.rglob("*.py")}
            if every <= files:
                out.add(str(Path(*top)))
                continue
        out.add(str(path))
    return sorted(out)


def rewrite_dvc_yaml(path: Path = ROOT / "dvc.yaml") -> None:
    """Replace every stage's code deps (under pipeline/ and stages/) with its import closure;
    the other deps (data, results, profiles), comments and order of the file stay."""
    lines, out, script = path.read_text().split("\n"), [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        found = re.search(r"python -m (stages\.\w+)", line)
        script = found.group(1) if found else script
        out.append(line)
        i += 1
        deps = re.match(r"(\s+)deps:", line)
        if not deps:
            continue
        item = deps.group(1) + "  - "
        kept = []
        while i < len(lines) and lines[i].startswith(item):
            if not lines[i][len(item):].startswith(PROJECT):
                kept.append(lines[i])
            i += 1
        out += kept + [item + dep for dep in dvc_deps(script)]
    path.write_text("\n".join(out))


if __name__ == "__main__":
    if sys.argv[1:] == ["--rewrite-dvc-yaml"]:
        rewrite_dvc_yaml()
    for stage in (a for a in sys.argv[1:] if not a.startswith("--")):
        print(f"{stage}:")
        print("\n".join(f"  - {dep}" for dep in dvc_deps(stage)))
