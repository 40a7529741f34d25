"""One command policy: every `verl-maxpo` sub-command runs through `run`, which owns its exit status.

    def main(argv: list[str] | None = None) -> int:      # what `verl-maxpo report` and `python -m ...` call
        return command.run("report", _main, argv)

    def _main(argv: list[str] | None) -> int:            # the command itself: returns 0 (or 1), raises to refuse
        args = build_parser().parse_args(argv)           # argparse's own errors: exit 2
        check_out(args.out, "report", args.force)        # OutputError here (before any work): exit 2
        with publish(args.out, "report", args.force) as out:   # from here on the work has started ...
            ...                                          # ... so an OutputError now exits 1
        return 0

Exit status (docs/reliability.md shows the same table):

    0    success
    1    the command failed while working: `Failed`, an OSError, an OutputError after the work started, or a
         result the command returns itself (a report with a bad input, a bench row that failed)
    2    bad usage: argparse's errors, `UsageError`, an OutputError before the work started
    3    an optional package of the command's install extra is missing (the message names the extra)
    130  Ctrl-C (SIGINT)
    143  SIGTERM: `run` installs a handler that raises `outputs.Interrupted`, so every `finally` and the output
         policy's cleanup run (the stage is removed, the output folder is as it was)

Every refusal is one line on stderr, `<prog>: error: <message>`, never a traceback; an exception of any other
type is a bug and keeps its traceback.

"Work has started": `publish` (runs/outputs.py) marks it once its stage exists; a command whose work starts
elsewhere calls `started()` where it begins (a no-op outside `run`, so library callers are unaffected).

Nesting: `verl-maxpo <command>` (cli/main.py) runs the module's `main` inside its own `run`; an inner `run` calls
its body straight through, so the outermost one alone maps exceptions and owns the signal handler.

`verl-maxpo launch` (launch/main.py) returns the trainer's exit status from its body; on KeyboardInterrupt or
Interrupted it stops its child (passes a SIGTERM on, waits) and re-raises, so the wrapper exits 130 / 143.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from verl_maxpo.runs.extras import EXIT_MISSING_EXTRA, missing_for_command, missing_module_message
from verl_maxpo.runs.outputs import Interrupted, OutputError

__all__ = [
    "EXIT_FAILED",
    "EXIT_MISSING_EXTRA",
    "EXIT_USAGE",
    "Failed",
    "UsageError",
    "exit_status",
    "run",
    "started",
]

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """A bad option or value, found by the command itself (argparse finds the rest): exit 2."""


class Failed(RuntimeError):
    """The command could not finish its work (a build, a download); the message says why: exit 1."""


@dataclass
class _Run:
    name: str
    prog: str
    started: bool = False


_active: list[_Run] = []


def started() -> None:
    """Mark that the running command has begun its work: an OutputError from now on exits 1, not 2."""
    for entry in _active:
        entry.started = True


def exit_status(err: BaseException, work_started: bool) -> int:
    """The exit status `run` gives for `err` (a KeyboardInterrupt is 128 + its signal)."""
    if isinstance(err, KeyboardInterrupt):
        return 128 + getattr(err, "signum", signal.SIGINT)
    if isinstance(err, OutputError):
        return EXIT_FAILED if work_started else EXIT_USAGE
    if isinstance(err, UsageError):
        return EXIT_USAGE
    if isinstance(err, ModuleNotFoundError):
        return EXIT_MISSING_EXTRA
    return EXIT_FAILED


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def run(
    name: str,
    body: Callable[[list[str]], int | None],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
) -> int:
    """Run `body(argv)` under the command policy and return its exit status (see the module docstring).

    Args:
        name: the sub-command ("report"); it selects the install extra that is checked before any work.
        body: the command; returns its status (None is 0) or raises one of the mapped exceptions.
        argv: the arguments (None: sys.argv[1:]).
        prog: the name in messages (default "verl-maxpo <name>").
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if _active:  # inside another run (cli dispatch -> module main): the outer one owns the policy
        return int(body(args) or 0)
    entry = _Run(name, prog or f"verl-maxpo {name}")
    on_main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_interrupted) if on_main_thread else None
    _active.append(entry)
    try:
        if not {"-h", "--help"} & set(args) and (message := missing_for_command(name)):
            print(message, file=sys.stderr)
            return EXIT_MISSING_EXTRA
        return int(body(args) or 0)
    except SystemExit as stop:  # argparse (usage already printed) and sys.exit
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as err:
        which = signal.Signals(getattr(err, "signum", signal.SIGINT)).name
        print(f"\n{entry.prog}: interrupted ({which}); nothing more is written", file=sys.stderr)
        return exit_status(err, entry.started)
    except ModuleNotFoundError as err:
        hint = missing_module_message(name, err)
        if hint is None:
            raise  # a core package or one of ours: a broken install, its traceback helps
        print(hint, file=sys.stderr)
        return EXIT_MISSING_EXTRA
    except (OutputError, UsageError, Failed, OSError) as err:
        print(f"{entry.prog}: error: {err}", file=sys.stderr)
        return exit_status(err, entry.started)
    finally:
        _active.remove(entry)
        if on_main_thread and old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
