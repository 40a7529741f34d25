"""Fixtures shared by the test modules, above all the bad-input corpus (`test_bad_inputs_*_on_cpu.py`), and the tiers.

The tier of a test is its top folder: tests/unit (functions and modules in-process, seconds), tests/cli (the commands
end to end through their `main`, in-process or as a subprocess), tests/integration (Ray, verl's trainer, fresh
interpreters, model-written programs, the demo). Each test gets its tier's marker (`-m unit`, `-m cli`,
`-m integration`); every integration test is also `slow`, and so is any costly test of the other tiers, so the
fast tier is `-m "not slow"`.

Each corpus case asserts one class of outcome:
  - an exact result (the test checks the value itself),
  - a refusal: non-zero exit, a message naming what is wrong, and no "Traceback" anywhere in the output,
  - files left as they were (the test snapshots them before and compares after).
`run_cli` calls `verl_maxpo.cli.main.main` in-process (fast: no torch import per case), and `run_main` any other
`main(argv)`; any exception other than SystemExit escapes and fails the test, which is exactly a raw traceback.
`run_cmd` runs a subprocess (shell launchers, prep scripts) with a hard timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "cli", "integration")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(tier)
        if tier == "integration":
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _empty_working_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in an empty folder of its own: no test may depend on what the current folder holds (the
    README's main job, run first in the same checkout, leaves `maxpo_demo/` there; `.ci/run` does the same)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if not isinstance(exc.code, int):
        print(exc.code, file=sys.stderr)  # what Python prints for sys.exit("message")
        return 1
    return exc.code


@pytest.fixture
def run_main(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """`run_main(module.main, "--out", "x")` -> Outcome of any `main(argv) -> int` entry point, in-process."""

    def run(main: Callable[[list[str]], int | None], *args: object) -> Outcome:
        capsys.readouterr()  # drop anything printed before this call
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = _exit_code(exc)
        captured = capsys.readouterr()
        return Outcome(int(code or 0), captured.out, captured.err)

    return run


@pytest.fixture
def run_cli(run_main: Callable[..., Outcome]) -> Callable[..., Outcome]:
    """`run_cli("report", str(path), "--k", "0")` -> Outcome of `verl-maxpo report ... --k 0`, in-process."""
    from verl_maxpo.cli.main import main

    return lambda *args: run_main(main, *args)


@pytest.fixture
def run_cmd() -> Callable[..., Outcome]:
    """`run_cmd(["python", "-m", "verl_maxpo", "launch", "code", "--dry-run"])` -> Outcome, run from the repo root."""

    def run(argv: Sequence[object], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 120):
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd or REPO,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Outcome(proc.returncode, proc.stdout, proc.stderr)

    return run


def message(outcome: Outcome) -> str:
    """What a command said, without argparse's usage block (it names every option, so it would prove nothing)."""
    lines, in_usage = [], False
    for line in outcome.text.splitlines():
        in_usage = line.startswith("usage:") or (in_usage and line.startswith(" "))
        if not in_usage:
            lines.append(line)
    return "\n".join(lines)


def assert_refused(outcome: Outcome, *names: str, code: int | None = None) -> None:
    """A refusal, held by behaviour rather than wording: non-zero exit (or exactly `code`), no traceback, and each
    of `names` in the message (case-insensitive). A name is what the user must find: an option (`--k`), a key
    (`algorithm.maxpo.k`), a file or the bad value; never a sentence, so rewording a message breaks no test."""
    assert outcome.code != 0, f"expected a refusal, got exit 0:\n{outcome.text}"
    if code is not None:
        assert outcome.code == code, f"expected exit {code}, got {outcome.code}:\n{outcome.text}"
    assert "Traceback" not in outcome.text, f"raw traceback:\n{outcome.text}"
    said = message(outcome)
    for name in names:
        assert name.lower() in said.lower(), f"message lacks {name!r}:\n{outcome.text}"


@pytest.fixture(name="assert_refused")
def assert_refused_fixture() -> Callable[..., None]:
    """The `assert_refused` check as a fixture (test modules cannot import conftest under importlib mode)."""
    return assert_refused


def tree(folder: Path) -> dict[str, bytes]:
    """Every file and link under `folder` (relative path -> bytes, or the link's target): "nothing written" is
    `tree(folder)` equal before and after."""
    found: dict[str, bytes] = {}
    for path in sorted(Path(folder).rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[name] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            found[name] = path.read_bytes()
        elif path.is_dir():
            found[name + "/"] = b""
    return found


@pytest.fixture(name="tree")
def tree_fixture() -> Callable[[Path], dict[str, bytes]]:
    return tree


@pytest.fixture
def python() -> str:
    return sys.executable
