"""verl_maxpo.code.reward: guarded local scoring of model-written programs, for real (no mocks).

Each case runs a small program through the guarded scorer and checks its score: correct / partly correct /
wrong programs score 1 / 0.5 / 0 as under verl's prime_code; a program that reads secrets from the environment
sees none; one that allocates 4 GiB, or writes a file over the size limit, fails (score 0); a process it starts
is killed with it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from verl_maxpo.code import reward as code_reward

pytestmark = pytest.mark.slow  # every case runs model-written programs in subprocesses

TESTS = json.dumps({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})
SECRETS = {"WANDB_API_KEY": "wandb-secret", "HF_TOKEN": "hf-secret", "AWS_SECRET_ACCESS_KEY": "aws-secret"}


def program(body: str) -> str:
    return f"Here is my solution.\n```python\n{body}\n```\n"


def local(data_source: str, solution: str, tests: object, **kwargs: object) -> float:
    return code_reward.compute_score(data_source, solution, tests, allow_local_exec=True, **kwargs)


SUM = "a, b = map(int, input().split())\nprint(a + b)"
# Prints the right answer only when none of the secrets is visible: a visible secret costs the tests.
SECRET_READER = (
    "import os\n"
    "leaked = [k for k in ('WANDB_API_KEY', 'HF_TOKEN', 'AWS_SECRET_ACCESS_KEY') if k in os.environ]\n"
    "a, b = map(int, input().split())\n"
    "print(a + b if not leaked else -1)"
)


@pytest.fixture
def secrets_in_env(monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (SUM, 1.0),
        ("a, b = map(int, input().split())\nprint(a - b)", 0.0),
        ("input()\nprint(3)", 0.5),  # passes the first test only: the continuous score of prime_code
        ("this is not python", 0.0),
        (SECRET_READER, 1.0),
        # 4 GiB against the 1 GiB address-space limit: MemoryError, every test fails.
        ("x = bytearray(4 * 1024**3)\n" + SUM, 0.0),
        # 32 MiB written to a file against the 16 MiB file-size limit: SIGXFSZ.
        ("open('big.bin', 'wb').write(b'0' * (32 * 1024**2))\n" + SUM, 0.0),
    ],
    ids=["correct", "wrong", "half", "syntax-error", "reads-secrets", "allocates-4GiB", "writes-32MiB"],
)
def test_guarded_scores(secrets_in_env, body, expected):
    assert local("codecontests", program(body), TESTS) == expected


def test_unguarded_prime_code_does_see_the_secrets(secrets_in_env):
    """The control for 'reads-secrets': verl's own prime_code, called in this process, leaks them."""
    from verl.utils.reward_score import prime_code

    score, _ = prime_code.compute_score(program(SECRET_READER), TESTS, continuous=True)
    assert score == 0.0


def test_the_child_environment_is_fixed_not_inherited(secrets_in_env):
    env = code_reward.child_env("/tmp/work")
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HOME": "/tmp/work",
        "TMPDIR": "/tmp/work",
    }


def test_a_program_that_outruns_the_wall_clock_scores_zero():
    """Below the validated floor on purpose: the wall clock itself, not prime_code's alarms, ends this one."""
    slow = program("import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\ntime.sleep(30)\n" + SUM)
    level, prefix = code_reward.isolation()
    limits = {"memory_mb": 1024, "cpu_s": 120, "file_mb": 16, "wall_s": 2.0}
    started = time.monotonic()
    assert code_reward.score_guarded(slow, TESTS, limits, level, prefix) == 0.0
    assert time.monotonic() - started < 15


def test_other_data_sources_go_to_verls_default_scorer():
    assert local("openai/gsm8k", "so #### 72", "72") == 1.0
    assert local("openai/gsm8k", "so #### 71", "72") == 0.0


@pytest.mark.parametrize(
    "record",
    [None, 7, {"all": None}, {"all": [3], "single": [None, None]}, {"all": None, "single": [None]}],
    ids=["none", "number", "no-single", "non-string-output", "too-few-single-runs"],
)
def test_a_record_of_the_wrong_shape_is_rejected(record):
    assert code_reward._valid_record(record, 2) is False


def test_a_record_of_the_right_shape_is_accepted():
    assert code_reward._valid_record({"all": [["3"], ["7"]], "single": [[["3"]], None]}, 2) is True


@pytest.mark.parametrize("stdout", ["", "noise\n", "VERL_MAXPO_CODE_RESULT {bad\n"])
def test_a_child_without_a_valid_result_line_gives_none(stdout):
    assert code_reward._parse_result(stdout) is None


def test_tests_given_as_numpy_arrays_are_accepted():
    np = pytest.importorskip("numpy")
    tests = {"inputs": np.array(["1 2\n", "3 4\n"], dtype=object), "outputs": np.array(["3\n", "7\n"], dtype=object)}
    assert local("codecontests", program(SUM), tests) == 1.0


def _processes_with(marker: bytes) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry))
    return found


def test_a_process_the_program_starts_does_not_outlive_the_scorer():
    """posix_spawn gets past prime_code's nulled os.fork / subprocess; the sandbox's PID namespace (or the process
    group kill) ends it with the scorer."""
    marker = f"{os.getpid()}.25"  # a sleep length unique to this test run
    body = f"import os\nos.posix_spawn('/bin/sleep', ['sleep', '{marker}'], {{}})\n" + SUM
    try:
        assert local("codecontests", program(body), TESTS) == 1.0
        time.sleep(0.3)
        assert _processes_with(marker.encode()) == []
    finally:
        for pid in _processes_with(marker.encode()):
            os.kill(pid, signal.SIGKILL)
