"""Where the code recipes run model-written programs: the refusal without a sandbox or an opt-in (Hydra compose +
verl's own loader, and verl's main_ppo entry point), the limits check, and the guarded scorer's sandbox against
real hostile programs: reading ancestors' /proc/<pid>/environ, forging the score, fishing the expected outputs
out of memory, and the network. Each hostile program prints the right answer only when its attack failed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from verl_maxpo.code import reward as code_reward
from verl_maxpo.code.sandbox import LEVELS, CodeExecRefused
from verl_maxpo.launch.main import SEARCHPATH

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
TESTS = json.dumps({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})
SUM = "a, b = map(int, input().split())\nprint(a + b)"
LOCAL = "reward.custom_reward_function.reward_kwargs.allow_local_exec=true"


def program(body: str) -> str:
    return f"```python\n{body}\n```\n"


def local(solution: str, tests: object = TESTS) -> float:
    return code_reward.compute_score("codecontests", solution, tests, allow_local_exec=True)


def compose(*overrides: str, with_hydra: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "recipes" / "code"), version_base=None):
        # The recipe lists recipes/shared relative to the repository root; tests run elsewhere: pass it absolute.
        overrides = [SEARCHPATH, *overrides]
        return hydra_compose(config_name="code", overrides=overrides, return_hydra_config=with_hydra)


# ---- refusal ------------------------------------------------------------------------------------------------


def test_the_recipe_routes_every_score_through_the_guarded_scorer():
    cfg = compose(with_hydra=True)
    assert cfg.reward.custom_reward_function.path == "pkg://verl_maxpo.code_reward"
    assert cfg.reward.custom_reward_function.reward_kwargs.allow_local_exec is False
    # The code check runs first, then the A/B base's run claim: a refused run claims no folder.
    assert cfg.hydra.callbacks.verl_maxpo_run_claim._target_ == "verl_maxpo.code_guard.GuardedRunClaim"


def test_composed_without_sandbox_or_opt_in_verls_loader_gives_a_scorer_that_refuses():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    from verl_maxpo.code.guard import check_config

    cfg = compose()
    with pytest.raises(CodeExecRefused, match=r"(?s)(?=.*reward\.sandbox_fusion\.url)(?=.*allow_local_exec)"):
        check_config(cfg)
    score = get_custom_reward_fn(cfg)
    with pytest.raises(CodeExecRefused, match=r"reward\.sandbox_fusion\.url"):
        score(data_source="codecontests", solution_str=program(SUM), ground_truth=TESTS)


def test_composed_with_the_opt_in_verls_loader_scores_locally():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    from verl_maxpo.code.guard import check_config

    cfg = compose(LOCAL)
    assert check_config(cfg) == "local"
    score = get_custom_reward_fn(cfg)
    assert score(data_source="codecontests", solution_str=program(SUM), ground_truth=TESTS) == 1.0


def test_composed_with_a_sandbox_url_scoring_goes_to_verls_sandbox_fusion(monkeypatch):
    """The URL reaches verl's own SandboxFusion client (replaced here by a recorder: no server in the tests)."""
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.reward_score import sandbox_fusion

    from verl_maxpo.code.guard import check_config

    calls = []
    monkeypatch.setattr(sandbox_fusion, "compute_score", lambda *a, **k: calls.append(a) or (0.25, []))
    cfg = compose("reward.sandbox_fusion.url=http://sandbox:8080/run_code", "reward.sandbox_fusion.memory_limit_mb=512")
    assert check_config(cfg) == "sandbox"
    score = get_custom_reward_fn(cfg)
    assert score(data_source="codecontests", solution_str=program(SUM), ground_truth=TESTS) == 0.25
    url, semaphore, memory, solution, tests = calls[0]
    assert (url, memory, solution, tests) == ("http://sandbox:8080/run_code", 512, program(SUM), TESTS)
    assert semaphore is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ((), "neither reward.sandbox_fusion.url nor"),
        (("reward.custom_reward_function.path=null",), "verl would run model-written programs unguarded"),
        ((LOCAL, "reward.custom_reward_function.reward_kwargs.memory_limit_mb=-1"), "memory_limit_mb=-1 is below"),
    ],
    ids=["no-sandbox-no-opt-in", "verls-plain-scorer", "negative-memory"],
)
def test_verls_main_ppo_refuses_before_starting_anything(overrides, message):
    """By hand, through verl's entry point: one line, exit 2, before verl validates the config or starts Ray."""
    command = [sys.executable, "-m", "verl.trainer.main_ppo", "--config-path", str(REPO / "recipes" / "code")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*command, "--config-name", "code", *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,  # by hand, as the recipe's header says: from the repository root
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr and "ray init" not in done.stdout


@pytest.mark.parametrize(("allow", "url"), [("yes", None), (1, None), (None, None)], ids=["string", "int", "null"])
def test_the_opt_in_must_be_a_boolean(allow, url):
    with pytest.raises(CodeExecRefused, match="allow_local_exec"):
        code_reward.exec_mode(url, allow)


# ---- limits -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("memory_limit_mb", -1, "memory_limit_mb=-1 is below the minimum"),
        ("memory_limit_mb", 0, "memory_limit_mb=0 is below the minimum 384"),
        ("memory_limit_mb", 300, "memory_limit_mb=300 is below the minimum 384"),
        ("memory_limit_mb", "big", "memory_limit_mb must be a number"),
        ("memory_limit_mb", True, "memory_limit_mb must be a number"),
        ("memory_limit_mb", 512.5, "memory_limit_mb must be a whole number"),
        ("cpu_seconds", 0, "cpu_seconds=0 is below the minimum 1"),
        ("max_file_mb", -5, "max_file_mb=-5 is below the minimum 1"),
        ("wall_seconds", 2, "wall_seconds=2 is below the minimum 10"),
        ("wall_seconds", float("nan"), "wall_seconds must be a number"),
    ],
)
def test_limits_that_would_break_or_disable_the_scorer_are_refused(option, value, message):
    with pytest.raises(CodeExecRefused, match=f"reward_kwargs.{message}"):
        code_reward.compute_score("codecontests", program(SUM), TESTS, allow_local_exec=True, **{option: value})


