"""The layout shows the architecture: packages by concern, imports running one way.

config -> core -> tracking -> analysis -> jobs -> benchmarks -> entry points
(src/run.py, report.py, predict.py, bench.py). A module may import from its own
package or from a package to its left, never to its right; nothing imports an
entry point. Read from the source with `ast`, so it costs no imports.
"""
from __future__ import annotations

import ast

from helpers import PROJECT_ROOT

LAYERS = ["config", "core", "tracking", "analysis", "jobs", "benchmarks"]
ENTRY_POINTS = {"run", "report", "predict", "bench"}
SRC = PROJECT_ROOT / "src"


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts[0] != "src" or len(parts) < 2:
        raise ValueError(module)
    if parts[1] in ENTRY_POINTS:
        return len(LAYERS)
    return LAYERS.index(parts[1])


def project_imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "src":
            if node.module == "src":  # from src import core
                yield from (f"src.{alias.name}" for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "src")


def test_every_module_belongs_to_a_layer_or_is_an_entry_point():
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if relative.name == "__init__.py" and len(relative.parts) == 1:
            continue
        assert relative.parts[0] in LAYERS or relative.stem in ENTRY_POINTS, relative


def test_imports_run_one_way():
    wrong = []
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if len(relative.parts) == 1 and relative.stem not in ENTRY_POINTS:
            continue
        module = "src." + ".".join(relative.with_suffix("").parts)
        here = layer_of(module)
        for imported in project_imports(path):
            there = layer_of(imported)
            if there > here or (there == len(LAYERS) and imported != module):
                wrong.append(f"{module} imports {imported}")
    assert not wrong, wrong


def test_no_import_cycles_between_modules():
    graph = {}
    for path in SRC.rglob("*.py"):
        module = "src." + ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = {m for m in project_imports(path) if m != module}
    seen, stack = set(), []

    def visit(module):
        if module in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(module):] + [module]))
        if module in seen or module not in graph:
            return
        stack.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        stack.pop()
        seen.add(module)

    for module in sorted(graph):
        visit(module)
