"""Patches to verl 0.9.1, applied only when VERL_PLATFORM=cpu (see `verl_maxpo.cpu.register`).

Each patch names the verl function it works around and is applied through `verl_maxpo.integration.compat`'s guarded step
(touch points `process_group`, `placement_check`, `unpinned_offload`); none edits a verl file. `apply()` is
idempotent.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType
from typing import Any

from verl_maxpo.integration import compat

_APPLIED = False


def _patch_process_group(distributed: ModuleType) -> None:
    """verl's `initialize_global_process_group_ray` builds backend f"cpu:gloo,{device}:{backend}", i.e.
    "cpu:gloo,cpu:gloo" on a CPU, which torch refuses ("Duplicate device type cpu"). Default the backend to
    "cpu:gloo" instead.

    Bound here, during `import verl`, before verl.workers.engine_workers imports the name."""
    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_verl_maxpo_cpu", False):
        return

    @functools.wraps(original)
    def init_process_group_cpu(timeout_second: Any = None, backend: str | None = None) -> None:
        return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    init_process_group_cpu._verl_maxpo_cpu = True  # type: ignore[attr-defined]
    distributed.initialize_global_process_group_ray = init_process_group_cpu


def _patch_placement_check(base: ModuleType) -> None:
    """verl's `RayResourcePool.get_placement_groups` asks Ray for bundles {"CPU": max_colocate_count, "GPU": 1} and
    then waits on `pg.ready()` forever if Ray cannot place them. Check first and fail with what to change."""
    RayResourcePool = base.RayResourcePool  # noqa: N806  (verl's class)
    original = RayResourcePool.get_placement_groups
    if getattr(original, "_verl_maxpo_cpu", False):
        return

    @functools.wraps(original)
    def get_placement_groups_checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.pgs is None:
            from verl_maxpo.cpu.resources import check_bundles_fit

            check_bundles_fit(
                cpus_per_bundle=self.max_colocate_count,
                gpu_per_bundle=1 if self.use_gpu else 0,
                bundles=sum(self._store),
            )
        return original(self, *args, **kwargs)

    get_placement_groups_checked._verl_maxpo_cpu = True  # type: ignore[attr-defined]
    RayResourcePool.get_placement_groups = get_placement_groups_checked


def _unpinned_offload(module: Any) -> None:
    """verl's FSDP engine (verl.workers.engine.fsdp.transformer_impl, where it builds the FSDP2 model) gives models
    that only run forward (the reference model) `CPUOffloadPolicy(pin_memory=True)`; pinning needs an accelerator
    ("Cannot access accelerator device"). On a CPU the parameters already live in host memory: same policy, unpinned."""
    policy = module.CPUOffloadPolicy
    if policy is None or getattr(policy, "_verl_maxpo_cpu", False):
        return

    def cpu_offload_policy(*args: Any, **kwargs: Any) -> Any:
        return policy(*args, **{**kwargs, "pin_memory": False})

    cpu_offload_policy._verl_maxpo_cpu = True  # type: ignore[attr-defined]
    module.CPUOffloadPolicy = cpu_offload_policy


def apply() -> None:
    """Apply every CPU patch (only call this when the CPU platform is selected)."""
    global _APPLIED
    if _APPLIED:
        return
    # FSDP engines register for devices cuda/npu only (their `EngineRegistry.register` calls in
    # verl.workers.engine.fsdp.transformer_impl); verl's VERL_ENGINE_DEVICE override (`EngineRegistry.get_engine_cls`
    # in verl.workers.engine.base) picks the cuda entry, whose code is device-agnostic. Set here, not in the
    # platform's __init__: verl's auto-detection instantiates every registered platform on any host.
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")
    compat.apply_now("process_group", _patch_process_group)
    compat.apply_now("placement_check", _patch_placement_check)
    compat.on_import("unpinned_offload", _unpinned_offload)
    _APPLIED = True
