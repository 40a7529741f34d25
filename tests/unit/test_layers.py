"""The package's layers: a module imports only from its own layer or the layers below it, never upwards.

Read from the source (every import statement, module level or inside a function), so a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "verl_maxpo"
# Lowest first. core is the math with no verl import; cli dispatches to every command.
LAYERS = ["core", "runs", "integration", "tasks", "cpu", "code", "tools", "launch", "cli"]
# Top-level modules outside the subpackages: the plugin entry point registers integration and cpu; the stable
# code-recipe paths re-export code/; __main__ runs the cli.
TOP_LEVEL = {"plugin": "cpu", "code_reward": "code", "code_guard": "code", "__main__": "cli"}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "verl_maxpo" or len(parts) == 1 or parts[1] == "__init__":
        return None  # another package, or the package root (re-exports of core only)
    name = TOP_LEVEL.get(parts[1], parts[1])
    return LAYERS.index(name) + (0.5 if parts[1] in TOP_LEVEL and parts[1] != "__main__" else 0)


def imports_of(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from verl_maxpo.tasks import smol` imports a submodule
            names += [f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"]
    return names


def test_every_subpackage_has_a_layer() -> None:
    found = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert found == set(LAYERS)
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert loose == set(TOP_LEVEL)


def test_no_import_runs_against_the_layers() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = layer_of(module)
        if own is None:
            continue
        for name in imports_of(path):
            target = layer_of(name)
            if target is not None and target > own:
                upward.append(f"{module} imports {name}")
    assert upward == []


def test_core_imports_no_verl() -> None:
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        assert not [n for n in imports_of(path) if n.split(".")[0] == "verl"], path
