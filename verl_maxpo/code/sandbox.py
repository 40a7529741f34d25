"""Where the guarded local scorer runs model-written programs: limits, and the namespaces around the child.

The record child (verl_maxpo/code/_child.py) runs under, outermost first:
  - for a root caller: `setpriv --reuid/--regid` to `nobody` with no supplementary groups, so the program is not
    root outside (files, other users' processes);
  - `unshare -Urpfn --mount-proc`: new user, PID, mount and network namespaces with a fresh /proc, so /proc shows
    only the sandbox's own processes (no ancestor's environ or fds), there is no network (loopback only, down),
    and every process the program starts dies with the sandbox's PID 1;
  - `setpriv --bounding-set=-all --no-new-privs`: no capabilities inside, so the program cannot unmount that /proc.
The strongest combination that works here is probed once (isolation()). Without working user namespaces, a root
caller still drops to nobody; a non-root caller is refused (a same-user program could read the scorer's
environment from /proc), with what to do instead.

Only the standard library is imported here: verl's reward workers import it for every code row.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys

# Measured here: `python -I -c pass` needs ~12-16 MiB of address space, `import numpy` ~130-190 MiB, and the
# record child (prime_code, numpy, its manager and forked runner) fails at 256 MiB and scores at 320 MiB. Below
# this floor every program would score 0 for want of memory, not of correctness.
MIN_MEMORY_MB = 384
MIN_CPU_SECONDS = 1
MIN_FILE_MB = 1
# prime_code's longest run: one all-tests run (5 s + 1) and 10 per-test runs (10 s + 1): below that, slow
# interpreters would lose tests to the wall clock that prime_code gives them.
MIN_WALL_SECONDS = 10.0
# RLIMIT_NPROC counts per user namespace: 64 per sandbox. Without namespaces it counts every process of nobody,
# concurrent scorers included, so the ceiling is shared and higher.
NPROC_BY_LEVEL = {"nobody+namespaces": 64, "namespaces": 64, "nobody": 1024}
_SYSTEM_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")


class CodeExecRefused(RuntimeError):
    """The code reward cannot run model-written programs safely with this configuration or on this machine."""


def validate_limits(memory_limit_mb: object, cpu_seconds: object, max_file_mb: object, wall_seconds: object) -> dict:
    """The local scorer's limits as ints, or CodeExecRefused naming the reward_kwargs option at fault."""
    prefix = "reward.custom_reward_function.reward_kwargs."
    checks = (
        ("memory_limit_mb", memory_limit_mb, MIN_MEMORY_MB, "MiB of address space: the scoring child needs ~320"),
        ("cpu_seconds", cpu_seconds, MIN_CPU_SECONDS, "CPU seconds"),
        ("max_file_mb", max_file_mb, MIN_FILE_MB, "MiB per written file"),
        ("wall_seconds", wall_seconds, MIN_WALL_SECONDS, "seconds: prime_code's own timeouts add up to ~116"),
    )
    values: dict[str, float] = {}
    for name, value, floor, unit in checks:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise CodeExecRefused(f"{prefix}{name} must be a number, got {value!r}")
        if name != "wall_seconds" and value != int(value):
            raise CodeExecRefused(f"{prefix}{name} must be a whole number, got {value!r}")
        if value < floor:
            raise CodeExecRefused(f"{prefix}{name}={value!r} is below the minimum {floor} ({unit})")
        values[name] = value
    return {
        "memory_mb": int(values["memory_limit_mb"]),
        "cpu_s": int(values["cpu_seconds"]),
        "file_mb": int(values["max_file_mb"]),
        "wall_s": float(values["wall_seconds"]),
    }


def _tool(name: str) -> str | None:
    """A system binary by absolute path (PATH of the training process is not trusted for this)."""
    for folder in _SYSTEM_DIRS:
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def nobody_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _prefix(drop_to_nobody: bool, use_namespaces: bool) -> list[str]:
    prefix: list[str] = []
    setpriv = _tool("setpriv")
    if drop_to_nobody:
        if setpriv is None:
            raise CodeExecRefused("setpriv (util-linux) is not installed")
        uid, gid = nobody_ids()
        prefix += [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    if use_namespaces:
        unshare = _tool("unshare")
        if unshare is None or setpriv is None:
            raise CodeExecRefused("unshare and setpriv (util-linux) are not installed")
        prefix += [unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--net", "--"]
        prefix += [setpriv, "--bounding-set=-all", "--no-new-privs", "--"]
    return prefix


# Strongest first. "namespaces" for root keeps uid 0 outside, without capabilities: used where nobody cannot
# run this interpreter (for example a Python installed under a 0700 /root).
LEVELS = {
    "nobody+namespaces": (True, True),
    "namespaces": (False, True),
    "nobody": (True, False),
}


@functools.cache
def isolation() -> tuple[str, tuple[str, ...]]:
    """(level, command prefix) for the record child: the strongest of LEVELS that works here, probed once per
    process with a real child. Non-root callers have only "namespaces"; CodeExecRefused when nothing works."""
    child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child.py")
    # The child must be able to start python, read the child script and find verl, as whoever it runs as.
    readable = f"import importlib.machinery as m; open({child!r}).close(); assert m.PathFinder.find_spec('verl')"
    alone = "import os; assert len([p for p in os.listdir('/proc') if p.isdigit()]) < 4"
    levels = list(LEVELS) if os.geteuid() == 0 else ["namespaces"]
    errors = []
    for level in levels:
        drop, use_namespaces = LEVELS[level]
        try:
            prefix = _prefix(drop, use_namespaces)
        except CodeExecRefused as error:
            errors.append(f"{level}: {error}")
            continue
        command = prefix + [sys.executable, "-I", "-c", readable + (f"; {alone}" if use_namespaces else "")]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/", check=False)
        if done.returncode == 0:
            return level, tuple(prefix)
        errors.append(f"{level}: {(done.stderr or '').strip().splitlines()[-1:] or done.returncode}")
    raise CodeExecRefused(
        "cannot isolate model-written programs on this machine ("
        + "; ".join(errors)
        + "). Use SandboxFusion (reward.sandbox_fusion.url), or enable unprivileged user namespaces "
        "(sysctl kernel.unprivileged_userns_clone=1, or kernel.apparmor_restrict_unprivileged_userns=0)."
    )