def test_the_memory_floor_runs_the_scorer():
    """At the floor (384 MiB address space) a correct program still scores 1: the floor is not too low."""
    assert (
        code_reward.compute_score("codecontests", program(SUM), TESTS, allow_local_exec=True, memory_limit_mb=384)
        == 1.0
    )


# ---- isolation ----------------------------------------------------------------------------------------------


def test_the_isolation_level_is_the_strongest_that_works_here():
    level, prefix = code_reward.isolation()
    assert level in LEVELS
    if os.geteuid() != 0:
        assert level == "namespaces"
    if LEVELS[level][1]:
        assert "--mount-proc" in prefix and "--net" in prefix and "--bounding-set=-all" in prefix


PROC_READER = (
    "import os\n"
    "seen = []\n"
    "for pid in [p for p in os.listdir('/proc') if p.isdigit()] + [str(os.getppid()), 'self', '1']:\n"
    "    try:\n"
    "        seen.append(open(f'/proc/{pid}/environ', 'rb').read())\n"
    "    except OSError:\n"
    "        pass\n"
    "pid = os.getpid()\n"
    "while pid > 1:\n"  # the ancestor chain by PPid
    "    try:\n"
    "        status = open(f'/proc/{pid}/status').read()\n"
    "        pid = int(status.split('PPid:')[1].split()[0])\n"
    "        seen.append(open(f'/proc/{pid}/environ', 'rb').read())\n"
    "    except (OSError, IndexError, ValueError):\n"
    "        break\n"
    "leaked = any(b'planted-secret' in s for s in seen)\n"
    "a, b = map(int, input().split())\n"
    "print(a + b if not leaked else -1)"
)


