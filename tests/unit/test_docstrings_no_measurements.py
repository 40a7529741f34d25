"""A docstring says what the code does and why; how fast it ran on some day belongs in the docs page it supports.

Every module, class and function docstring of the package and scripts/ is read; one that holds a timing, a memory
figure in MiB/GiB, a speed-up factor, a load average or "we measured" fails, naming the docs pages that take such
figures (with their date and machine). Comments beside a constant may still say which measurement set it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEASUREMENT = re.compile(
    r"\b\d+(?:\.\d+)?\s?(?:ms|µs|us|s|sec|seconds|min|minutes|h|hours?|MiB|GiB)\b"  # 9.95 s, 32 ms, 70 MiB
    r"|\b\d+(?:\.\d+)?x (?:faster|slower)\b"  # about 5x faster
    r"|\bwe measured\b|\bmeasured on (?:a|an|this|our) \d|\bload (?:average )?\d"
)


def docstrings(path: Path) -> list[tuple[int, str, str]]:
    """(line, owner, docstring) of the module and of every class and function in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node, clean=False)
            if text:
                found.append((getattr(node, "lineno", 1), getattr(node, "name", "<module>"), text))
    return found


def test_no_docstring_holds_a_measurement() -> None:
    files = sorted((ROOT / "verl_maxpo").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))
    problems = [
        f"{path.relative_to(ROOT)}:{line} {owner}: {match.group(0)!r}"
        for path in files
        for line, owner, text in docstrings(path)
        for match in MEASUREMENT.finditer(text)
    ]
    assert len(files) > 50
    assert not problems, (
        "measurements in docstrings (move them, dated, to docs/bench.md, docs/cpu-backend.md, ...):\n"
        + "\n".join(problems)
    )


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("importing it took 11.55 s and 70 MiB more", True),
        ("pandas is about 5x faster on them", True),
        ("at load 7 on 2 cores we measured 32 ms", True),
        ("measured on a 2-core CPU", True),
        ("every checkpoint is measured on the same prompts", False),
        ("the 93 MB wheel; k >= 2; 1e-6; max@K", False),
    ],
)
def test_the_pattern(text: str, hit: bool) -> None:
    assert bool(MEASUREMENT.search(text)) is hit
