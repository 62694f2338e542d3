"""The package's layers (issue 20): a module imports only from its own layer or from below,
no two modules import each other (directly or round a circle), the package root holds only
the entry points and the params models, and one file name stands for one thing.

Every import counts, function-level ones too: a lazy import is still an arrow in the drawing.
SLIMNET_LAYERS_ROOT=<checkout> runs the checks on another tree (the flat layout fails them).
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(os.environ.get("SLIMNET_LAYERS_ROOT") or Path(__file__).resolve().parents[1])
PACKAGE = REPO / "slimnet"

# Bottom to top; a module may import from its own layer or any layer below it. A name is a
# sub-package of slimnet/ or a module at its root.
LAYERS = (
    ("atomic", "console"),  # crash-safe writes and what the user sees: used by every layer
    ("parallel",),  # who this process is among the data-parallel ranks (World)
    ("stats",),
    ("datasets",),
    ("space",),
    ("nn",),
    ("training", "deploy"),
    ("optimizers",),
    ("config",),
    ("pipeline",),
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

ROOT_FILES = {"__init__.py", "__main__.py", "cli.py", "config.py", "atomic.py"}

# Imports that run up a layer and stay, each with why. An entry that no longer occurs fails
# too, so the list shrinks as they are fixed.
UPWARD: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module `name` denotes: itself, or for `pkg.module.attribute` the longest module prefix."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The slimnet modules `module` imports anywhere in its file."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from a import b`: b is a module or a name defined in a
            names = [f"{source}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] == "slimnet":
                target = resolve(name, known)
                if target is not None and target != module:
                    found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports(module, path, known) for module, path in known.items()}


def layer(module: str) -> str | None:
    """The layer name of a module: its sub-package, or its own name at the root."""
    parts = module.split(".")
    if len(parts) == 1:  # slimnet/__init__.py: empty, imported by every `from slimnet import ...`
        return "atomic"
    return parts[1] if parts[1] in RANK else None


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for module, targets in graph().items():
        for target in targets:
            if layer(module) in RANK and layer(target) in RANK and RANK[layer(target)] > RANK[layer(module)]:
                found.add((module, target))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
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
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_sits_in_a_layer():
    outside = sorted(m for m in modules() if layer(m) is None)
    assert not outside, f"modules in no layer (see LAYERS): {outside}"


def test_no_import_circle():
    found = cycles(graph())
    assert not found, f"modules that import each other round a circle: {found}"


def test_no_import_from_a_layer_above():
    found = upward_imports()
    unexplained = sorted(found - set(UPWARD))
    assert not unexplained, "imports from a higher layer: " + ", ".join(f"{a} -> {b}" for a, b in unexplained)
    gone = sorted(set(UPWARD) - found)
    assert not gone, f"UPWARD lists imports that no longer occur, remove them: {gone}"


def test_the_package_root_holds_only_the_entry_points():
    files = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py"}
    assert files <= ROOT_FILES, f"modules at the package root that belong in a layer: {sorted(files - ROOT_FILES)}"
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders <= set(RANK), f"sub-packages in no layer: {sorted(folders - set(RANK))}"


def test_one_file_name_one_thing():
    stems = Counter(p.stem for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    repeated = sorted(stem for stem, count in stems.items() if count > 1)
    assert not repeated, f"file names used by more than one module: {repeated}"
    # The pipeline stages' names belong to their pipeline modules alone.
    stages = {name.split("@")[0] for name in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]}
    clash = sorted(
        p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py") if p.stem in stages and p.parent != PACKAGE / "pipeline"
    )
    assert not clash, f"modules outside pipeline/ named after a stage: {clash}"


@pytest.mark.parametrize(
    "edges, expected",
    [
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}}, [["a", "b", "c"]]),
    ],
)
def test_the_circle_finder(edges, expected):
    assert cycles(edges) == expected
