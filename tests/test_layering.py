"""Import graph of ``multimodal/``: no cycles, and the low layers never import the high ones.

The graph is read from the source with :mod:`ast` (nothing is imported). Every ``import`` and
``from ... import`` of a ``multimodal`` module counts, at module level and inside functions (a
function-local import that hides a cycle is still a cycle, see STYLE.md); imports under
``if TYPE_CHECKING:`` are left out because they never run. An edge goes to the most specific
module that exists: ``from multimodal.survival.metrics import harrell_c`` ->
``multimodal.survival.metrics``; ``from multimodal import explain`` -> ``multimodal.explain``.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "multimodal"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

#: Modules that import no other multimodal module except each other.
BASE_MODULES = ("multimodal.types", "multimodal.exceptions", "multimodal.registry")

#: Lower layers (packages) and the higher layers they must never import.
LOW_LAYERS = ("multimodal.survival", "multimodal.encoders", "multimodal.fusion", "multimodal.data")
HIGH_LAYERS = (
    "multimodal.training",
    "multimodal.models",
    "multimodal.evaluation",
    "multimodal.explain",
    "multimodal.dashboard",
    "multimodal.tuning",
    "multimodal.cli",
)


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _module_names() -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``multimodal/``."""
    names = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING`` (any module alias)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree`` that can run (``if TYPE_CHECKING:`` bodies skipped)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the else branch runs
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def _most_specific(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of dotted ``name`` that is a module of the package."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]
) -> list[str]:
    """Package modules that ``node`` (in ``module``) imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if is_package else module.rpartition(".")[0]
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        # `from pkg import sub` imports the submodule pkg.sub when there is one
        names = [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"] or [base]
    targets = []
    for name in names:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            target = _most_specific(name, modules)
            if target is not None and target != module and target not in targets:
                targets.append(target)
    return targets


def import_graph() -> dict[str, list[Edge]]:
    """Module -> its import edges (one per target, the first import statement of it)."""
    modules = _module_names()
    graph: dict[str, list[Edge]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        rel = str(path.relative_to(PACKAGE_DIR.parent))
        edges: dict[str, Edge] = {}
        for node in sorted(_import_nodes(tree), key=lambda n: n.lineno):
            for target in _targets(node, module, is_package, modules):
                edges.setdefault(target, Edge(module, target, rel, node.lineno))
        graph[module] = list(edges.values())
    return graph


def strongly_connected_components(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); components of 2+ modules only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            edge = next(edges, None)
            if edge is not None:
                nxt = edge.target
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph.get(nxt, []))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def _shortest_path(graph: dict[str, list[Edge]], start: str, goal: str, inside: set[str]):
    """Edges of a shortest path start -> goal staying inside ``inside`` (BFS), or None."""
    previous: dict[str, Edge | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = []
            while previous[node] is not None:
                path.append(previous[node])
                node = previous[node].source
            return path[::-1]
        for edge in graph[node]:
            if edge.target in inside and edge.target not in previous:
                previous[edge.target] = edge
                queue.append(edge.target)
    return None


def cycles(graph: dict[str, list[Edge]]) -> list[list[Edge]]:
    """For every edge inside a cycle, the shortest cycle through it (duplicates dropped)."""
    found: dict[tuple[str, ...], list[Edge]] = {}
    for component in strongly_connected_components(graph):
        inside = set(component)
        for source in component:
            for edge in graph[source]:
                if edge.target not in inside:
                    continue
                back = _shortest_path(graph, edge.target, source, inside)
                cycle = [edge, *back]
                names = [e.source for e in cycle]
                first = names.index(min(names))  # one rotation per cycle
                key = tuple(names[first:] + names[:first])
                found.setdefault(key, cycle[first:] + cycle[:first])
    return [found[k] for k in sorted(found, key=lambda k: (len(k), k))]


def _chain(cycle: list[Edge]) -> str:
    names = " -> ".join([e.source for e in cycle] + [cycle[0].source])
    where = ", ".join(f"{e.source.removeprefix(PACKAGE + '.')} at {e.where()}" for e in cycle)
    return f"{names}\n      ({where})"


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Edge]]:
    return import_graph()


def test_graph_reads_every_kind_of_import(graph):
    """Sanity checks of the parser on imports known to exist, so an empty graph cannot pass."""
    targets = {m: {e.target for e in edges} for m, edges in graph.items()}
    assert "multimodal.exceptions" in targets["multimodal.data.cohort"]  # module level
    assert "multimodal.data.validate" in targets["multimodal.cli"]  # function local
    assert "multimodal.data.cohort" in targets["multimodal.data"]  # package __init__
    assert not targets["multimodal"] & {"multimodal.models.run", "multimodal.training.trainer"}


def test_no_import_cycles(graph):
    """No module imports itself through others; fix a cycle by moving the shared piece down."""
    found = cycles(graph)
    components = strongly_connected_components(graph)
    if found:
        lines = [f"{len(found)} import cycle(s) in {len(components)} group(s) of modules:"]
        lines += [f"  {_chain(c)}" for c in found]
        lines += ["groups:"] + [f"  {{{', '.join(c)}}}" for c in components]
        pytest.fail("\n".join(lines), pytrace=False)


def _inside(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_layering_direction(graph):
    """STYLE.md: imports flow one way (cli -> tuning -> training -> models -> ... -> types)."""
    bad = []
    for module, edges in sorted(graph.items()):
        for edge in edges:
            if module in BASE_MODULES and edge.target not in BASE_MODULES:
                bad.append(f"{module} imports {edge.target} at {edge.where()} (base layer)")
            if _inside(module, LOW_LAYERS) and _inside(edge.target, HIGH_LAYERS):
                bad.append(f"{module} imports {edge.target} at {edge.where()} (upward)")
    assert not bad, "imports against the layering:\n  " + "\n  ".join(bad)
