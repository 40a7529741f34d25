"""Reading one run for `verl-maxpo report`: verl validation dumps, the file-logger training log and meta.json.

Every input problem becomes a message naming the file (and line) and the reading goes on, so one broken dump
never hides the rest of the report. Messages land in `Problems.errors` (bad input) or `Problems.notes`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# A file with hundreds of broken lines gets this many messages plus one "... and N more" line.
MAX_MESSAGES_PER_FILE = 5

TRAIN_LOG_NAME = "train_log.jsonl"
META_NAME = "meta.json"


@dataclass
class Problems:
    """Messages collected while reading: `errors` for bad input, `notes` for things worth knowing."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class StepDump:
    """One `<step>.jsonl` validation dump, reduced to what the metrics need.

    Attributes:
        step: the step, from the file name.
        prompt_ids: (N,) int64, the same id for samples whose `input` is identical (ids in first-seen order).
        scores: (N,) float64 score of each sample.
        path: the dump file.
    """

    step: int
    prompt_ids: np.ndarray
    scores: np.ndarray
    path: Path


@dataclass
class RunData:
    """Everything read from one RUN_DIR. `train_log` maps a metric name to its (steps, values) arrays."""

    name: str
    path: Path
    dumps: list[StepDump] = field(default_factory=list)
    train_log: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _FileMessages:
    """Caps the messages of one file at MAX_MESSAGES_PER_FILE, counting the rest."""

    def __init__(self, path: Path, sink: list[str]):
        self.path, self.sink, self.count = path, sink, 0

    def add(self, line_no: int, text: str) -> None:
        self.count += 1
        if self.count <= MAX_MESSAGES_PER_FILE:
            self.sink.append(f"{self.path}:{line_no}: {text}")

    def close(self) -> None:
        if self.count > MAX_MESSAGES_PER_FILE:
            self.sink.append(f"{self.path}: ... and {self.count - MAX_MESSAGES_PER_FILE} more bad line(s)")


def _json_lines(text: str, msgs: _FileMessages) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank JSONL line; lines that are not JSON become messages."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as err:
            msgs.add(line_no, f"not valid JSON ({err.msg} at column {err.colno})")


def read_dump(path: Path, step: int, problems: Problems) -> StepDump | None:
    """Parse one verl validation dump; bad lines are reported and skipped. None when no sample is usable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        problems.errors.append(f"{path}: cannot read ({err})")
        return None
    msgs = _FileMessages(path, problems.errors)
    ids: dict[str, int] = {}
    prompt_ids: list[int] = []
    scores: list[float] = []
    other_steps: set[Any] = set()
    # One pass over the lines is unavoidable for JSONL; the metrics downstream are vectorized.
    for line_no, entry in _json_lines(text, msgs):
        if not isinstance(entry, dict):
            msgs.add(line_no, f"expected a JSON object, got {type(entry).__name__}")
            continue
        missing = [key for key in ("input", "score") if key not in entry]
        if missing:
            msgs.add(line_no, f"missing {' and '.join(repr(m) for m in missing)}")
            continue
        score = entry["score"]
        if not _is_number(score) or not math.isfinite(score):
            msgs.add(line_no, f"'score' must be a finite number, got {score!r}")
            continue
        prompt = entry["input"]
        key = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
        prompt_ids.append(ids.setdefault(key, len(ids)))
        scores.append(float(score))
        if "step" in entry and entry["step"] != step:
            other_steps.add(entry["step"])
    msgs.close()
    if other_steps:
        shown = sorted(map(str, other_steps))[:3]
        problems.notes.append(f"{path}: lines carry step {', '.join(shown)}; the file name's step {step} is used")
    if not scores:
        problems.errors.append(f"{path}: empty dump (no usable samples); step {step} is left out")
        return None
    return StepDump(step, np.asarray(prompt_ids, dtype=np.int64), np.asarray(scores, dtype=np.float64), path)


def read_train_log(path: Path, problems: Problems) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parse verl's FileLogger JSONL ({"step": s, "data": {...}} per line) into metric -> (steps, values)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        problems.errors.append(f"{path}: cannot read training log ({err})")
        return {}
    msgs = _FileMessages(path, problems.errors)
    series: dict[str, dict[int, float]] = {}
    for line_no, entry in _json_lines(text, msgs):
        if not isinstance(entry, dict) or not _is_number(entry.get("step")) or not isinstance(entry.get("data"), dict):
            msgs.add(line_no, 'expected {"step": <int>, "data": {...}} as written by verl\'s FileLogger')
            continue
        step = int(entry["step"])
        for name, value in entry["data"].items():
            # verl logs validation and training metrics of one step in separate lines: later lines win per key.
            if _is_number(value) and math.isfinite(value):
                series.setdefault(name, {})[step] = float(value)
    msgs.close()
    out = {}
    for name, points in series.items():
        steps = np.array(sorted(points), dtype=np.int64)
        out[name] = (steps, np.array([points[s] for s in steps.tolist()], dtype=np.float64))
    return out


def read_meta(path: Path, problems: Problems) -> dict[str, Any]:
    """meta.json as a dict ({} when absent or unreadable, with a message in the latter case)."""
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problems.errors.append(f"{path}: cannot read meta.json ({err}); its k is not used")
        return {}
    if not isinstance(meta, dict):
        problems.errors.append(f"{path}: expected a JSON object, got {type(meta).__name__}")
        return {}
    return meta


def _step_files(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for path in folder.glob("*.jsonl"):
        try:
            found.append((int(path.stem), path))
        except ValueError:
            continue  # train_log.jsonl and other non-dump files
    return sorted(found)


def read_run(run_dir: str | Path, problems: Problems, train_log: str | Path | None = None) -> RunData | None:
    """Read a RUN_DIR: `<run>/val/<step>.jsonl` (+ train_log.jsonl, meta.json) or a bare folder of dumps.

    A folder named `val` whose parent holds meta.json or train_log.jsonl is read as that parent's run.
    Returns None (with a message) when the folder is missing or holds no dumps.
    """
    path = Path(run_dir)
    if not path.is_dir():
        problems.errors.append(f"{path}: no such folder; this run is left out")
        return None
    root = path
    if path.name == "val" and ((path.parent / META_NAME).is_file() or (path.parent / TRAIN_LOG_NAME).is_file()):
        root = path.parent
    dump_dir = root / "val" if (root / "val").is_dir() else path
    run = RunData(name=root.resolve().name or str(root), path=root)
    run.meta = read_meta(root / META_NAME, problems)
    log_path = Path(train_log) if train_log is not None else root / TRAIN_LOG_NAME
    if train_log is not None and not log_path.is_file():
        problems.errors.append(f"{log_path}: training log not found")
    elif log_path.is_file():
        run.train_log = read_train_log(log_path, problems)
    files = _step_files(dump_dir)
    if not files:
        problems.errors.append(
            f"{dump_dir}: no <step>.jsonl validation dumps found (set trainer.validation_data_dir); "
            "this run has no pass@k/max@k"
        )
    for step, file in files:
        dump = read_dump(file, step, problems)
        if dump is not None:
            run.dumps.append(dump)
    if not run.dumps and not run.train_log:
        return None
    return run
