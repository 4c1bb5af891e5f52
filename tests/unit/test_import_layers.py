"""The layers of ARCHITECTURE.md hold: every import between top-level packages
points down (or sideways) the table below, the package graph has no cycle, and
no module grows past what one reader takes in.

The scan parses every file (``ast``) and imports nothing, so it sees imports
inside functions and ``if TYPE_CHECKING:`` blocks too, and one broken module
cannot hide the others. ``importlib.import_module("a.b")`` with a literal name
counts as an import of ``a``.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
PACKAGES: Final = (
    "frontdoors",
    "producer",
    "worker",
    "demo",
    "core",
    "schemas",
    "klaviyo_client",
    "sandbox",
    "bench",
)
FIRST_PARTY: Final = frozenset({*PACKAGES, "tests"})
MAX_LINES: Final = 450

# Who may import whom (A: the packages A may import). Anything not named is refused.
ALLOWED: Final[Mapping[str, frozenset[str]]] = {
    # The ways in parse, call the domain and format. They reach the workers only
    # by task name (through producer/core), never by importing worker: a front
    # door must not load the Celery app's tasks to start a run.
    "frontdoors": frozenset({"producer", "core", "schemas", "klaviyo_client", "demo", "sandbox"}),
    # The embedded default assembles the whole product: it starts workers and
    # the sandbox and drives a run as a user would.
    "demo": frozenset({"producer", "worker", "core", "schemas", "klaviyo_client", "sandbox"}),
    # Starting runs and running them are two processes that share only what is
    # below them: producer and worker never import each other.
    "producer": frozenset({"core", "schemas", "klaviyo_client"}),
    "worker": frozenset({"core", "schemas", "klaviyo_client"}),
    # The shared domain: the stores, the lifecycle, the policies; it speaks
    # Klaviyo through the client and Redis through the keys of schemas.
    "core": frozenset({"schemas", "klaviyo_client"}),
    # The words every layer shares (keys, contracts, task names): at the bottom.
    "schemas": frozenset(),
    # A client any program could use: it knows nothing of exports.
    "klaviyo_client": frozenset(),
    # A fake Klaviyo, not in the production image: it stands apart so that the
    # app never depends on it (it may share the client's constants).
    "sandbox": frozenset({"klaviyo_client"}),
    # Benchmarks measure everything and are part of nothing.
    "bench": frozenset(set(PACKAGES) - {"bench"}),
}


@dataclass(frozen=True)
class Edge:
    """One import of ``target`` (a top-level package) by ``source`` at ``where``."""

    source: str
    target: str
    module: str
    where: str  # path:line

    def __str__(self) -> str:
        return f"{self.where}: {self.source} -> {self.target} (imports {self.module})"


def _imported(node: ast.AST, package: str) -> Iterator[str]:
    """The absolute module names ``node`` imports (relative ones stay in ``package``)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        yield package if node.level else (node.module or "")
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
        == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        yield node.args[0].value


def scan_source(source: str, path: str, package: str) -> list[Edge]:
    """Every first-party import in ``source`` (a file of ``package``), anywhere in it."""
    edges = []
    for node in ast.walk(ast.parse(source, filename=path)):
        for module in _imported(node, package):
            target = module.split(".")[0]
            if target in FIRST_PARTY:
                where = f"{path}:{getattr(node, 'lineno', 0)}"
                edges.append(Edge(package, target, module, where))
    return edges


def _files() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def scan() -> list[Edge]:
    edges = []
    for package, path in _files():
        edges += scan_source(path.read_text(encoding="utf-8"), _relative(path), package)
    return edges


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle of ``graph`` as [a, b, ..., a], or None (depth first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    found = scan()
    # An empty or tiny scan (a wrong root, a renamed tree) must not pass quietly.
    assert len(found) > 100, f"the scan found only {len(found)} imports under {ROOT}"
    empty = [p for p in PACKAGES if not any((ROOT / p).rglob("*.py"))]
    assert not empty, f"no modules found in {empty} under {ROOT}"
    return found


def _between_packages(edges: Iterable[Edge]) -> list[Edge]:
    return [e for e in edges if e.source != e.target]


def test_every_import_between_packages_is_in_the_table(edges: list[Edge]) -> None:
    refused = [e for e in _between_packages(edges) if e.target not in ALLOWED[e.source]]
    assert not refused, "imports the layers refuse:\n" + "\n".join(map(str, refused))


def test_the_package_graph_has_no_cycle(edges: list[Edge]) -> None:
    assert find_cycle(ALLOWED) is None, "the table itself allows a cycle"
    graph: dict[str, set[str]] = {}
    for e in _between_packages(edges):
        graph.setdefault(e.source, set()).add(e.target)
    cycle = find_cycle(graph)
    if cycle:
        first = {(e.source, e.target): e for e in reversed(_between_packages(edges))}
        steps = [str(first[a, b]) for a, b in itertools.pairwise(cycle)]
        pytest.fail(
            "packages import each other in a cycle: " + " -> ".join(cycle) + "\n" + "\n".join(steps)
        )


def test_schemas_and_the_klaviyo_client_import_nothing_of_the_project(
    edges: list[Edge],
) -> None:
    leaves = [e for e in _between_packages(edges) if e.source in {"schemas", "klaviyo_client"}]
    assert not leaves, "\n".join(map(str, leaves))


def test_nothing_imports_frontdoors_and_producer_and_worker_stay_apart(
    edges: list[Edge],
) -> None:
    apart = {("producer", "worker"), ("worker", "producer")}
    wrong = [
        e
        for e in _between_packages(edges)
        if e.target in {"frontdoors", "tests"} or (e.source, e.target) in apart
    ]
    assert not wrong, "\n".join(map(str, wrong))


def test_no_module_is_over_450_lines() -> None:
    sizes = {_relative(p): len(p.read_text(encoding="utf-8").splitlines()) for _, p in _files()}
    long = sorted(f"{path}: {n} lines" for path, n in sizes.items() if n > MAX_LINES)
    assert not long, f"modules over {MAX_LINES} lines (split them by concern):\n" + "\n".join(long)


SYNTHETIC = """
from __future__ import annotations
import os
import core.store
from typing import TYPE_CHECKING
from . import sibling
from schemas.keys import run

if TYPE_CHECKING:
    from worker.tasks import upload

def later():
    import importlib
    from sandbox import SandboxServer
    return importlib.import_module("frontdoors.cli.config")
"""


def test_the_scanner_sees_every_kind_of_import() -> None:
    """A scan that found nothing would pass every test above: this one cannot."""
    found = {(e.target, e.module, e.where) for e in scan_source(SYNTHETIC, "x.py", "producer")}
    assert found == {
        ("core", "core.store", "x.py:4"),
        ("producer", "producer", "x.py:6"),  # relative: its own package
        ("schemas", "schemas.keys", "x.py:7"),
        ("worker", "worker.tasks", "x.py:10"),  # under TYPE_CHECKING
        ("sandbox", "sandbox", "x.py:14"),  # inside a function
        ("frontdoors", "frontdoors.cli.config", "x.py:15"),  # import_module("...")
    }
    refused = {
        str(e)
        for e in scan_source(SYNTHETIC, "x.py", "producer")
        if e.target not in ALLOWED["producer"] | {"producer"}
    }
    assert "x.py:10: producer -> worker (imports worker.tasks)" in refused


def test_the_cycle_finder_names_the_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
