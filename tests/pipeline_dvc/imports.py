"""The pipeline source files a stage script can execute: its static import closure.

Function-level imports count too (the AST is walked, not ``sys.modules`` after import), so a
lazily imported module cannot hide from the stage's DVC deps.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def _imported(path: Path, package: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}  # submodules imported by name
    return {n for n in names if n.split(".")[0] in ("pipeline", "stages")}


def import_closure(module: str) -> set[Path]:
    """Files (relative to the repo) of ``module`` and every project module it imports."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for parent in _parents(name):  # importing a.b.c runs a/__init__ and a/b/__init__
            todo.append(parent)
        todo += sorted(_imported(path, package))
    return {p.relative_to(ROOT) for p in seen}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]
