"""verl-maxpo's CPU backend for verl 0.9.1: run verl's own trainer (`python -m verl.trainer.main_ppo`) on a CPU.

Opt-in only. `register()` (called by the `verl.plugins` entry point) adds three names and nothing else:
  - platform 'cpu' in `verl.plugin.platform.PlatformRegistry` (never auto-detected),
  - rollout 'hf_cpu' in `verl.workers.rollout.base._ROLLOUT_REGISTRY` (as a dotted path, imported on use),
  - rollout 'hf_cpu' in `verl.workers.rollout.replica.RolloutReplicaRegistry` (a loader, imported on use);
the two rollout names as soon as verl imports those modules.
The patches in `patches.py` are applied only when VERL_PLATFORM=cpu selects the platform. See docs/cpu-backend.md.
Import verl before importing `platform` or `rollout` directly: verl's plugin loading imports them too, and doing it
the other way round makes that a circular import (verl then skips the plugin, logging it at DEBUG level).
"""

from __future__ import annotations

from types import ModuleType

ROLLOUT_NAME = "hf_cpu"
_ADAPTER_PATH = "verl_maxpo.cpu.rollout.HFCPUServerAdapter"


def _load_replica() -> type:
    from verl_maxpo.cpu.rollout import HFCPUReplica

    return HFCPUReplica


def _add_adapter(rollout_base: ModuleType) -> None:
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = _ADAPTER_PATH


def _add_replica(replica: ModuleType) -> None:
    replica.RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_replica)


def _add_platform(platform: ModuleType) -> None:
    from verl_maxpo.cpu.platform import PLATFORM_NAME, PlatformCPU

    if platform.PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        platform.PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)


def register() -> None:
    """Add the CPU platform and the hf_cpu rollout to verl's registries; patch verl only if VERL_PLATFORM=cpu.

    The rollout names go in right after verl first imports each rollout module (one-shot import hooks): importing
    `verl.workers.rollout` here would slow every `import verl`, in every process (docs/cpu-backend.md, "Opting
    in", has the measured cost). Every step goes
    through `verl_maxpo.integration.compat`'s guarded step: a verl name that moved skips that step with one warning.
    """
    from verl_maxpo.integration import compat

    if not compat.apply_now("platform_base", lambda _: None):  # platform.py subclasses it at import
        return
    from verl_maxpo.cpu import patches
    from verl_maxpo.cpu.platform import cpu_selected

    compat.apply_now("platform_registry", _add_platform)
    compat.on_import("rollout_registry", _add_adapter)
    compat.on_import("replica_registry", _add_replica)
    if cpu_selected():
        patches.apply()
