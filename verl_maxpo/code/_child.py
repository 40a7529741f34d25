"""Child side of verl_maxpo.code.reward, run by path as `python -I _child.py record|replay` (stdlib only).

record (untrusted: runs the model's program, inside the sandbox of sandbox.py): gets the program and the
test INPUTS only (never the expected outputs) on stdin, runs verl's prime_code on them exactly as prime_code's
continuous score does (one run over all tests, then one run per test for the first 10), and records what the
program produced for each test. It prints one marker line with the recordings.

replay (trusted: no model code runs): gets the full tests and the recordings, and scores them with prime_code's
own comparison: each recorded run is replayed by a generated program that emits the recorded outputs (as string
literals parsed with ast.literal_eval, never executed), so the score is prime_code's, computed where the model's
program cannot reach. A program can only influence its recordings, i.e. what it answered.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

MARKER = "VERL_MAXPO_CODE_RESULT "
ALL_TIMEOUT = 5  # prime_code.compute_score: the all-tests run
SINGLE_TIMEOUT = 10  # prime_code.compute_score: each per-test run
MAX_SINGLE = 10  # prime_code.compute_score tests the first 10 tests one by one


def extract_solution(completion: str) -> str:
    """prime_code's own extraction: the last ```python block (the whole text when there is none)."""
    return completion.split("```python")[-1].split("```")[0]


def _apply_limits(limits: dict[str, int]) -> None:
    import resource

    memory = limits["memory_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 5))
    file_size = limits["file_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nproc = limits.get("nproc", 0)
    if nproc > 0:  # counted per user namespace in the sandbox; not enforced for real root
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _load_prime_code() -> Any:
    """verl.utils.reward_score.prime_code without executing verl/__init__.py (Ray, torch)."""
    import importlib
    import importlib.machinery
    import types

    spec = importlib.machinery.PathFinder.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("verl is not installed")
    root = list(spec.submodule_search_locations)[0]
    for name, folder in (("verl", ""), ("verl.utils", "utils"), ("verl.utils.reward_score", "utils/reward_score")):
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, folder)]
        sys.modules[name] = package
    return importlib.import_module("verl.utils.reward_score.prime_code")


class _AnyOutput(str):
    """Stands for the expected output in the record run: an empty str (prime_code asserts str) that compares
    equal to anything, so every test the program finishes is recorded and the run only stops where prime_code
    stops on an exception."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 0


def _record(request: dict[str, Any]) -> dict[str, Any]:
    prime_code = _load_prime_code()
    from verl.utils.reward_score.prime_code import testing_util, utils

    recorded: list[Any] = []
    real_json = testing_util.json

    class _RecordingJson:
        loads = staticmethod(lambda s, *a, **k: s if isinstance(s, _AnyOutput) else real_json.loads(s, *a, **k))

        @staticmethod
        def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
            text = real_json.dumps(obj, *args, **kwargs)  # raises for what prime_code's own dumps rejects
            recorded.append(repr(obj))  # call-based: the function's return value
            return text

    def compare(output: Any, ground_truth: Any) -> bool:
        recorded.append(list(output))  # standard input: the output lines
        return True

    real_run_test = utils.run_test

    def run_test(*args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        del recorded[:]
        results, _ = real_run_test(*args, **kwargs)
        return results, {"recorded": list(recorded)}

    testing_util.json = _RecordingJson
    testing_util.custom_compare_ = compare
    utils.run_test = run_test

    def run(inputs: list[Any], fn_name: Any, timeout: int) -> list[Any] | None:
        in_outs: dict[str, Any] = {"inputs": inputs, "outputs": [_AnyOutput() for _ in inputs]}
        if fn_name is not None:
            in_outs["fn_name"] = fn_name
        _, metadata = utils.check_correctness(in_outs=in_outs, generation=solution, timeout=timeout, debug=False)
        metadata = list(metadata)
        # No metadata: the run was killed (global timeout); prime_code then fails every test of it.
        return metadata[0].get("recorded") if metadata and isinstance(metadata[0], dict) else None

    del prime_code
    solution = extract_solution(request["solution"])
    inputs, fn_name = request["inputs"], request.get("fn_name")
    every = run(inputs, fn_name, ALL_TIMEOUT)
    # prime_code's per-test runs drop fn_name: they run as standard input.
    single = [run([one], None, SINGLE_TIMEOUT) for one in inputs[:MAX_SINGLE]]
    return {"all": every, "single": single}


def replay_program(recorded: list[Any] | None, fn_name: str | None) -> str:
    """A program that, on its k-th test, emits the k-th recording, and fails where the recorded run stopped."""
    records = repr(list(recorded or []))  # call-based: repr strings of the returned values; else lists of lines
    if fn_name is not None:
        return (
            "import ast\n"
            "class Solution:\n"
            "    _k = -1\n"
            f"    def {fn_name}(self, *args):\n"
            "        Solution._k += 1\n"
            f"        records = {records}\n"
            "        if Solution._k >= len(records):\n"
            "            raise RuntimeError('the recorded run stopped here')\n"
            "        return ast.literal_eval(records[Solution._k])\n"
        )
    # Standard input: prime_code wraps every non-import line into code(), called once per test in order.
    return (
        "import sys as _vm_sys\n"
        "_vm_sys._vm_k = getattr(_vm_sys, '_vm_k', -1) + 1\n"
        f"_vm_records = {records}\n"
        "if _vm_sys._vm_k >= len(_vm_records):\n"
        "    raise RuntimeError('the recorded run stopped here')\n"
        "_vm_sys.stdout.write(''.join(line + '\\n' for line in _vm_records[_vm_sys._vm_k]))\n"
    )


def _replay(request: dict[str, Any]) -> float:
    """prime_code.compute_score(continuous=True) with each run replaced by its recording."""
    _load_prime_code()
    from verl.utils.reward_score.prime_code import utils

    tests, record = request["tests"], request["record"]
    fn_name = tests.get("fn_name")
    if fn_name is not None and not (isinstance(fn_name, str) and fn_name.isidentifier()):
        return 0.0
    res, _ = utils.check_correctness(
        in_outs=tests, generation=replay_program(record["all"], fn_name), timeout=ALL_TIMEOUT, debug=False
    )
    if all(x is True for x in res):
        return 1.0
    results: list[Any] = []
    for index, (given, expected) in enumerate(zip(tests["inputs"], tests["outputs"], strict=False)):
        if index >= MAX_SINGLE:
            break
        one = {"inputs": [given], "outputs": [expected]}
        res, _ = utils.check_correctness(
            in_outs=one, generation=replay_program(record["single"][index], None), timeout=SINGLE_TIMEOUT, debug=False
        )
        results.extend(res)
    return sum(x is True for x in results) / (len(results) or 1)


def main(mode: str) -> int:
    # The reply goes to a private duplicate of stdout; fd 1 itself becomes /dev/null for whatever runs next.
    reply = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    request = json.load(sys.stdin)
    _apply_limits(request["limits"])
    result: Any = _record(request) if mode == "record" else _replay(request)
    reply.write(MARKER + json.dumps(result) + "\n")
    reply.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
