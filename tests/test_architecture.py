"""The shape of the code: packages import downward only (the import-linter contract in
``pyproject.toml`` lists them top to bottom) and no module takes part in an import cycle."""

from __future__ import annotations

import graphlib
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


def cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import cycle between modules (its modules, the first repeated at the end), or None."""
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


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
    assert cycle(graph) is None


def test_the_checks_see_an_upward_import_and_a_cycle(graph: grimp.ImportGraph) -> None:
    """The two checks above fail for the mistakes they exist for (on a copy of the graph)."""
    changed = grimp.build_graph(PACKAGE, cache_dir=None)
    changed.add_import(importer=f"{PACKAGE}.models.base", imported=f"{PACKAGE}.tokens.service")
    assert {(d.importer, d.imported) for d in upward_imports(changed)} >= {
        (f"{PACKAGE}.models", f"{PACKAGE}.tokens")
    }
    changed = grimp.build_graph(PACKAGE, cache_dir=None)
    changed.add_import(importer=f"{PACKAGE}.flows.state", imported=f"{PACKAGE}.flows.service")
    assert set(cycle(changed) or []) == {f"{PACKAGE}.flows.service", f"{PACKAGE}.flows.state"}
