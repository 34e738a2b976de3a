"""The layers of docs/ARCHITECTURE.md, checked on the source with ``ast``.

From the bottom: core (``cosmic``), contracts (``schemas``), processors
(``streams``, ``jobs``, ``connectors``), application (``cosmic_app``). An
import may point down or stay in its own package, never up; processors import
each other only along :data:`SIDEWAYS`. Every ``import`` statement counts,
also those inside functions; imports by string (``importlib.import_module``,
``python -m`` command lines) are not seen.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS: dict[str, int] = {
    "cosmic": 0,
    "schemas": 1,
    "streams": 2,
    "jobs": 2,
    "connectors": 2,
    "cosmic_app": 3,
}
LAYER_NAMES = ("core", "contracts", "processors", "application")

# Processor -> processor imports that the design allows (source package, target package).
SIDEWAYS: frozenset[tuple[str, str]] = frozenset({
    ("jobs", "connectors"),  # the Spark and Flink jobs use the lake reader and the store clients
})

PHYSICS = "streams.physics"
# What the pure N-body engine must not import (a name or any module below it).
PHYSICS_FORBIDDEN = (
    "streams",  # anything of streams outside streams.physics, streams.worlds above all
    "confluent_kafka", "aiokafka", "faust", "cosmic.kafka",
    "schemas.serde", "schemas.fastwriter", "schemas.registry", "schemas.dlq",
)


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (a project module where one matches, else the dotted name)
    path: Path
    line: int
    when: str  # "import": as the module is imported; "call": inside a function; "typing": TYPE_CHECKING

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _files() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _files()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _project_module(name: str) -> str:
    """``name``, or the longest project module that ``name`` lies below."""
    probe = name
    while probe and probe not in MODULES:
        probe = probe.rpartition(".")[0]
    return probe or name


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path) -> None:
        self.module, self.path = module, path
        self.package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.imports: list[Import] = []
        self._functions = 0  # depth of function bodies
        self._typing = 0  # depth of `if TYPE_CHECKING:` blocks

    def _add(self, target: str, node: ast.stmt) -> None:
        when = "typing" if self._typing else "call" if self._functions else "import"
        self.imports.append(Import(self.module, _project_module(target), self.path, node.lineno, when))

    def _function(self, node: ast.AST) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._typing += 1
        for stmt in node.body:
            self.visit(stmt)
        self._typing -= 1
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in MODULES else base, node)


def _imports() -> Iterator[Import]:
    for module, path in MODULES.items():
        collector = _Collector(module, path)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        yield from collector.imports


IMPORTS = list(_imports())


def _top(name: str) -> str:
    return name.partition(".")[0]


def _below(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _edges(imports: list[Import],
           key: Callable[[Import], tuple[str, str]]) -> dict[tuple[str, str], Import]:
    """The first import behind each edge, for the failure message."""
    first: dict[tuple[str, str], Import] = {}
    for imp in imports:
        first.setdefault(key(imp), imp)
    return first


def test_every_package_of_the_layers_is_there() -> None:
    assert {_top(m) for m in MODULES} == set(LAYERS)


def test_imports_point_down_or_along_an_allowed_sideways_edge() -> None:
    offending: list[str] = []
    for imp in IMPORTS:
        src, dst = _top(imp.source), _top(imp.target)
        if dst not in LAYERS or src == dst:
            continue
        if LAYERS[dst] > LAYERS[src] or (LAYERS[dst] == LAYERS[src] and (src, dst) not in SIDEWAYS):
            line = (f"{imp.where}: {imp.source} ({LAYER_NAMES[LAYERS[src]]}) imports "
                    f"{imp.target} ({LAYER_NAMES[LAYERS[dst]]})")
            if line not in offending:  # one line per statement, not per imported name
                offending.append(line)
    assert offending == [], "imports against the layers:\n" + "\n".join(offending)


def test_no_cycle_between_packages() -> None:
    edges = _edges([i for i in IMPORTS if _top(i.target) in LAYERS and _top(i.source) != _top(i.target)],
                   lambda i: (_top(i.source), _top(i.target)))
    graph: dict[str, set[str]] = {}
    for src, dst in edges:
        graph.setdefault(src, set()).add(dst)
    cycle = _cycle(graph)
    assert cycle is None, "packages import each other: " + ", ".join(
        f"{a} -> {b} ({edges[a, b].where})" for a, b in itertools.pairwise(cycle))


def _module_cycle(whens: set[str]) -> str | None:
    edges = _edges([i for i in IMPORTS if i.when in whens and i.target in MODULES
                    and i.source != i.target], lambda i: (i.source, i.target))
    graph: dict[str, set[str]] = {}
    for src, dst in edges:
        graph.setdefault(src, set()).add(dst)
    cycle = _cycle(graph)
    return None if cycle is None else ", ".join(
        f"{a} -> {b} ({edges[a, b].where})" for a, b in itertools.pairwise(cycle))


def test_no_cycle_between_modules_at_import_time() -> None:
    cycle = _module_cycle({"import"})
    assert cycle is None, f"modules import each other at import time: {cycle}"


def test_no_import_inside_a_function_hides_a_cycle() -> None:
    """A lazy import is for an optional or heavy dependency, not to get round a cycle."""
    cycle = _module_cycle({"import", "call"})
    assert cycle is None, f"modules import each other (counting imports in functions): {cycle}"


def test_the_physics_engine_knows_nothing_of_the_world_service_kafka_or_the_wire() -> None:
    offending = sorted({
        f"{imp.where}: {imp.source} imports {imp.target}"
        for imp in IMPORTS
        if _below(imp.source, PHYSICS) and not _below(imp.target, PHYSICS)
        and any(_below(imp.target, name) for name in PHYSICS_FORBIDDEN)
    })
    assert offending == [], "streams.physics imports:\n" + "\n".join(offending)


def test_the_checker_sees_function_level_and_relative_imports() -> None:
    """Guards the checker itself: a lazy import and a relative one are both found."""
    source = ("from . import params\nfrom .world import World\n\n"
              "def f():\n    import streams.worlds.worker\n")
    collector = _Collector("streams.physics.probe", ROOT / "streams" / "physics" / "probe.py")
    collector.visit(ast.parse(source))
    assert [(i.target, i.line, i.when) for i in collector.imports] == [
        ("streams.physics.params", 1, "import"), ("streams.physics.world", 2, "import"),
        ("streams.worlds.worker", 5, "call")]
