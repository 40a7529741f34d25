"""Without VERL_PLATFORM=cpu the plugin changes nothing but the names it documents (docs/cpu-backend.md).

Two fresh interpreters, one with the plugin and one with verl's plugin loading off (VERL_USE_EXTERNAL_PLUGINS=none),
each `import verl` + `get_platform()` + the v1 trainer's import, then a snapshot of the environment, torch's global
state and every global of every loaded verl module (classes' attributes included); the two snapshots are compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from verl_maxpo.core.table import ESTIMATORS

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow  # fresh interpreters importing verl's trainer

SNAPSHOT = r"""
import inspect, json, os, sys, types
import verl
from verl.plugin.platform import get_platform
get_platform()
import verl.trainer.ppo.v1.trainer_base  # noqa: the module the session wrapper patches on import
import verl.workers.rollout.replica, verl.workers.rollout.base, verl.trainer.ppo.core_algos  # what the plugin imports
import torch

PRIMITIVE = (str, int, float, bool, type(None))


def fp(value, depth=0):
    if isinstance(value, PRIMITIVE):
        return repr(value)
    if isinstance(value, types.ModuleType):
        return "module " + value.__name__
    if inspect.isclass(value):
        return f"class {value.__module__}.{value.__qualname__}"
    code = getattr(value, "__code__", None)
    if code is not None:  # functions, wrappers included: functools.wraps copies names, not the code's file
        return f"function {getattr(value, '__qualname__', '?')} @ {code.co_filename}:{code.co_firstlineno}"
    if isinstance(value, dict) and depth < 2:
        return {repr(k) if not isinstance(k, str) else k: fp(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)) and depth < 2:
        items = [fp(v, depth + 1) for v in value]
        return sorted(map(str, items)) if isinstance(value, (set, frozenset)) else items
    return "object " + type(value).__module__ + "." + type(value).__qualname__


verl_globals = {}
for name in sorted(sys.modules):
    module = sys.modules[name]
    if not (name == "verl" or name.startswith("verl.")) or module is None:
        continue
    for attr, value in list(vars(module).items()):
        if attr.startswith("__") and attr != "__all__":
            continue
        verl_globals[f"{name}:{attr}"] = fp(value)
        if inspect.isclass(value) and value.__module__ == name:
            for cattr, cvalue in list(vars(value).items()):
                if not cattr.startswith("__"):
                    verl_globals[f"{name}:{attr}.{cattr}"] = fp(cvalue)

torch_state = {
    "default_dtype": str(torch.get_default_dtype()),
    "threads": torch.get_num_threads(),
    "interop_threads": torch.get_num_interop_threads(),
    "default_device": str(torch.get_default_device()),
    "deterministic": torch.are_deterministic_algorithms_enabled(),
    "cudnn": [torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.enabled],
    "matmul_precision": torch.get_float32_matmul_precision(),
    "grad_enabled": torch.is_grad_enabled(),
    "cuda": {k: fp(v) for k, v in vars(torch.cuda).items() if not k.startswith("__")},
    "cpu": {k: fp(v) for k, v in vars(torch.cpu).items() if not k.startswith("__")},
    "torch": {k: fp(v) for k, v in vars(torch).items() if not k.startswith("__") and not inspect.ismodule(v)},
}
print("SNAPSHOT=" + json.dumps({
    "environ": dict(os.environ),
    "torch": torch_state,
    "verl": verl_globals,
    "meta_path": [type(f).__module__ + "." + type(f).__qualname__ for f in sys.meta_path],
    "plugin_loaded": "verl_maxpo.plugin" in sys.modules,
}))
"""


def snapshot(**env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_", "PYTHONPATH"))}
    full.update(PYTHONPATH=str(REPO), **env)
    proc = subprocess.run(
        [sys.executable, "-c", SNAPSHOT], capture_output=True, text=True, env=full, timeout=300, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("SNAPSHOT="))
    return json.loads(line.removeprefix("SNAPSHOT="))


@pytest.fixture(scope="module")
def pair() -> tuple[dict, dict]:
    return snapshot(), snapshot(VERL_USE_EXTERNAL_PLUGINS="none")


# The documented differences: registry entries added, and the session wrapper under verl's own name.
ADDED_KEYS = {
    "verl.plugin.platform.platform_manager:PlatformRegistry._platforms": {"cpu"},
    "verl.workers.rollout.base:_ROLLOUT_REGISTRY": {"('hf_cpu', 'async')"},
    "verl.workers.rollout.replica:RolloutReplicaRegistry._registry": {"hf_cpu"},
    "verl.trainer.ppo.core_algos:ADV_ESTIMATOR_REGISTRY": set(ESTIMATORS),  # the estimator table's names
}
# verl/__init__.py's own plugin loader: its policy (the variable the two runs set differently) and the loop variables
# it leaves behind whenever any plugin loads.
VERL_LOADER_GLOBALS = {"verl:_plugins_policy", "verl:_discovered", "verl:_allowed", "verl:_entry_points", "verl:_ep"}
WRAPPED = {
    "verl.trainer.ppo.v1.utils:compute_advantage_for_multi_trajectories",
    "verl.trainer.ppo.v1.trainer_base:compute_advantage_for_multi_trajectories",
}


def test_environment_and_torch_are_untouched(pair: tuple[dict, dict]) -> None:
    ours, off = pair
    assert ours["plugin_loaded"] and not off["plugin_loaded"]
    env_ours = {k: v for k, v in ours["environ"].items() if k != "VERL_USE_EXTERNAL_PLUGINS"}
    env_off = {k: v for k, v in off["environ"].items() if k != "VERL_USE_EXTERNAL_PLUGINS"}
    assert env_ours == env_off  # in particular no VERL_ENGINE_DEVICE
    assert "VERL_ENGINE_DEVICE" not in ours["environ"]
    assert ours["torch"] == off["torch"]
    assert ours["meta_path"] == off["meta_path"]  # the one-shot hook is gone once verl's v1 module is imported


def test_verl_globals_differ_only_by_the_documented_names(pair: tuple[dict, dict]) -> None:
    ours, off = pair
    extra = set(ours["verl"]) - set(off["verl"]) - VERL_LOADER_GLOBALS
    assert set(off["verl"]) <= set(ours["verl"]) and not extra, f"other verl modules or globals: {sorted(extra)[:20]}"
    changed = {k for k in set(off["verl"]) - VERL_LOADER_GLOBALS if ours["verl"][k] != off["verl"][k]}
    assert changed == set(ADDED_KEYS) | WRAPPED, sorted(changed)
    for key, added in ADDED_KEYS.items():
        before, after = off["verl"][key], ours["verl"][key]
        assert set(after) - set(before) == added, key
        assert {k: after[k] for k in before} == before, f"{key}: an existing entry was replaced"
    for key in WRAPPED:
        assert (
            "verl_maxpo/integration/sessions.py" in ours["verl"][key]
            and "verl/trainer/ppo/v1/utils.py" in off["verl"][key]
        )


def test_opt_in_sets_the_engine_override(tmp_path: Path) -> None:
    ours = snapshot(VERL_PLATFORM="cpu")
    assert ours["environ"]["VERL_ENGINE_DEVICE"] == "cuda"
