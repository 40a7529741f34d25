"""Registration in processes we do not control: fresh interpreters, `verl-maxpo check`, Ray actors, verl's CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from verl_maxpo.core.table import ESTIMATORS

pytestmark = pytest.mark.slow  # fresh interpreters, Ray, verl's entry point

PROBE = (
    "import sys, verl; from verl.trainer.ppo import core_algos as c; "
    "print(sorted(n for n in ('maxpo', 'pkpo') if n in c.ADV_ESTIMATOR_REGISTRY), 'verl_maxpo.plugin' in sys.modules)"
)


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    full_env.update(env)
    return subprocess.run(args, capture_output=True, text=True, env=full_env, timeout=300)


def test_bare_import_verl_registers_in_a_fresh_interpreter() -> None:
    proc = run([sys.executable, "-c", PROBE])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "['maxpo', 'pkpo'] True"


LAZY_PROBE = r"""
import json, sys, warnings
import verl
heavy = ("verl.trainer.ppo.core_algos", "verl.workers.rollout.base", "verl.workers.rollout.replica",
         "verl_maxpo.integration.adapter")
out = {"after_import_verl": [m for m in heavy if m in sys.modules]}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from verl.trainer.ppo import core_algos
    from verl.workers.rollout import base, replica
out["registered"] = sorted(n for n in core_algos.ADV_ESTIMATOR_REGISTRY if n in @@NAMES@@)
out["hf_cpu"] = [("hf_cpu", "async") in base._ROLLOUT_REGISTRY,
                 replica.RolloutReplicaRegistry.get("hf_cpu") is not None]
out["warnings"] = [str(w.message) for w in caught if "verl-maxpo" in str(w.message)]
out["grpo"] = core_algos.get_adv_estimator_fn("grpo").__name__
print(json.dumps(out))
""".replace("@@NAMES@@", repr(tuple(ESTIMATORS)))


def test_import_verl_defers_the_heavy_modules_until_verl_imports_them() -> None:
    """`import verl` alone loads neither core_algos nor the rollout modules (each about 2 s); the names arrive
    the moment verl imports those modules."""
    proc = run([sys.executable, "-c", LAZY_PROBE])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["after_import_verl"] == []
    assert out["registered"] == sorted(ESTIMATORS)
    assert out["hf_cpu"] == [True, True]
    assert out["warnings"] == []


def test_a_failing_registration_warns_and_leaves_verl_working() -> None:
    """Our hook runs inside verl's own import of core_algos: a broken adapter must not break verl's estimators."""
    probe = LAZY_PROBE.replace(
        "import verl\n", "import verl\nsys.modules['verl_maxpo.integration.adapter'] = None\n", 1
    )
    assert probe != LAZY_PROBE
    proc = run([sys.executable, "-c", probe])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["registered"] == [] and out["grpo"] == "compute_grpo_outcome_advantage"
    assert len(out["warnings"]) == 1 and "`verl-maxpo check`" in out["warnings"][0], out["warnings"]
    assert "ImportError" in out["warnings"][0] or "ModuleNotFoundError" in out["warnings"][0]


ADAPTER_FIRST_PROBE = r"""
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import verl_maxpo.integration.adapter
from verl.trainer.ppo import core_algos
print(json.dumps({
    "registered": sorted(n for n in core_algos.ADV_ESTIMATOR_REGISTRY if n in @@NAMES@@),
    "warnings": [str(w.message) for w in caught if "verl-maxpo" in str(w.message)],
}))
""".replace("@@NAMES@@", repr(tuple(ESTIMATORS)))


def test_importing_the_adapter_first_registers_without_a_warning() -> None:
    """`import verl_maxpo.integration.adapter` (bench, other frameworks) imports core_algos itself: the plugin's
    hook then
    meets a partly initialized adapter and leaves the registration to it, without a warning."""
    proc = run([sys.executable, "-c", ADAPTER_FIRST_PROBE])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["registered"] == sorted(ESTIMATORS)
    assert out["warnings"] == []


def test_plugins_disabled_then_external_modules_fallback() -> None:
    off = run([sys.executable, "-c", PROBE], VERL_USE_EXTERNAL_PLUGINS="none")
    assert off.stdout.strip().splitlines()[-1] == "[] False"
    fallback = run(
        [sys.executable, "-c", PROBE], VERL_USE_EXTERNAL_PLUGINS="none", VERL_USE_EXTERNAL_MODULES="verl_maxpo.plugin"
    )
    assert fallback.stdout.strip().splitlines()[-1] == "['maxpo', 'pkpo'] True"


def test_check_command_ok() -> None:
    exe = shutil.which("verl-maxpo")
    assert exe, "console script verl-maxpo is not installed"
    proc = run([exe, "check"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: `import verl`")
    assert all(name in proc.stdout for name in ESTIMATORS), proc.stdout  # every estimator of the table
    module = run([sys.executable, "-m", "verl_maxpo", "check", "--json"])
    assert module.returncode == 0
    assert sorted(json.loads(module.stdout)["found"]["registered"]) == sorted(ESTIMATORS)


def test_check_command_explains_a_failure() -> None:
    proc = run([sys.executable, "-m", "verl_maxpo", "check"], VERL_USE_EXTERNAL_PLUGINS="none")
    assert proc.returncode == 1
    assert "FAIL" in proc.stderr
    assert "VERL_USE_EXTERNAL_PLUGINS=none" in proc.stderr  # the setting that stops it, and the way out:
    assert "VERL_USE_EXTERNAL_MODULES=verl_maxpo.plugin" in proc.stderr
    listed = run([sys.executable, "-m", "verl_maxpo", "check"], VERL_USE_EXTERNAL_PLUGINS="someone_else")
    assert listed.returncode == 1 and "someone_else" in listed.stderr and "maxpo" in listed.stderr


def test_ray_actor_finds_maxpo_with_only_import_verl() -> None:
    ray = pytest.importorskip("ray")

    @ray.remote(num_cpus=1)
    class TaskRunnerLike:
        """Like verl's TaskRunner: a fresh worker process that imports verl and nothing of ours."""

        def estimate(self) -> tuple[list[str], bool, list[float]]:
            import sys

            import numpy as np
            import torch
            import verl  # noqa: F401
            from verl.trainer.ppo import core_algos

            fn = core_algos.get_adv_estimator_fn("maxpo")
            rewards = torch.zeros(8, 3)
            rewards[0, -1] = 1.0
            adv, _ = fn(
                token_level_rewards=rewards,
                response_mask=torch.ones(8, 3),
                index=np.array(["p"] * 8, dtype=object),
                config={"maxpo": {"k": 4}},
            )
            names = sorted(n for n in ("maxpo", "pkpo") if n in core_algos.ADV_ESTIMATOR_REGISTRY)
            return names, "verl_maxpo.plugin" in sys.modules, adv[:, 0].tolist()

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        names, plugin_loaded, adv = ray.get(TaskRunnerLike.remote().estimate.remote(), timeout=240)
    finally:
        ray.shutdown()
    assert names == ["maxpo", "pkpo"] and plugin_loaded
    assert adv == pytest.approx([1.0] + [-1 / 7] * 7, abs=1e-6)  # the reference's worked example


def test_verl_main_ppo_composes_with_maxpo() -> None:
    proc = run(
        [
            sys.executable,
            "-m",
            "verl.trainer.main_ppo",
            "algorithm.adv_estimator=maxpo",
            "+algorithm.maxpo.k=4",
            "actor_rollout_ref.rollout.n=8",
            "--cfg",
            "job",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adv_estimator: maxpo" in proc.stdout
    assert "maxpo:\n    k: 4" in proc.stdout
