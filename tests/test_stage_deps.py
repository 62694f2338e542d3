"""Each DVC stage lists exactly the slimnet code it runs: its deps equal its import closure.

A file missing from a stage's deps means an edit to it does not rerun the stage (stale
results); a file listed but never imported reruns it for nothing. The closure is static (every
import in a module, function-level ones too, so lazily imported code counts) and starts from
what `python -m slimnet <command>` runs: the entry modules and the stage's own command in
cli.py, whose lazy imports name the stage's pipeline module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "slimnet"
# Imported by cli.main() only for `python -m slimnet arch ...`: never part of a stage's run.
ARCH_TOOLS = "slimnet/pipeline/arch_tools.py"


def module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def has_code(path: Path) -> bool:
    """False for an __init__.py holding nothing but a docstring (editing it changes no result)."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def imported_files(nodes: list[ast.AST]) -> set[Path]:
    found: set[Path] = set()
    for tree in nodes:
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from slimnet import atomic` imports a module; `from slimnet.x import f` a name.
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if not name.startswith("slimnet"):
                    continue
                parts = name.split(".")
                for end in range(1, len(parts) + 1):  # parent packages' __init__ run too
                    path = module_file(".".join(parts[:end]))
                    if path is not None:
                        found.add(path)
    return found


def closure(start: set[Path], entry: set[Path] = frozenset()) -> set[Path]:
    """``start`` and everything it imports; ``entry`` files count but their imports were chosen already."""
    seen: set[Path] = set(entry)
    todo = list(start - entry)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(imported_files([ast.parse(path.read_text())]) - seen)
    return {p for p in seen if p.name != "__init__.py" or has_code(p)}


def command_closure(command: str) -> set[str]:
    """Files `python -m slimnet <command>` can run: cli.py's shared code, the command's own imports."""
    cli = ast.parse((PACKAGE / "cli.py").read_text())
    commands = {
        node.name: node
        for node in cli.body
        if isinstance(node, ast.FunctionDef) and any("command" in ast.unparse(d) for d in node.decorator_list)
    }
    assert command in commands, f"cli.py has no command {command!r}"
    # main() attaches the arch tools only for `python -m slimnet arch`: left out below.
    shared = [node for node in cli.body if not (isinstance(node, ast.FunctionDef) and node.name in commands)]
    entry = {PACKAGE / "__main__.py", PACKAGE / "cli.py"}
    start = imported_files([*shared, commands[command]]) - {REPO / ARCH_TOOLS}
    files = closure(start, entry)
    return {p.relative_to(REPO).as_posix() for p in files} - {ARCH_TOOLS}


def _matrix_values(values, params: dict) -> list:
    """A matrix axis: a list, or `${section.key}` naming a list in params.yaml."""
    if isinstance(values, str) and values.startswith("${") and values.endswith("}"):
        for key in values[2:-1].split("."):
            params = params[key]
        return list(params)
    return list(values)


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, a foreach or matrix expanded to its first item (every item runs the same code)."""
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    expanded = {}
    for name, stage in raw.items():
        if "foreach" in stage:
            item = stage["foreach"][0]
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
            expanded[f"{name}@{item}"] = yaml.safe_load(text)
        elif "matrix" in stage:
            first = {axis: _matrix_values(values, params)[0] for axis, values in stage["matrix"].items()}
            text = yaml.safe_dump({k: v for k, v in stage.items() if k != "matrix"})
            for axis, value in first.items():
                text = text.replace("${item.%s}" % axis, str(value))
            expanded[f"{name}@{'-'.join(str(v) for v in first.values())}"] = yaml.safe_load(text)
        else:
            expanded[name] = stage
    return expanded


def python_files(folder: Path) -> set[str]:
    """The Python files in a folder that hold code (what listing the folder as a dep covers)."""
    return {p.relative_to(REPO).as_posix() for p in folder.rglob("*.py") if p.name != "__init__.py" or has_code(p)}


def code_deps(stage: dict) -> set[str]:
    """The slimnet files a stage lists, directories expanded to the Python files inside."""
    files = set()
    for dep in stage.get("deps", []):
        path = REPO / dep
        if not dep.startswith("slimnet"):
            continue
        if path.is_dir():
            files |= python_files(path)
        else:
            files.add(dep)
    return files


def slimnet_command(stage: dict) -> str:
    words = stage["cmd"].split()
    assert words[:3] == ["python", "-m", "slimnet"], stage["cmd"]
    return words[3]


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_equal_the_code_it_runs(name):
    stage = stages()[name]
    needed = command_closure(slimnet_command(stage))
    listed = code_deps(stage)
    assert not needed - listed, f"{name} runs code its deps do not list: {sorted(needed - listed)}"
    assert not listed - needed, f"{name} lists code it never runs: {sorted(listed - needed)}"


def test_arch_tools_rerun_no_stage():
    for name, stage in stages().items():
        assert ARCH_TOOLS not in command_closure(slimnet_command(stage)), name


def test_the_closure_follows_lazy_imports():
    # evaluate imports measure.py only inside run_evaluate's module; search.py reaches bn.py.
    assert "slimnet/deploy/measure.py" in command_closure("evaluate")
    assert "slimnet/nn/bn.py" in command_closure("search")
    assert "slimnet/pipeline/train.py" not in command_closure("search")


@pytest.mark.parametrize("command", ["scan", "plan", "report"])
def test_the_json_only_stages_start_without_torch(command):
    # Importing torch costs 1.5-2.5 s of CPU a start here; scan runs on every `dvc repro`.
    probe = f"import sys, slimnet.cli, slimnet.pipeline.{command}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", f"the {command} stage imports torch"


def test_dvc_reads_every_stage_with_the_code_it_runs():
    # The pipeline tests run dvc.yaml less its code deps (tests/pipeline_project.py), so DVC's own
    # reading of them is checked here: each stage, as DVC expands it, lists what dvc.yaml lists.
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        read = {s.name: {d.def_path for d in s.deps if not isinstance(d, ParamsDependency)} for s in repo.index.stages}
    for name, stage in stages().items():
        code = {dep for dep in stage.get("deps", []) if dep.startswith("slimnet/")}
        assert code and {dep for dep in read[name] if dep.startswith("slimnet/")} == code, name
