"""Where the demo's independent jobs run: in this process (one worker) or in single-threaded worker processes.

Every job is seeded by itself and runs with one torch thread wherever it runs, so the numbers do not depend on
the number of workers or on the order in which jobs finish (torch's float reductions depend on the thread count,
which is why it is fixed at one rather than left to each machine). One process per core, each with one thread,
uses the cores it is given and does not spin against other load the way a multi-threaded torch process does.
Worker output (verl's platform and engine warnings) goes to the log file, never into the progress bar.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Job = tuple[Callable[..., Any], tuple[Any, ...]]  # (a module-level function, its arguments)
Progress = Callable[[int, str], None]

_progress_queue: Any = None  # set in each worker process by _init_worker


def single_threaded_torch() -> None:
    """One intra-op thread: the same float reduction order on every machine and with any number of workers."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextmanager
def stderr_to(log: Path) -> Iterator[Any]:
    """Send file descriptor 2 (warnings, logging, C libraries) to `log`; yields a stream to the real stderr for
    the progress bar. Restored on the way out."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield terminal
    finally:
        sys.stderr.flush()
        terminal.close()
        os.dup2(saved, 2)
        os.close(saved)


def _init_worker(progress_queue: Any, log: str) -> None:
    global _progress_queue
    # A Ctrl-C at the terminal reaches the whole process group: only the main process acts on it, by
    # terminating the workers (a worker interrupted while it starts writes its traceback into the log only).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _progress_queue = progress_queue
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    single_threaded_torch()
    import verl  # noqa: F401  (loads our plugin, which registers the estimators once core_algos is imported)


def _report(steps: int, status: str) -> None:
    _progress_queue.put((steps, status))


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return fn(*args, _report)


def run_jobs(
    prepare: Callable[[], Any],
    make_jobs: Callable[[Any], dict[str, Job]],
    workers: int,
    log: Path,
    progress: Progress,
) -> tuple[Any, dict[str, Any]]:
    """Start the workers, run `prepare()` here while they start, then every job `fn(*args, progress)` of
    `make_jobs(prepared)`; returns (prepared, {name: result}). With one worker everything runs in this process."""
    if workers <= 1:
        prepared = prepare()
        return prepared, {name: fn(*args, progress) for name, (fn, args) in make_jobs(prepared).items()}
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch's thread pools
    progress_queue = ctx.Queue()
    pool = None
    try:
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(progress_queue, str(log)))
        prepared = prepare()
        pending = {name: pool.apply_async(_call, job) for name, job in make_jobs(prepared).items()}
        results = {}
        while pending:
            _drain(progress_queue, progress, timeout=0.2)
            for name in [n for n, r in pending.items() if r.ready()]:
                results[name] = pending.pop(name).get()
        _drain(progress_queue, progress, timeout=0)
        pool.close()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return prepared, results


def _drain(progress_queue: Any, progress: Progress, timeout: float) -> None:
    try:
        while True:
            progress(*progress_queue.get(timeout=timeout) if timeout else progress_queue.get_nowait())
            timeout = 0
    except queue.Empty:
        pass


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
