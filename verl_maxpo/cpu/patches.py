"""Patches to verl 0.9.1, applied only when VERL_PLATFORM=cpu (see `verl_maxpo.cpu.register`).

Each patch names the verl line it works around; none edits a verl file. `apply()` is idempotent. `patch_on_import`
is also how `verl_maxpo.sessions` reaches verl's v1 trainer without importing it inside `import verl`.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Callable
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


class _PatchOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs `patch(module)` right after `name` is first imported. Importing verl's heavy modules inside
    `import verl` (where the plugin runs) would be slow and circular, so patches to them wait for their import."""

    def __init__(self, name: str, patch: Callable[[Any], None]) -> None:
        self.name, self.patch, self._inner = name, patch, None

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # find the real spec without finding ourselves again
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        self._inner, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._inner.exec_module(module)
        self.patch(module)


def patch_on_import(name: str, patch: Callable[[Any], None]) -> None:
    """Apply `patch` to module `name` now if it is imported, else right after its first import."""
    if name in sys.modules:
        patch(sys.modules[name])
    elif not any(isinstance(f, _PatchOnImport) and (f.name, f.patch) == (name, patch) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(name, patch))


def _unpinned_offload(module: Any) -> None:
    """verl/workers/engine/fsdp/transformer_impl.py ~462 gives FSDP2 models that only run forward (the reference
    model) `CPUOffloadPolicy(pin_memory=True)`; pinning needs an accelerator ("Cannot access accelerator device").
    On a CPU the parameters already live in host memory: same policy, unpinned."""
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
    # FSDP engines register for devices cuda/npu only (workers/engine/fsdp/transformer_impl.py ~1143); verl's own
    # override (workers/engine/base.py ~399-405) picks the cuda entry, whose code is device-agnostic. Set here, not
    # in the platform's __init__: verl's auto-detection instantiates every registered platform on any host.
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")
    _patch_process_group()
    _patch_placement_check()
    patch_on_import("verl.workers.engine.fsdp.transformer_impl", _unpinned_offload)
    _APPLIED = True
