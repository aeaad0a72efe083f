"""The package's layering: no import cycles inside ``cpm``, between modules or between folders; every package sits in a
declared layer and imports only from its own package and the layers below (`LAYERS`), so the library never imports a
driver package (`cpm.cli`, `cpm.experiments`, `cpm.bench`); and reading a config does not import torch.

Every import counts: at module level, inside functions, and under ``TYPE_CHECKING`` (an annotation that needs a
higher layer is an arrow the wrong way too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cpm"
DRIVERS = ("cpm.cli", "cpm.experiments", "cpm.bench")
# From the bottom up. A package of layer i imports its own modules and those of layers below i, never a package of its
# own layer or above. ``cpm`` itself (its __init__) imports nothing when it loads: its API names load on first use.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cpm",),
    ("cpm.errors",),
    ("cpm.io", "cpm.skeleton", "cpm.device"),
    ("cpm.config",),
    ("cpm.targets",),
    ("cpm.models", "cpm.data", "cpm.viz"),
    ("cpm.runtime",),  # what a config builds, checkpoint files, batch preparation: below every entry point
    ("cpm.evaluation", "cpm.inference"),
    ("cpm.training",),
    ("cpm.cli", "cpm.experiments", "cpm.config_reference"),  # drivers: what people run
    ("cpm.bench", "cpm.__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every ``cpm`` module that ``name`` imports: at module level, inside functions and under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "cpm")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "cpm":
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def folder_of(name: str, paths: dict[str, Path]) -> str:
    """The package (folder) a module lives in; a package's ``__init__`` is its own folder. A module directly in
    ``cpm/`` (``cpm.config``, ``cpm.io``) stands for itself: the root folder holds the single-file units."""
    if paths[name].name == "__init__.py" or name.count(".") < 2:
        return name
    return name.rpartition(".")[0]


def folder_graph(graph: dict[str, set[str]], paths: dict[str, Path]) -> dict[str, set[str]]:
    """Folder -> the other folders its modules import (``cpm.data.synthetic`` and ``cpm.data`` are two folders)."""
    folders: dict[str, set[str]] = {}
    for name, targets in graph.items():
        source = folder_of(name, paths)
        folders.setdefault(source, set()).update(folder_of(t, paths) for t in targets if folder_of(t, paths) != source)
    return folders


def unit_of(name: str) -> str:
    """The package or module directly under ``cpm`` that ``name`` belongs to (``cpm`` for the package itself)."""
    return ".".join(name.split(".")[:2])


def layer_of(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """``module -> target`` for every import of a package of the importer's own layer (other than its own package)
    or of a higher one."""
    found = []
    for name, targets in sorted(graph.items()):
        unit = unit_of(name)
        for target in sorted(targets):
            if unit_of(target) != unit and layer_of(unit_of(target)) >= layer_of(unit):
                found.append(f"{name} -> {target}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_under_type_checking_and_in_functions_count(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cpm.a import A\n"
                    "def f():\n    from . import b\n    import cpm.c\n", encoding="utf-8")
    known = {"cpm.a", "cpm.b", "cpm.c", "cpm.mod"}
    assert imports_of("cpm.mod", path, known) == {"cpm.a", "cpm.b", "cpm.c"}


def test_no_import_cycles_inside_the_package():
    graph = import_graph()
    assert len(graph) > 40  # the walk found the package
    assert cycles(graph) == []


def test_folder_graph_joins_the_modules_of_a_folder():
    paths = {"cpm.a": Path("a/__init__.py"), "cpm.a.x": Path("a/x.py"), "cpm.a.y": Path("a/y.py"),
             "cpm.b.z": Path("b/z.py"), "cpm.b": Path("b/__init__.py"), "cpm.c": Path("c.py")}
    graph = {"cpm.a.x": {"cpm.b.z", "cpm.c"}, "cpm.b.z": {"cpm.a.y"}, "cpm.a.y": set(), "cpm.a": set(),
             "cpm.b": set(), "cpm.c": set()}
    assert cycles(graph) == []  # no module cycle ...
    folders = folder_graph(graph, paths)
    assert cycles(folders) == [["cpm.a", "cpm.b"]]  # ... but a folder cycle
    assert folders["cpm.a"] == {"cpm.b", "cpm.c"}


def test_no_import_cycles_between_folders():
    graph = import_graph()
    folders = folder_graph(graph, modules())
    assert {"cpm.training", "cpm.evaluation", "cpm.runtime", "cpm.data.synthetic"} <= set(folders)
    assert cycles(folders) == []


def test_every_package_has_a_layer_and_one_layer_only():
    units = [unit for layer in LAYERS for unit in layer]
    assert len(units) == len(set(units))
    assert {unit_of(name) for name in modules()} <= set(units)


def test_layering_finds_an_arrow_up_and_one_across_a_layer():
    upward = {"cpm.runtime.build": {"cpm.training.loop"}}
    assert layering_violations(upward) == ["cpm.runtime.build -> cpm.training.loop"]
    assert layering_violations({"cpm.evaluation.x": {"cpm.inference.y"}}) == ["cpm.evaluation.x -> cpm.inference.y"]
    assert layering_violations({"cpm.training.loop": {"cpm.evaluation.evaluate", "cpm.training.step"}}) == []


def test_no_package_imports_its_own_layer_or_a_higher_one():
    assert layering_violations(import_graph()) == []


def test_the_library_never_imports_a_driver_package():
    offenders = []
    for name, imported in import_graph().items():
        if name.startswith(DRIVERS) or name == "cpm.__main__":
            continue
        offenders += [f"{name} -> {target}" for target in imported if target.startswith(DRIVERS)]
    assert offenders == []


def test_every_driver_package_is_reachable():
    graph = import_graph()
    for driver in DRIVERS:
        assert any(name.startswith(driver) for name in graph), driver


@pytest.mark.parametrize("statement", ["from cpm.config import load_config", "import cpm.skeleton",
                                       "import cpm.errors", "import cpm.io"])
def test_light_modules_do_not_import_torch(statement):
    code = f"import sys; {statement}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
