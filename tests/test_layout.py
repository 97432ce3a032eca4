"""The layout keeps the data flow one way: no import cycles, the engine never touches storage or Spark,
analysis never touches the engine, and no module grows past about 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("sim", "analysis"):
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(project modules, top-level libraries) imported anywhere in the file but ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    deps, libs = set(), set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for n in names:
            libs.add(n.split(".")[0])
            while n and n not in MODULES:
                n = n.rpartition(".")[0]
            # A package's __init__ re-exporting its own modules is not a dependency of theirs.
            if n and n != name and not name.startswith(n + "."):
                deps.add(n)
    return deps, libs


GRAPH, LIBS = {}, {}
for _name, _path in MODULES.items():
    GRAPH[_name], LIBS[_name] = _imports(_name, _path)


def _reach(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for d in GRAPH[todo.pop()]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_no_import_cycles():
    cycles = sorted(m for m in GRAPH if m in _reach(m) and not m.startswith("sim.cli"))
    assert cycles == []


@pytest.mark.parametrize("layer", ["sim.scenario", "sim.model", "sim.engine", "sim.batch"])
def test_the_engine_side_never_imports_storage_or_spark(layer):
    for m in (m for m in GRAPH if m == layer or m.startswith(layer + ".")):
        used = {lib for d in {m} | _reach(m) for lib in LIBS[d]}
        assert not used & {"deltalake", "pyspark"}, m


def test_simpy_lives_in_the_engine():
    assert sorted(m for m in MODULES if "simpy" in LIBS[m]) == ["sim.engine.customer", "sim.engine.month", "sim.engine.process"]


def test_analysis_never_imports_the_engine():
    for m in (m for m in GRAPH if m.startswith("analysis")):
        used = {lib for d in {m} | _reach(m) for lib in LIBS[d]}
        assert "simpy" not in used, m
        assert not {d for d in _reach(m) if d.startswith(("sim.engine", "sim.model", "sim.execute"))}, m


def test_layers_import_only_earlier_layers():
    order = ["sim.errors", "sim.contracts", "sim.scenario", "sim.model", "sim.engine", "sim.batch", "sim.lake",
             "sim.quality", "sim.execute", "sim.fit", "sim.api", "sim.bench", "sim.bench_history",
             "sim.cli"]

    def layer(m: str) -> int | None:
        for i, prefix in enumerate(order):
            if m == prefix or m.startswith(prefix + "."):
                return i
        return None

    for m, deps in GRAPH.items():
        if layer(m) is None:
            continue
        for d in deps:
            if layer(d) is not None:
                assert layer(d) <= layer(m), f"{m} imports {d}"


def test_no_module_is_over_400_lines():
    assert {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES} == {}
