"""Local code-execution guard: verl's prime_code scorer, run in a resource-limited child with a scrubbed environment.

Used by the code recipes only when the user opts into local execution (ALLOW_LOCAL_CODE_EXEC=1 and no SANDBOX_URL),
through verl's custom reward hook:

    reward.custom_reward_function.path=pkg://verl_maxpo.code_reward
    reward.custom_reward_function.name=compute_score

For a code row (data_source codecontests / apps / codeforces / taco) each call starts a fresh interpreter
(`python -I this_file`) that, before any model-written code exists in it:
  - drops every inherited environment variable (WANDB_API_KEY, HF_TOKEN, AWS_*, ... are never passed on);
  - runs in its own empty temporary directory and its own session (whatever is left of it is killed at the end);
  - sets rlimits: address space (memory), CPU seconds, size of any file it writes, no core dumps, and, for a
    non-root user, a process-count ceiling a little above the user's current count;
then scores the program with verl's own prime_code (same score as verl's default: fraction of tests passed).
Any failure of the child (crash, memory limit, timeout) scores 0.0. Other data sources go to verl's default scorer.

NOT a sandbox. What stays exposed: the network; every file the training user can read, and writes (each up to
the file-size limit) wherever that user can write; other processes of the same user (signals; ptrace where the
kernel allows it); for root, no process-count limit; a program that starts its own session can outlive the
scorer; and a program can forge its own score, as it can under prime_code. Use SandboxFusion for isolation.

This file imports only the standard library at module level: the child loads verl's prime_code package by path,
without `import verl` (which would pull in Ray and torch, seconds per call).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

CODE_SOURCES = frozenset({"codecontests", "apps", "codeforces", "taco"})
SCORE_MARKER = "VERL_MAXPO_CODE_SCORE "
# prime_code's worst case: one all-tests run (5 s + 1) then up to 10 single-test runs (10 s + 1 each).
DEFAULT_WALL_SECONDS = 150.0
# Per-thread BLAS pools would reserve virtual memory the address-space limit counts; one thread each.
_CHILD_ENV_FIXED = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_NPROC_MARGIN = 64


def child_env(workdir: str) -> dict[str, str]:
    """The whole environment of the scoring child: fixed values only, nothing inherited."""
    return {**_CHILD_ENV_FIXED, "HOME": workdir, "TMPDIR": workdir}


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Any = None,
    memory_limit_mb: int = 1024,
    cpu_seconds: int = 120,
    max_file_mb: int = 16,
    wall_seconds: float = DEFAULT_WALL_SECONDS,
    **_unused: Any,
) -> float:
    """verl's custom reward signature. Code rows: guarded local prime_code score in [0, 1]; others: verl's default."""
    if data_source not in CODE_SOURCES:
        from verl.utils.reward_score import default_compute_score

        return default_compute_score(data_source, solution_str, ground_truth, extra_info)
    limits = {"memory_mb": int(memory_limit_mb), "cpu_s": int(cpu_seconds), "file_mb": int(max_file_mb)}
    return score_guarded(solution_str, ground_truth, limits, wall_seconds)


def score_guarded(solution_str: str, ground_truth: Any, limits: dict[str, int], wall_seconds: float) -> float:
    """Run prime_code on one response in a limited child process; 0.0 when the child fails or runs out of time."""
    request = json.dumps({"solution": solution_str, "tests": ground_truth, "limits": limits}, default=_jsonable)
    with tempfile.TemporaryDirectory(prefix="verl-maxpo-code-") as workdir:
        request_path = os.path.join(workdir, "request.json")  # the child reads and deletes it before any model code
        with open(request_path, "w", encoding="utf-8") as f:
            f.write(request)
        # The score comes back on a pipe of its own, not stdout: processes the program starts inherit stdout and
        # could hold it open (or write to it); the child keeps its end close-on-exec.
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), request_path, str(write_fd)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=workdir,
                env=child_env(workdir),
                start_new_session=True,  # its own process group: killed as a whole below
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
        try:
            proc.wait(timeout=wall_seconds)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started in its group
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        reply = _read_ready(read_fd)
    return _parse_score(reply)


def _read_ready(fd: int) -> str:
    """What is in the pipe now (the child has exited), without waiting for writers that escaped the group."""
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _jsonable(value: Any) -> Any:
    """numpy arrays and scalars (parquet rows read by verl) as plain lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot send {type(value).__name__} to the scoring child")


def _parse_score(stdout: str) -> float:
    for line in reversed(stdout.splitlines()):
        if line.startswith(SCORE_MARKER):
            try:
                value = float(json.loads(line[len(SCORE_MARKER) :]))
            except (ValueError, TypeError):
                return 0.0
            return value if 0.0 <= value <= 1.0 else 0.0
    return 0.0


# ---- child side (runs as `python -I code_reward.py REQUEST_JSON REPLY_FD`) ----------------------------------------


def _user_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                pass
    return count


def _apply_limits(limits: dict[str, int]) -> None:
    import resource

    memory = limits["memory_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 5))
    file_size = limits["file_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.getuid() != 0:  # the kernel does not enforce RLIMIT_NPROC for root
        ceiling = _user_process_count() + _NPROC_MARGIN
        resource.setrlimit(resource.RLIMIT_NPROC, (ceiling, ceiling))


def _load_prime_code() -> Any:
    """verl.utils.reward_score.prime_code without executing verl/__init__.py (Ray, torch)."""
    import importlib
    import importlib.machinery
    import types

    spec = importlib.machinery.PathFinder.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("verl is not installed")
    root = list(spec.submodule_search_locations)[0]
    for name, folder in (("verl", root), ("verl.utils", "utils"), ("verl.utils.reward_score", "utils/reward_score")):
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, folder) if name != "verl" else root]
        sys.modules[name] = package
    return importlib.import_module("verl.utils.reward_score.prime_code")


def _child_main(request_path: str, reply_fd: str) -> int:
    reply = os.dup(int(reply_fd))  # os.dup: not inherited by exec'd programs
    os.close(int(reply_fd))
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    os.unlink(request_path)
    _apply_limits(request["limits"])
    prime_code = _load_prime_code()
    result = prime_code.compute_score(request["solution"], request["tests"], continuous=True)
    score = result[0] if isinstance(result, tuple | list) else result
    os.write(reply, f"{SCORE_MARKER}{json.dumps(float(score))}\n".encode())
    os.close(reply)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(*sys.argv[1:3]))