def _score_in_a_process_with_a_secret(scorer: str, body: str) -> str:
    """Scores in a fresh interpreter whose exec-time environment holds the secret: /proc/<pid>/environ shows the
    environment a process was started with (a setenv in this process would not be visible there)."""
    code = (
        "import json, sys\n"
        "from verl_maxpo.code import reward as code_reward\n"
        "from verl.utils.reward_score import prime_code\n"
        f"solution, tests = {program(body)!r}, {TESTS!r}\n"
        "if sys.argv[1] == 'guarded':\n"
        "    print(code_reward.compute_score('codecontests', solution, tests, allow_local_exec=True))\n"
        "else:\n"
        "    print(float(prime_code.compute_score(solution, tests, continuous=True)[0]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_API_KEY": "planted-secret"}
    done = subprocess.run([sys.executable, "-c", code, scorer], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_program_cannot_read_the_scorers_secrets_from_proc():
    assert _score_in_a_process_with_a_secret("guarded", PROC_READER) == "1.0"


def test_unguarded_prime_code_does_leak_the_secret_through_proc():
    """The control: the same program under verl's prime_code finds the planted secret (and answers -1)."""
    assert _score_in_a_process_with_a_secret("prime_code", PROC_READER) == "0.0"


FORGER = (
    "import os\n"
    "fake = b'VERL_MAXPO_CODE_RESULT 1.0\\nVERL_MAXPO_CODE_SCORE 1.0\\n'\n"
    'fake += b\'VERL_MAXPO_CODE_RESULT {"all": [["3"], ["7"]], "single": [[["3"]], [["7"]]]}\\n\'\n'
    "for fd in range(1024):\n"
    "    try:\n"
    "        os.write(fd, fake)\n"
    "    except OSError:\n"
    "        pass\n"
    "print('VERL_MAXPO_CODE_RESULT 1.0')\n"
    "print(-1)"  # wrong on both tests
)


def test_a_program_cannot_forge_its_score_through_any_fd_or_marker():
    assert local(program(FORGER)) == 0.0


# Looks for the expected outputs in the memory of its own process, as prime_code keeps them there.
MEMORY_FISHER = (
    "import gc\n"
    "found = ''\n"
    "for o in gc.get_objects():\n"
    "    if isinstance(o, dict) and 'outputs' in o:\n"
    "        try:\n"
    "            found = found or str(o['outputs'][0]).strip()\n"
    "        except Exception:\n"
    "            pass\n"
    "print(found or 'none')"
)
UNGUESSABLE = json.dumps({"inputs": ["?\n"], "outputs": ["token-8f3a61c2\n"]})


def test_a_program_cannot_read_the_expected_outputs():
    assert local(program(MEMORY_FISHER), UNGUESSABLE) == 0.0


def test_unguarded_prime_code_hands_the_expected_outputs_to_the_program():
    """The control: under verl's prime_code the same program finds the answer in memory and scores 1."""
    from verl.utils.reward_score import prime_code

    assert prime_code.compute_score(program(MEMORY_FISHER), UNGUESSABLE, continuous=True)[0] is True


def test_a_program_has_no_network():
    if not LEVELS[code_reward.isolation()[0]][1]:
        pytest.skip("no network namespace at this isolation level")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    body = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        "    reached = True\n"
        "except OSError:\n"
        "    reached = False\n" + SUM.replace("print(a + b)", "print(a + b if not reached else -1)")
    )
    try:
        assert local(program(body)) == 1.0
    finally:
        server.close()


# ---- same scores as prime_code ------------------------------------------------------------------------------

CALL_BASED = json.dumps({"fn_name": "add", "inputs": ["1\n2", "3\n4"], "outputs": ["3", "7"]})


@pytest.mark.parametrize(
    ("body", "tests"),
    [
        (SUM, TESTS),
        ("input()\nprint(3)", TESTS),
        ("print(-1)", TESTS),
        ("if True print(1)", TESTS),
        ("import sys\ndata = sys.stdin.read().split()\nprint(int(data[0]) + int(data[1]))", TESTS),
        ("def main():\n    " + SUM.replace("\n", "\n    ") + "\nif __name__ == '__main__':\n    main()", TESTS),
        ("a, b = map(int, input().split())\nif a > 1:\n    raise ValueError\nprint(a + b)", TESTS),
        ("class Solution:\n    def add(self, a, b):\n        return a + b", CALL_BASED),
        ("class Solution:\n    def add(self, a, b):\n        return 3", CALL_BASED),
    ],
    ids=["correct", "half", "wrong", "syntax", "stdin-read", "main-guard", "raises-on-2nd", "call-ok", "call-half"],
)
def test_scores_equal_verls_prime_code(body, tests):
    from verl.utils.reward_score import prime_code

    expected = float(prime_code.compute_score(program(body), tests, continuous=True)[0])
    assert local(program(body), tests) == expected
