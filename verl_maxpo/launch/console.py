"""verl's output during a launch: all of it into the run's console.log (appended), per-step headlines on the console."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from verl_maxpo.runs.outputs import Interrupted

_RAY_PREFIX = re.compile(r"^\([^)]*\)\s+")
_NUMBER = re.compile(r"(?:np\.\w+\()?(-?[0-9][0-9.eE+-]*|nan|-?inf)\)?")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def headline(line: str) -> str | None:
    """verl's per-step console metrics, cut to what a person reads: step, score, validation, step time."""
    line = _RAY_PREFIX.sub("", line)  # "(TaskRunner pid=123) " when the line comes from a Ray actor
    if not line.startswith("step:"):
        return None
    fields = {key: _number(value) for key, _, value in (p.partition(":") for p in line.split(" - "))}
    parts = [f"step {line.split(' - ', 1)[0].removeprefix('step:')}"]
    for key, label, unit in (("critic/score/mean", "score mean", ""), ("timing_s/step", "step time", " s")):
        if fields.get(key) is not None:
            parts.append(f"{label} {fields[key]:.3g}{unit}")
    val = [(k.split("/", 1)[1], v) for k, v in fields.items() if k.startswith("val-") and "/reward/mean@" in k]
    parts += [f"{key} {value:.3g}" for key, value in val[:2] if value is not None]
    return "  ".join(parts)


def _number(text: str) -> float | None:
    """1.5, or np.float64(1.5) as verl prints numpy scalars; None for anything else."""
    match = _NUMBER.fullmatch(text.strip())
    return float(match.group(1)) if match else None


def run_verl(argv: list[str], env: Mapping[str, str], log_path: Path, header: str,
             redact: Callable[[str], str], verbose: bool) -> int:  # fmt: skip
    """Run verl; console.log gets its whole output (no ANSI codes, secrets masked), the console the headlines."""
    tail: list[str] = []
    with log_path.open("a", encoding="utf-8") as log:
        log.write(header + "\n")
        log.flush()
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")  # fmt: skip
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                line = redact(_ANSI.sub("", raw.rstrip("\n")))
                log.write(line + "\n")
                tail = [*tail[-39:], line]
                if shown := (line if verbose else headline(line)):
                    print(shown, flush=True)
            status = proc.wait()
        except KeyboardInterrupt as stop:
            # Ctrl-C in a terminal reached verl too; a SIGTERM sent to the launcher alone is passed on. Either way
            # verl stops before the command policy exits (130 / 143).
            if isinstance(stop, Interrupted) and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait()
            print(f"full output: {log_path} (interrupted)")
            raise
    if status != 0 and not verbose:
        print("\n".join(["--- the last lines of verl's output ---", *tail]), file=sys.stderr)
    print(f"full output: {log_path} (exit {status})")
    return status
