"""The code recipes' reward: verl's custom reward hook that never runs model-written programs unguarded.

The code recipes always set

    reward.custom_reward_function.path=pkg://verl_maxpo.code.reward
    reward.custom_reward_function.name=compute_score

and pass `reward.sandbox_fusion.*` and the local-execution settings in `reward_kwargs` (recipes/code/code.yaml).
Where programs run is decided by `exec_mode`, the same rule everywhere (the Hydra callback in code_guard.py at
`python -m verl.trainer.main_ppo` start, and here at the first scored row of each reward worker):
  - `reward.sandbox_fusion.url` set: verl's own SandboxFusion scoring (default_compute_score with the URL);
  - else `reward_kwargs.allow_local_exec=true`: the guarded local scorer below;
  - else CodeExecRefused: nothing runs.

Guarded local scorer, per response (code rows: codecontests / apps / codeforces / taco):
  1. record: a fresh `python -I _child.py record` inside the sandbox of sandbox.py (nobody for root;
     new user/PID/mount/network namespaces, fresh /proc, no capabilities; empty environment; rlimits; own
     directory) runs verl's prime_code on the test INPUTS only and reports what the program printed;
  2. replay: a second child, where no model code runs, scores those outputs against the expected outputs with
     prime_code's own comparison. The program never sees the expected outputs nor the channel the score comes
     back on, so it can change its answers, not its score.
Scores equal verl's prime_code (continuous); any failure of a child scores 0.0. Other data sources go to verl's
default scorer. Remaining exposure: recipes/code/README.md, "Security".

Only the standard library is imported at module level (verl is imported lazily for non-code rows / sandbox mode).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any

from verl_maxpo.code.sandbox import NPROC_BY_LEVEL, CodeExecRefused, isolation, nobody_ids, validate_limits

# isolation is re-exported: the Hydra guard and the tests ask for the level

__all__ = ["CODE_SOURCES", "CodeExecRefused", "child_env", "compute_score", "exec_mode", "score_guarded"]

CODE_SOURCES = frozenset({"codecontests", "apps", "codeforces", "taco"})
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child.py")
MARKER = "VERL_MAXPO_CODE_RESULT "
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
REFUSAL = (
    "the code reward executes model-written programs, and neither reward.sandbox_fusion.url nor "
    "reward.custom_reward_function.reward_kwargs.allow_local_exec=true is set. Nothing was run. Set "
    "reward.sandbox_fusion.url=http://<host>:8080/run_code (a SandboxFusion server: "
    "https://github.com/bytedance/SandboxFusion), or, on a machine you can throw away, "
    "reward.custom_reward_function.reward_kwargs.allow_local_exec=true (guarded local execution, not a "
    "sandbox: see recipes/code/README.md, Security)."
)


def child_env(workdir: str) -> dict[str, str]:
    """The whole environment of a scoring child: fixed values only, nothing inherited."""
    return {**_CHILD_ENV_FIXED, "HOME": workdir, "TMPDIR": workdir}


def exec_mode(sandbox_fusion_url: Any, allow_local_exec: Any) -> str:
    """'sandbox' or 'local'; CodeExecRefused when neither is configured (or the opt-in is not a boolean)."""
    if sandbox_fusion_url is not None and not isinstance(sandbox_fusion_url, str):
        raise CodeExecRefused(f"reward.sandbox_fusion.url must be a string, got {sandbox_fusion_url!r}")
    if sandbox_fusion_url:
        return "sandbox"
    if not isinstance(allow_local_exec, bool):
        raise CodeExecRefused(
            f"reward.custom_reward_function.reward_kwargs.allow_local_exec must be true or false, "
            f"got {allow_local_exec!r}"
        )
    if allow_local_exec:
        return "local"
    raise CodeExecRefused(REFUSAL)


@functools.cache
def _local_setup(memory_limit_mb: Any, cpu_seconds: Any, max_file_mb: Any, wall_seconds: Any) -> tuple:
    """Checked once per process and setting: the limits, then the isolation this machine allows."""
    limits = validate_limits(memory_limit_mb, cpu_seconds, max_file_mb, wall_seconds)
    level, prefix = isolation()
    return limits, level, prefix


def local_setup(memory_limit_mb: Any, cpu_seconds: Any, max_file_mb: Any, wall_seconds: Any) -> tuple:
    try:
        return _local_setup(memory_limit_mb, cpu_seconds, max_file_mb, wall_seconds)
    except TypeError as error:  # unhashable (a list from the command line)
        raise CodeExecRefused(f"the local scorer's limits must be numbers: {error}") from None


_SEMAPHORES: dict[int, threading.Semaphore] = {}


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Any = None,
    sandbox_fusion_url: Any = None,
    sandbox_memory_limit_mb: int = 1024,
    sandbox_max_concurrent: int = 64,
    allow_local_exec: Any = False,
    memory_limit_mb: Any = 1024,
    cpu_seconds: Any = 120,
    max_file_mb: Any = 16,
    wall_seconds: Any = DEFAULT_WALL_SECONDS,
    **_unused: Any,
) -> float:
    """verl's custom reward signature: the score in [0, 1] of one response, from where exec_mode says."""
    mode = exec_mode(sandbox_fusion_url, allow_local_exec)
    if mode == "local":
        setup = local_setup(memory_limit_mb, cpu_seconds, max_file_mb, wall_seconds)
    if mode == "sandbox" or data_source not in CODE_SOURCES:
        from verl.utils.reward_score import default_compute_score

        if mode == "local":  # non-code rows execute nothing
            return float(default_compute_score(data_source, solution_str, ground_truth, extra_info))
        # What verl's load_reward_manager passes to its default scorer when the URL is set.
        semaphore = _SEMAPHORES.setdefault(int(sandbox_max_concurrent), threading.Semaphore(sandbox_max_concurrent))
        score = default_compute_score(
            data_source,
            solution_str,
            ground_truth,
            extra_info,
            sandbox_fusion_url=sandbox_fusion_url,
            concurrent_semaphore=semaphore,
            memory_limit_mb=sandbox_memory_limit_mb,
        )
        return score if isinstance(score, dict) else float(score)
    limits, level, prefix = setup
    return score_guarded(solution_str, ground_truth, limits, level, prefix)


