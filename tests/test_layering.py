"""caloml's import graph has no cycles and no upward imports.

The layers, lowest first (a module may import its own layer and the layers below, never above):

0. ``errors``, ``units``, ``geometry`` and the small shared mechanisms (atomic files, JSON values, report
   directories, particle codes, argument types, the command registry);
1. ``sim``, ``data``, ``observables``;
2. ``models``;
3. ``training``, ``tasks``;
4. ``generate``, ``export``, ``evaluate``, ``bench``;
5. the command lines: every ``__main__`` and ``cli`` module, ``caloml.train`` and ``caloml.scan``.

Imports inside functions count as much as module-level ones; imports under ``if TYPE_CHECKING:`` do not (they
never run). The graph is read from the source with :mod:`ast`, so the test needs no import of caloml itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGE_LAYERS: dict[str, int] = {
    "errors": 0,
    "units": 0,
    "geometry": 0,
    "atomic_files": 0,
    "json_values": 0,
    "report_directory": 0,
    "particles": 0,
    "cli_args": 0,
    "cli_commands": 0,
    "quiet": 0,
    "progress": 0,
    "float32_bounds": 0,
    "output_paths": 0,
    "sim": 1,
    "data": 1,
    "observables": 1,
    "models": 2,
    "training": 3,
    "tasks": 3,
    "generate": 4,
    "export": 4,
    "evaluate": 4,
    "bench": 4,
    "train": 5,
    "scan": 5,
    "cli": 5,
    "api": 5,
}
COMMAND_LINE_LAYER = 5
LAYER_NAMES = ("core", "sim/data/observables", "models", "training/tasks", "generate/export/evaluate/bench", "cli")


def module_files(package_root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``package_root`` (a package directory)."""
    base = package_root.parent
    modules: dict[str, Path] = {}
    for path in sorted(package_root.rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if _type_checking_block(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        else:
            yield from _imports(node)


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in the file, type-checking blocks excepted)."""
    top = next(iter(modules)).split(".")[0]
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    stem = ".".join([*anchor, *([node.module] if node.module else [])])
                else:
                    stem = node.module or ""
                targets = [
                    f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem for alias in node.names
                ]
            for target in targets:
                if target.split(".")[0] != top:
                    continue
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name and target in modules:
                    edges[name].add(target)
    return edges


def layer_of(module: str, layers: dict[str, int] = PACKAGE_LAYERS) -> int | None:
    """The layer of a dotted module name (None for the top package itself, which may import nothing)."""
    parts = module.split(".")
    if parts[-1] in ("__main__", "cli"):
        return COMMAND_LINE_LAYER
    if len(parts) == 1:
        return None
    return layers.get(parts[1])


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
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
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def layering_problems(package_root: Path, layers: dict[str, int] = PACKAGE_LAYERS) -> list[str]:
    """Every cycle, upward import and module of no known layer under ``package_root``, one sentence each."""
    modules = module_files(package_root)
    edges = import_edges(modules)
    problems = [f"import cycle: {' -> '.join(cycle)}" for cycle in find_cycles(edges)]
    for module in sorted(modules):
        own = layer_of(module, layers)
        if own is None and "." in module:
            problems.append(f"{module} belongs to no layer: add its package to PACKAGE_LAYERS")
            continue
        for target in sorted(edges[module]):
            theirs = layer_of(target, layers)
            if own is None or theirs is None:
                continue
            if theirs > own:
                problems.append(
                    f"upward import: {module} (layer {own}, {LAYER_NAMES[own]}) imports {target} "
                    f"(layer {theirs}, {LAYER_NAMES[theirs]})"
                )
    return problems


def test_caloml_has_no_cycles_and_no_upward_imports() -> None:
    problems = layering_problems(ROOT / "caloml")
    assert not problems, "\n".join(problems)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path under ``root`` -> text) and return the package directory ``root/caloml``."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "caloml"


def test_the_check_names_an_injected_cycle(tmp_path: Path) -> None:
    files = {"caloml/__init__.py": "", "caloml/data/__init__.py": ""}
    files["caloml/data/hdf5.py"] = "from caloml.data import lcd\n"
    files["caloml/data/lcd.py"] = "def f():\n    from caloml.data.hdf5 import x\n"  # imports hdf5 back: a cycle
    problems = layering_problems(_write_package(tmp_path, files))
    assert problems == ["import cycle: caloml.data.hdf5 -> caloml.data.lcd"]


def test_the_check_names_an_upward_import(tmp_path: Path) -> None:
    files = {
        "caloml/__init__.py": "",
        "caloml/models/__init__.py": "",
        "caloml/models/net.py": "from ..evaluate.plots import draw\n",
        "caloml/evaluate/__init__.py": "",
        "caloml/evaluate/plots.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import caloml.cli\n",
        "caloml/cli.py": "import caloml.models.net\n",
    }
    problems = layering_problems(_write_package(tmp_path, files))
    assert len(problems) == 1
    assert problems[0].startswith("upward import: caloml.models.net (layer 2, models) imports caloml.evaluate.plots")


@pytest.mark.parametrize(("module", "layer"), [("caloml.data.__main__", 5), ("caloml.sim.cli", 5), ("caloml.sim", 1)])
def test_layer_of_command_lines_and_packages(module: str, layer: int) -> None:
    assert layer_of(module) == layer
