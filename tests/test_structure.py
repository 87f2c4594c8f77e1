"""The package's shape: no import cycles between its modules, no duplicated helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "mobilesam"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports() -> dict[str, set[str]]:
    """module -> package modules it imports anywhere (top level, functions, TYPE_CHECKING)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_pkg, node)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                # the longest package module the import names (a function import names its module)
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and not (is_pkg and t.startswith(name)):
                    graph[name].add(t)
    return graph


def _is_package_init_edge(a: str, b: str) -> bool:
    """``pkg/__init__`` re-exporting its own submodules is not a dependency between modules."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_two_modules_import_each_other():
    graph = _imports()
    mutual = sorted(
        f"{a} <-> {b}"
        for a, deps in graph.items()
        for b in deps
        if a < b and a in graph.get(b, set()) and not _is_package_init_edge(a, b)
    )
    assert mutual == []


def test_no_import_cycles():
    graph = {
        a: {b for b in deps if not _is_package_init_edge(a, b)} for a, deps in _imports().items()
    }
    seen: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in seen:
                visit(nxt, stack + [nxt])
        seen[node] = 2

    for start in sorted(graph):
        if start not in seen:
            visit(start, [start])
    assert cycles == []


def test_the_detector_sees_a_cycle(tmp_path, monkeypatch):
    """The checks above can fail: a planted pair of modules importing each other is found."""
    pkg = tmp_path / "mobilesam"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setattr(__import__(__name__), "PKG", pkg)
    graph = _imports()
    assert "mobilesam.b" in graph["mobilesam.a"] and "mobilesam.a" in graph["mobilesam.b"]
    with pytest.raises(AssertionError):
        test_no_two_modules_import_each_other()
    with pytest.raises(AssertionError):
        test_no_import_cycles()


def test_test_file_names_are_unique():
    """The tests folders are not packages: two test files with one name break collection."""
    tests = Path(__file__).resolve().parent
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
