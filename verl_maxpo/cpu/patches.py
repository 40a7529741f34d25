"""Patches to verl 0.9.1, applied only when VERL_PLATFORM=cpu (see `verl_maxpo.cpu.register`).

Each patch names the verl line it works around; none edits a verl file. `apply()` is idempotent.
"""

from __future__ import annotations

import functools
import os
from typing import Any

_APPLIED = False


def _patch_process_group() -> None:
    """verl/utils/distributed.py ~89 builds backend f"cpu:gloo,{device}:{backend}", i.e. "cpu:gloo,cpu:gloo" on a
    CPU, which torch refuses ("Duplicate device type cpu"). Default the backend to "cpu:gloo" instead.

    Bound here, during `import verl`, before verl/workers/engine_workers.py imports the name."""
    from verl.utils import distributed

    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_verl_maxpo_cpu", False):
        return

    @functools.wraps(original)
    def init_process_group_cpu(timeout_second: Any = None, backend: str | None = None) -> None:
        return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    init_process_group_cpu._verl_maxpo_cpu = True  # type: ignore[attr-defined]
    distributed.initialize_global_process_group_ray = init_process_group_cpu


def _patch_placement_check() -> None:
    """verl/single_controller/ray/base.py ~146-155 asks Ray for bundles {"CPU": max_colocate_count, "GPU": 1} and
    then waits on `pg.ready()` forever if Ray cannot place them. Check first and fail with what to change."""
    from verl.single_controller.ray.base import RayResourcePool

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


def apply() -> None:
    """Apply every CPU patch (only call this when the CPU platform is selected)."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_process_group()
    _patch_placement_check()
    if os.environ.get("VERL_MAXPO_TRACE_DIR"):
        from verl_maxpo.cpu import trace

        trace.install()
    _APPLIED = True
