"""The shape of the code: packages import downward only (the import-linter contract in
``pyproject.toml`` lists them top to bottom) and no module takes part in an import cycle."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE = "personal_connectors"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # TYPE_CHECKING imports count: a cycle hidden behind one is still a cycle for the reader.
    return grimp.build_graph(PACKAGE, cache_dir=None)


def declared_layers() -> list[set[str]]:
    """The layers contract of pyproject.toml, each layer as its set of sibling packages."""
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["type"] == "layers"]
    assert contract["containers"] == [PACKAGE]
    return [{name.strip() for name in layer.split("|")} for layer in contract["layers"]]


def upward_imports(graph: grimp.ImportGraph) -> set[grimp.PackageDependency]:
    return graph.find_illegal_dependencies_for_layers(
        layers=declared_layers(), containers={PACKAGE}
    )


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def describe(dependencies: Iterable[grimp.PackageDependency]) -> str:
    return "\n".join(
        f"{d.importer} -> {d.imported}: " + "; ".join(" -> ".join(r.chain) for r in d.routes)
        for d in dependencies
    )


def test_the_import_linter_contracts_hold() -> None:
    assert lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True) == 0


def test_every_package_has_its_layer(graph: grimp.ImportGraph) -> None:
    declared = set().union(*declared_layers())
    children = {module.removeprefix(f"{PACKAGE}.") for module in graph.find_children(PACKAGE)}
    assert children == declared


def test_packages_import_downward_only(graph: grimp.ImportGraph) -> None:
    assert not (found := upward_imports(graph)), describe(found)


def test_no_module_is_in_an_import_cycle(graph: grimp.ImportGraph) -> None:
    assert cycles(graph) == []


def test_the_checks_see_an_upward_import_and_a_cycle(graph: grimp.ImportGraph) -> None:
    """The two checks above fail for the mistakes they exist for (on a copy of the graph)."""
    changed = grimp.build_graph(PACKAGE, cache_dir=None)
    changed.add_import(importer=f"{PACKAGE}.models.base", imported=f"{PACKAGE}.tokens.service")
    assert {(d.importer, d.imported) for d in upward_imports(changed)} >= {
        (f"{PACKAGE}.models", f"{PACKAGE}.tokens")
    }
    changed = grimp.build_graph(PACKAGE, cache_dir=None)
    changed.add_import(importer=f"{PACKAGE}.flows.state", imported=f"{PACKAGE}.flows.service")
    assert [f"{PACKAGE}.flows.service", f"{PACKAGE}.flows.state"] in cycles(changed)
