"""The packages' import direction, read from the source with ``ast``: every import counts, at module top or
inside a function, since an import hidden in a function is still a dependency (and hid every cycle we had).

    gridwatch  <-  detectors  <-  notifiers  <-  streams  <-  history  <-  console  <-  devtools

A package may import itself and the packages to its left; nothing imports ``devtools`` (the simulator, replay,
local broker, sandbox, backtest and demo), and the ``gridwatch`` command reaches every package only through
the ``gridwatch.commands`` entry points (pyproject.toml), never by an import. Between modules there is no
cycle, and modules of our own are imported at module top: a function-local import is kept only for a heavy
optional third-party dependency (Prophet, alembic), with a comment on its line or the line above saying why.
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("gridwatch", "detectors", "notifiers", "streams", "history", "console", "devtools")
RANK = {name: i for i, name in enumerate(LAYERS)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in LAYERS for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = modules()


class Import:
    __slots__ = ("source", "target", "line", "local")

    def __init__(self, source: str, target: str, line: int, local: bool) -> None:
        self.source, self.target, self.line, self.local = source, target, line, local

    def __repr__(self) -> str:
        where = "in a function" if self.local else "at module top"
        return f"{MODULES[self.source].relative_to(ROOT)}:{self.line} imports {self.target} ({where})"


def _resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) is, or None for a third-party one."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> list[Import]:
    """Every import of one of our modules in ``module``, with its line and whether it is inside a function.

    ``from pkg import mod`` counts as an import of ``pkg.mod`` when that is a module, else of ``pkg``.
    """
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = _resolve(alias.name)
                    if target:
                        out.append(Import(module, target, child.lineno, local))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    target = _resolve(f"{base}.{alias.name}") or _resolve(base)
                    if target:
                        out.append(Import(module, target, child.lineno, local))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return out


IMPORTS = [imp for module in MODULES for imp in imports_of(module)]


def layer(module: str) -> str:
    return module.split(".")[0]


def test_the_layers_are_all_our_packages():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {p.split(".")[0] for p in setuptools["packages"]} == set(LAYERS)


def test_every_import_goes_down_the_layers():
    wrong = [imp for imp in IMPORTS if RANK[layer(imp.target)] > RANK[layer(imp.source)]]
    assert not wrong, "imports against " + " <- ".join(LAYERS) + ":\n" + "\n".join(map(repr, wrong))


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in IMPORTS:
        if imp.target != imp.source and not MODULES[imp.source].name == "__init__.py":
            graph[imp.source].add(imp.target)
    cycles, state, stack = [], {}, []

    def walk(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(MODULES):
        if node not in state:
            walk(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_our_modules_are_imported_at_module_top():
    local = [imp for imp in IMPORTS if imp.local]
    assert not local, "function-local imports of our own modules:\n" + "\n".join(map(repr, local))


def test_a_function_local_import_says_why():
    """Third-party imports inside a function are for heavy optional dependencies only, with the reason."""
    silent = []
    for module, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    # the import's own lines, the imports right above it, and the line above those
                    first = node.lineno - 1
                    while first > 0 and lines[first - 1].strip().startswith(("import ", "from ")):
                        first -= 1
                    near = lines[max(first - 1, 0): node.end_lineno]
                    if not any("#" in text for text in near):
                        silent.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, "function-local imports without a reason:\n" + "\n".join(sorted(set(silent)))


# ------------------------------------------------------------------------ the checker itself

def test_the_checker_sees_relative_and_function_local_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "detectors"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n\ndef f():\n    from streams import worker\n")
    (pkg / "b.py").write_text("from .a import f\n")
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "__init__.py").write_text("")
    (tmp_path / "streams" / "worker.py").write_text("")
    fake = {module_name_in(tmp_path, p): p for p in tmp_path.rglob("*.py")}
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "MODULES", fake)
    found = {(i.source, i.target, i.local) for i in imports_of("detectors.a") + imports_of("detectors.b")}
    assert found == {("detectors.a", "detectors.b", False), ("detectors.a", "streams.worker", True),
                     ("detectors.b", "detectors.a", False)}


def module_name_in(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
