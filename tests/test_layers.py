"""The import contract: pydispatch's subpackages are layers, and imports only go down.

Every import counts: module level, inside functions, under ``TYPE_CHECKING``, and
``importlib.import_module("pydispatch....")`` with a literal name. The sources are parsed with
``ast``; nothing is imported. The checks are run on the real tree and, to show that they can
fail, on small trees written here with a cycle or an upward import on purpose.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A unit may import units of a lower rank only (and itself). ``__init__`` (the
# lazy public facade, which names everything) and ``__main__`` stand above all.
LAYERS: list[set[str]] = [
    {"_core", "_exports", "errors"},
    {"partition"},
    {"solver"},
    {"scheduling"},
    {"wire"},
    {"monitor"},
    {"runtime"},
    {"plan"},
    {"dataflow"},
    {"stream"},
    {"table"},
    {"cli"},
    {"__init__", "__main__"},
]

# Imports up the layers that are allowed, each for the reason given (and said at the import).
DOCUMENTED_UPWARD: dict[tuple[str, str], str] = {
    ("pydispatch.dataflow.master_process", "pydispatch.stream"): (
        "the job-master launcher preloads the user API before it forks masters: a submitted "
        "job is pickled in its names (restart strategies), so each master would import it"
    ),
}

# Cycles between modules of one subpackage, each documented at its imports. A cycle not listed
# here fails, and so does a listed one that no longer exists (keep the list true).
DOCUMENTED_CYCLES: dict[frozenset[str], str] = {
    frozenset({"pydispatch.stream._environment", "pydispatch.stream._datastream"}): (
        "a stream holds its environment (a type only, under TYPE_CHECKING); the environment "
        "makes streams"
    ),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> Iterator[tuple[list[str], int]]:
    """What ``path`` imports, absolute, with the line: for each imported name, the modules it
    may be, most specific first (``from . import x``: the module ``x``, else the package)."""
    here = module_name(path, root)
    package = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield [alias.name], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                yield [f"{target}.{alias.name}", target], node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield [node.args[0].value], node.lineno


def module_graph(root: Path, package: str) -> dict[str, set[tuple[str, int]]]:
    """Module -> the modules of ``package`` it imports (names that are modules only)."""
    files = sorted((root / package).rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    # the compiled extension has no source, but is a module all the same
    modules |= {
        module_name(f.with_name(f.name.split(".")[0] + ".py"), root)
        for f in (root / package).rglob("*.so")
    }
    graph: dict[str, set[tuple[str, int]]] = {}
    for f in files:
        name = module_name(f, root)
        edges = graph.setdefault(name, set())
        for candidates, line in imports_of(f, root):
            target = next((c for c in candidates if c in modules), None)
            if target is not None and target != name:
                edges.add((target, line))
    return graph


def unit_of(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def rank_of(unit: str) -> int:
    for rank, units in enumerate(LAYERS):
        if unit in units:
            return rank
    raise AssertionError(f"{unit!r} is in no layer: add it to LAYERS in {__file__}")


def layer_violations(graph: dict[str, set[tuple[str, int]]]) -> list[str]:
    found = []
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges):
            if (module, target) in DOCUMENTED_UPWARD:
                continue
            low, high = unit_of(target), unit_of(module)
            if low != high and rank_of(low) >= rank_of(high):
                found.append(f"{module}:{line} imports {target} ({high} may not import {low})")
    return found


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = itertools.count()

    def visit(node: str) -> None:
        index[node] = low[node] = next(counter)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def unit_cycles(graph: dict[str, set[tuple[str, int]]]) -> list[set[str]]:
    units: dict[str, set[str]] = {}
    for module, edges in graph.items():
        for target, _ in edges:
            if (module, target) in DOCUMENTED_UPWARD:
                continue
            if unit_of(module) != unit_of(target):
                units.setdefault(unit_of(module), set()).add(unit_of(target))
    return cycles(units)


def module_cycles(graph: dict[str, set[tuple[str, int]]]) -> list[set[str]]:
    return cycles({module: {t for t, _ in edges} for module, edges in graph.items()})


# -- the real tree ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[tuple[str, int]]]:
    return module_graph(SRC, "pydispatch")


def test_every_subpackage_has_a_layer(graph: dict[str, set[tuple[str, int]]]) -> None:
    for module in graph:
        rank_of(unit_of(module))


def test_imports_only_go_down_the_layers(graph: dict[str, set[tuple[str, int]]]) -> None:
    assert layer_violations(graph) == []


def test_no_cycle_between_subpackages(graph: dict[str, set[tuple[str, int]]]) -> None:
    assert unit_cycles(graph) == []


def test_cycles_inside_a_subpackage_are_the_documented_ones(
    graph: dict[str, set[tuple[str, int]]],
) -> None:
    assert {frozenset(c) for c in module_cycles(graph)} == set(DOCUMENTED_CYCLES)
    for members in DOCUMENTED_CYCLES:
        for module in members:  # each side says why at its import
            path = SRC / (module.replace(".", "/") + ".py")
            assert "import cycle:" in path.read_text(), f"{module} does not document its cycle"


def test_documented_upward_imports_exist_and_say_so(
    graph: dict[str, set[tuple[str, int]]],
) -> None:
    for module, target in DOCUMENTED_UPWARD:
        lines = [line for t, line in graph[module] if t == target]
        assert lines, f"{module} no longer imports {target}: drop it from DOCUMENTED_UPWARD"
        text = (SRC / (module.replace(".", "/") + ".py")).read_text().splitlines()
        assert all("test_layers" in text[line - 1] for line in lines), (module, target)


def test_the_runtime_never_imports_the_user_api(graph: dict[str, set[tuple[str, int]]]) -> None:
    # The layer order implies it; this says it in the words.
    for module, edges in graph.items():
        if unit_of(module) in {"wire", "scheduling", "runtime"}:
            assert not {unit_of(t) for t, _ in edges} & {"stream", "plan", "dataflow"}, module


# -- the checks can fail ---------------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[tuple[str, int]]]:
    for name, text in files.items():
        path = tmp_path / "pydispatch" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return module_graph(tmp_path, "pydispatch")


def test_a_cycle_between_subpackages_is_found(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "wire/__init__.py": "",
            "wire/protocol.py": "def f():\n    from ..runtime import client\n",
            "runtime/__init__.py": "",
            "runtime/client.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from ..wire import protocol\n",
        },
    )
    assert unit_cycles(graph) == [{"wire", "runtime"}]
    assert layer_violations(graph) == [
        "pydispatch.wire.protocol:2 imports pydispatch.runtime.client (wire may not import runtime)"
    ]


def test_an_upward_import_by_name_is_found(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "runtime/__init__.py": "",
            "runtime/worker.py": "import importlib\n"
            "def f():\n    importlib.import_module('pydispatch.stream._environment')\n",
            "stream/__init__.py": "",
            "stream/_environment.py": "",
        },
    )
    assert layer_violations(graph) == [
        "pydispatch.runtime.worker:3 imports pydispatch.stream._environment "
        "(runtime may not import stream)"
    ]


def test_a_cycle_inside_a_subpackage_is_found(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "plan/__init__.py": "from ._execution import x\n",
            "plan/_execution.py": "from ._placement_input import y\nx = 1\n",
            "plan/_placement_input.py": "from . import _execution\ny = 2\n",
        },
    )
    assert module_cycles(graph) == [
        {"pydispatch.plan._execution", "pydispatch.plan._placement_input"}
    ]