def _tests(ground_truth: Any) -> dict[str, Any] | None:
    """The tests as prime_code reads them, or None where prime_code would score 0 without running anything."""
    try:
        tests = json.loads(ground_truth) if isinstance(ground_truth, str | bytes) else ground_truth
        tests = json.loads(json.dumps(tests, default=_jsonable))
    except (TypeError, ValueError):
        return None
    if not isinstance(tests, dict) or not isinstance(tests.get("inputs"), list):
        return None
    outputs = tests.get("outputs")
    if not isinstance(outputs, list) or len(outputs) < len(tests["inputs"]):
        return None
    return tests


def score_guarded(
    solution_str: str, ground_truth: Any, limits: dict[str, Any], level: str, prefix: tuple[str, ...]
) -> float:
    """Record in the sandbox (inputs only), replay outside it (with the expected outputs); 0.0 on any failure."""
    tests = _tests(ground_truth)
    if tests is None:
        return 0.0
    child_limits = {
        "memory_mb": limits["memory_mb"],
        "cpu_s": limits["cpu_s"],
        "file_mb": limits["file_mb"],
        "nproc": NPROC_BY_LEVEL[level],
    }
    record_request = {
        "solution": solution_str,
        "inputs": tests["inputs"],
        "fn_name": tests.get("fn_name"),
        "limits": child_limits,
    }
    record = _run_child("record", record_request, list(prefix), limits["wall_s"], as_nobody=level.startswith("nobody"))
    if not _valid_record(record, len(tests["inputs"])):
        return 0.0
    # The replay runs no model code; it still gets the limits (its inputs were written by the program).
    replay_limits = {**child_limits, "nproc": 0}
    score = _run_child("replay", {"tests": tests, "record": record, "limits": replay_limits}, [], limits["wall_s"])
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
        return 0.0
    return float(score)


def _run_child(mode: str, request: dict[str, Any], prefix: list[str], wall_s: float, as_nobody: bool = False) -> Any:
    """One child with the request on stdin; its result, or None (crash, timeout, no or bad result line)."""
    with tempfile.TemporaryDirectory(prefix=f"verl-maxpo-code-{mode}-") as workdir:
        if as_nobody:
            uid, gid = nobody_ids()
            os.chown(workdir, uid, gid)
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-I", CHILD, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=workdir,
            env=child_env(workdir),
            start_new_session=True,  # its own process group: killed as a whole below
        )
        try:
            stdout, _ = proc.communicate(json.dumps(request).encode(), timeout=wall_s)
        except subprocess.TimeoutExpired:
            stdout = b""
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    return _parse_result(stdout.decode("utf-8", errors="replace"))


def _parse_result(stdout: str) -> Any:
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                return json.loads(line[len(MARKER) :])
            except ValueError:
                return None
    return None


def _valid_record(record: Any, n_inputs: int) -> bool:
    """The record child's reply has the shape the replay expects (it could have been written by the program)."""

    def run_ok(run: Any) -> bool:
        if run is None:
            return True
        return isinstance(run, list) and all(
            isinstance(r, str) or (isinstance(r, list) and all(isinstance(x, str) for x in r)) for r in run
        )

    return (
        isinstance(record, dict)
        and set(record) == {"all", "single"}
        and run_ok(record["all"])
        and isinstance(record["single"], list)
        and len(record["single"]) == min(n_inputs, 10)
        and all(run_ok(r) for r in record["single"])
    )


def _jsonable(value: Any) -> Any:
    """numpy arrays and scalars (parquet rows read by verl) as plain lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot send {type(value).__name__} to the scoring child")
