"""Reading one run for `verl-maxpo report`: verl validation dumps, the file-logger training log and meta.json.

Every input problem becomes a message naming the file (and line) and the reading goes on, so one broken dump
never hides the rest of the report. Messages land in `Problems.errors` (bad input) or `Problems.notes`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verl_maxpo.runs.folder import META_NAME, TRAIN_LOG_NAME, VAL_DIR_NAME, RunFolder, RunFolderError, RunMeta

# A file with hundreds of broken lines gets this many messages plus one "... and N more" line.
MAX_MESSAGES_PER_FILE = 5


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
    """Everything read from one RUN_DIR. `train_log` maps a metric name to its (steps, values) arrays; `meta` is
    None when the run has no (valid) meta.json."""

    name: str
    path: Path
    dumps: list[StepDump] = field(default_factory=list)
    train_log: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    meta: RunMeta | None = None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_finite_number(x: Any) -> bool:
    """A JSON number that fits a float and is finite (10**400 overflows float(): not finite here)."""
    if not _is_number(x):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


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
        except RecursionError:
            msgs.add(line_no, "JSON nested too deeply to read")
        except ValueError as err:  # e.g. an integer with more digits than Python converts
            msgs.add(line_no, f"not readable JSON ({err})")


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
        if not _is_finite_number(score):
            msgs.add(line_no, f"'score' must be a finite number, got {score!r}")
            continue
        prompt = entry["input"]
        if prompt is None:  # every such row would fall into one made-up prompt
            msgs.add(line_no, "'input' is null, so the sample's prompt is unknown; the line is left out")
            continue
        try:
            key = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
        except (RecursionError, ValueError):
            msgs.add(line_no, "'input' nested too deeply to read")
            continue
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
        step = entry.get("step") if isinstance(entry, dict) else None
        if not _is_finite_number(step) or step != int(step) or not isinstance(entry.get("data"), dict):
            msgs.add(line_no, 'expected {"step": <int>, "data": {...}} as written by verl\'s FileLogger')
            continue
        step = int(entry["step"])
        for name, value in entry["data"].items():
            # verl logs validation and training metrics of one step in separate lines: later lines win per key.
            if _is_finite_number(value):
                series.setdefault(name, {})[step] = float(value)
    msgs.close()
    out = {}
    for name, points in series.items():
        steps = np.array(sorted(points), dtype=np.int64)
        out[name] = (steps, np.array([points[s] for s in steps.tolist()], dtype=np.float64))
    return out


def read_meta(folder: RunFolder, problems: Problems) -> RunMeta | None:
    """The run's meta.json through `verl_maxpo.runs.folder` (None when absent, or invalid with a message
    naming the file)."""
    try:
        return folder.read_meta()
    except RunFolderError as err:
        problems.errors.append(f"{err}; this run's meta.json (estimator, k) is not used")
        return None


def _step_files(folder: Path, problems: Problems) -> list[tuple[int, Path]]:
    """The `<step>.jsonl` dumps of a folder, by step. Two files of one step (`1.jsonl`, `01.jsonl`) keep the one
    spelled without leading zeros and name the other in an error; an unreadable folder is an error too."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries]
    except OSError as err:
        problems.errors.append(f"{folder}: folder is unreadable ({err.strerror or err}); this run has no dumps")
        return []
    by_step: dict[int, list[str]] = {}
    for name in names:
        stem = name[: -len(".jsonl")] if name.endswith(".jsonl") else ""
        if stem.isascii() and stem.isdecimal():  # train_log.jsonl and other files are not dumps
            by_step.setdefault(int(stem), []).append(name)
    found = []
    for step, files in sorted(by_step.items()):
        files.sort(key=lambda n: (n != f"{step}.jsonl", n))
        if len(files) > 1:
            others = ", ".join(str(folder / n) for n in files[1:])
            problems.errors.append(f"{others}: another dump of step {step} besides {folder / files[0]}; left out")
        found.append((step, folder / files[0]))
    return found


def _unreadable(problems: Problems, folder: Path) -> bool:
    return any(e.startswith(f"{folder}: folder is unreadable") for e in problems.errors)


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
    if path.name == VAL_DIR_NAME and ((path.parent / META_NAME).is_file() or (path.parent / TRAIN_LOG_NAME).is_file()):
        root = path.parent
    folder = RunFolder(root)
    dump_dir = folder.val_dir if folder.val_dir.is_dir() else path
    run = RunData(name=root.resolve().name or str(root), path=root)
    run.meta = read_meta(folder, problems)
    log_path = Path(train_log) if train_log is not None else folder.train_log
    if train_log is not None and not log_path.is_file():
        problems.errors.append(f"{log_path}: training log not found")
    elif log_path.is_file():
        run.train_log = read_train_log(log_path, problems)
    files = _step_files(dump_dir, problems)
    if not files and not _unreadable(problems, dump_dir):
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
