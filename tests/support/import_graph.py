"""The project's imports as a graph of modules, read from source with ``ast`` (nothing is imported), and the
two questions the dependency rules ask of it: which imports cross a line they must not, and which modules
import each other in a circle."""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Graph = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class Source:
    module: str  # dotted name, e.g. "gateway.relay.proxy"
    is_package: bool  # an __init__.py, whose relative imports start from the package itself
    text: str


@dataclass(frozen=True)
class Rule:
    """Modules within ``importers``, except those within ``exempt``, import nothing within ``forbidden``
    but the modules named in ``allowed`` (each exception by its exact module name)."""

    importers: str
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()


def read_sources(root: Path, packages: Sequence[str]) -> list[Source]:
    sources = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            module = ".".join(parts[:-1] if is_package else parts)
            sources.append(Source(module, is_package, path.read_text(encoding="utf-8")))
    return sources


def import_graph(sources: Iterable[Source]) -> dict[str, frozenset[str]]:
    """Each module → the modules it imports, from every import statement in it: at module level, inside
    functions, under ``if TYPE_CHECKING:``. ``from a import b`` imports ``a.b`` where that is a module of
    the project, else ``a``. Modules outside the project stay in as names (``litestar``)."""
    sources = list(sources)
    known = {source.module for source in sources}
    graph: dict[str, frozenset[str]] = {}
    for source in sources:
        targets: set[str] = set()
        for node in ast.walk(ast.parse(source.text)):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(source, node.level, node.module)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.add(submodule if submodule in known else base)
        targets.discard(source.module)  # `from . import name` in a package's __init__ is no circle
        graph[source.module] = frozenset(targets)
    return graph


def _absolute(source: Source, level: int, module: str | None) -> str:
    if level == 0:
        assert module is not None  # only `from . import x` has no module, and it is relative
        return module
    package = source.module.split(".") if source.is_package else source.module.split(".")[:-1]
    if level - 1 >= len(package):
        raise ValueError(f"{source.module}: a relative import climbs out of the project")
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def broken(rule: Rule, graph: Graph) -> list[str]:
    """Every import that breaks the rule, as "importer imports target"."""
    return sorted(
        f"{importer} imports {target}"
        for importer, targets in graph.items()
        if within(importer, rule.importers) and not any(within(importer, e) for e in rule.exempt)
        for target in targets
        if any(within(target, forbidden) for forbidden in rule.forbidden) and target not in rule.allowed
    )


def circles(graph: Graph) -> list[list[str]]:
    """One circle for each group of modules that import each other (a strongly connected component,
    found with Tarjan's algorithm): its modules in import order, the first repeated at the end."""
    return sorted(_circle_through(component, graph) for component in _components(graph) if len(component) > 1)


def _components(graph: Graph) -> list[set[str]]:
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module] & graph.keys()):
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in on_stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            component: set[str] = set()
            while (member := stack.pop()) != module:
                on_stack.discard(member)
                component.add(member)
            on_stack.discard(module)
            components.append(component | {module})

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return components


def _circle_through(component: set[str], graph: Graph) -> list[str]:
    """The shortest way from the component's first module back to itself, by breadth-first search."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        for target in sorted(graph[module] & component):
            if target == start:
                path = [module]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target not in came_from:
                came_from[target] = module
                queue.append(target)
    raise AssertionError(f"no circle through {start}, yet {sorted(component)} is strongly connected")
