"""The shape of the code, checked: no import cycle among matloop's own modules (imports inside functions
included), and the layers point down (models < conf < tasks < flows < benchmarks: model code knows no configuration
file, conf composes the models' typed configs)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "conf", "tasks", "flows", "benchmarks")
LAYER = {name: i for i, name in enumerate(PACKAGES)}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the matloop modules it imports anywhere in its body (``from a.b import c`` counts as a.b, and
    as a.b.c when that is a module)."""
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "tasks.context" in graph["tasks.acquire"]  # imported inside a function there
    assert "flows.cli_common" in graph["flows.store_cmd"]


def test_no_import_cycles():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_layers_point_down():
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                    if LAYER[t.split(".")[0]] > LAYER[m.split(".")[0]])
    assert not upward, f"imports that point up a layer: {upward}"
