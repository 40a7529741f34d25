"""The command policy (`verl_maxpo.runs.command.run`): one exit status per kind of outcome, for every command."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verl_maxpo.runs import command, extras
from verl_maxpo.runs.outputs import MANIFEST_NAME, Interrupted, OutputError, publish

REPO = Path(__file__).resolve().parents[3]


def _status(body, capsys, name: str = "check", argv: list[str] | None = None) -> tuple[int, str]:
    code = command.run(name, body, argv or [])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _raises(exc: BaseException):
    def body(_argv: list[str]) -> int:
        raise exc

    return body


def test_the_body_status_goes_through(capsys) -> None:
    assert _status(lambda argv: 0, capsys) == (0, "")
    assert _status(lambda argv: None, capsys) == (0, "")
    assert _status(lambda argv: 1, capsys) == (1, "")
    seen: list[list[str]] = []
    command.run("check", lambda argv: seen.append(argv), ["--x", "1"])
    assert seen == [["--x", "1"]]


def test_argparse_errors_exit_2_with_the_option_named(capsys) -> None:
    def body(argv: list[str]) -> int:
        parser = argparse.ArgumentParser(prog="verl-maxpo check")
        parser.add_argument("--k", type=int)
        parser.parse_args(argv)
        return 0

    code, err = _status(body, capsys, argv=["--k", "x"])
    assert code == 2 and "--k" in err
    assert command.run("check", body, ["--help"]) == 0


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (command.UsageError("--k 0: below 1"), 2),
        (command.Failed("--wheel: download failed"), 1),
        (OSError(28, "No space left on device"), 1),
        (KeyboardInterrupt(), 130),
        (Interrupted(signal.SIGINT), 130),
        (Interrupted(signal.SIGTERM), 143),
        (SystemExit("--out: a message from sys.exit"), 1),
        (SystemExit(5), 5),
    ],
    ids=["usage", "failed", "oserror", "ctrl-c", "sigint", "sigterm", "exit-message", "exit-code"],
)
def test_each_exception_has_its_exit_status(exc: BaseException, code: int, capsys) -> None:
    got, err = _status(_raises(exc), capsys)
    assert got == code
    assert len(err.strip().splitlines()) <= 1  # one line, never a traceback
    if code in (1, 2) and not isinstance(exc, SystemExit | OSError):
        assert str(exc).split(":")[0] in err  # the option the message names reaches the user


def test_an_output_folder_refused_before_work_is_2_and_after_it_started_is_1(capsys) -> None:
    assert _status(_raises(OutputError("--out x: not a folder")), capsys)[0] == 2

    def late(_argv: list[str]) -> int:
        command.started()
        raise OutputError("--out x: changed meanwhile")

    code, err = _status(late, capsys)
    assert code == 1 and "--out" in err
    # started() belongs to one run: the next run starts afresh, and outside any run it is a no-op
    command.started()
    assert _status(_raises(OutputError("--out x")), capsys)[0] == 2


def test_publish_marks_the_work_started(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"

    def body(_argv: list[str]) -> int:
        with publish(out, "report") as staged:
            (staged.stage / "report.md").write_text("new")
            out.mkdir()  # another writer got there first, with files of its own
            (out / "notes.md").write_text("theirs")
        return 0

    code, err = _status(body, capsys, name="report")
    assert code == 1 and "--out" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.md"]  # nothing of this run was published
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # and no stage is left


def test_a_missing_extra_is_3_and_names_the_extra(monkeypatch, capsys) -> None:
    monkeypatch.setattr(extras, "_importable", lambda module: module != "matplotlib")
    ran: list[str] = []
    code, err = _status(lambda argv: ran.append("body"), capsys, name="report")
    assert code == 3 and "verl-maxpo[report]" in err and "matplotlib" in err and ran == []
    assert command.run("report", lambda argv: 0, ["--help"]) == 0  # --help needs no extra


def test_a_missing_module_while_running_is_3_only_for_an_optional_package(capsys) -> None:
    code, err = _status(_raises(ModuleNotFoundError("no", name="matplotlib.pyplot")), capsys, name="report")
    assert code == 3 and "verl-maxpo[report]" in err
    with pytest.raises(ModuleNotFoundError):  # a core package: a broken install keeps its traceback
        command.run("report", _raises(ModuleNotFoundError("no", name="torch")), [])


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        command.run("check", lambda argv: 1 // 0, [])


def test_nested_runs_let_the_outer_one_decide_and_the_handler_is_put_back(capsys) -> None:
    before = signal.getsignal(signal.SIGTERM)

    def outer(argv: list[str]) -> int:
        assert signal.getsignal(signal.SIGTERM) is not before  # SIGTERM raises while a command runs
        return command.run("report", late, argv)

    def late(_argv: list[str]) -> int:
        command.started()
        raise OutputError("--out x")

    code, err = _status(outer, capsys, name="report")
    assert code == 1 and err.count("error:") == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_every_command_goes_through_the_wrapper(monkeypatch) -> None:
    """Each sub-command's main (and preflight's) hands its body to command.run."""
    import importlib

    from verl_maxpo.cli.main import COMMANDS

    names: list[str] = []
    monkeypatch.setattr(command, "run", lambda name, body, argv=None, **kw: names.append(name) or 0)
    modules = {n: m for n, (m, _) in COMMANDS.items()}
    modules["preflight"] = "verl_maxpo.cpu.preflight"
    for module in modules.values():
        assert importlib.import_module(module).main([]) == 0
    assert names == list(modules)


# ---- signals, in a process of its own ---------------------------------------------------------------------

SCRIPT = """
import sys, time
from pathlib import Path
from verl_maxpo.runs import command
from verl_maxpo.runs.outputs import publish

out = Path(sys.argv[1])

def body(argv):
    with publish(out, "report", force=True) as staged:
        (staged.stage / "report.md").write_text("new")
        (out.parent / "ready").write_text("")
        time.sleep(60)
    return 0

sys.exit(command.run("report", body, []))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_mid_write_exits_128_plus_it_and_leaves_the_folder_as_it_was(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("earlier")
    (out / MANIFEST_NAME).write_text(json.dumps({"format": 1, "command": "report", "files": ["report.md"]}))
    before = {p.name: p.read_text() for p in out.iterdir()}
    env_path = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "interrupted" in err
    assert {p.name: p.read_text() for p in out.iterdir()} == before  # no stage left, the earlier report intact


@pytest.mark.slow
def test_sigterm_while_a_real_command_builds_exits_143_and_publishes_nothing(tmp_path: Path) -> None:
    """`verl-maxpo tiny-assets` killed mid-build: 143, one line, no traceback, no --out and no stage left."""
    out = tmp_path / "assets"
    proc = subprocess.Popen(
        [sys.executable, "-m", "verl_maxpo", "tiny-assets", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".assets.verl_maxpo-partial-*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "SIGTERM" in err
    assert list(tmp_path.iterdir()) == []
