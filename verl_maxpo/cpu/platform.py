"""A 'cpu' platform for verl's platform registry (selected with VERL_PLATFORM=cpu; never auto-detected).

verl 0.9.1 resolves its device through `verl.plugin.platform.get_platform()` (in its platform_manager): the
VERL_PLATFORM variable first, else the first registered platform whose `is_platform_available` says yes, else
'nvidia'. This platform always answers no to auto-detection, so a machine without the opt-in resolves exactly as
before; with VERL_PLATFORM=cpu, verl's device is 'cpu', its collective backend gloo, and `torch.cuda` calls made
through `get_torch_device()` go to `CPUDeviceModule`, a stand-in whose memory/stream calls are no-ops.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from types import ModuleType
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase

PLATFORM_NAME = "cpu"


def cpu_selected() -> bool:
    """True when the user opted in: VERL_PLATFORM=cpu (the same test verl's platform manager makes)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


class CPUDeviceModule:
    """What verl expects from `torch.cuda`, answered for a CPU.

    verl calls `get_torch_device().<fn>()` for seeding, RNG state, memory statistics, caches and streams. On a CPU
    the RNG calls forward to torch's global CPU generator, memory statistics report 0 (no device pool) and
    cache/stream calls do nothing.
    """

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def current_device(self) -> torch.device:
        return torch.device("cpu")

    def set_device(self, *_: Any) -> None:
        return None

    def synchronize(self, *_: Any) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    def get_rng_state(self, *_: Any) -> torch.Tensor:
        return torch.get_rng_state()

    def set_rng_state(self, state: torch.Tensor, *_: Any) -> None:
        torch.set_rng_state(state)

    def mem_get_info(self, *_: Any) -> tuple[int, int]:
        import psutil

        vm = psutil.virtual_memory()
        return vm.available, vm.total

    def get_device_name(self, *_: Any) -> str:
        return "cpu"

    def get_device_properties(self, *_: Any) -> Any:
        import psutil

        return type("CPUProperties", (), {"name": "cpu", "total_memory": psutil.virtual_memory().total})()

    def stream(self, *_: Any) -> Any:
        return nullcontext()

    def current_stream(self, *_: Any) -> Any:
        return _NoStream()

    Stream = property(lambda self: _NoStream)
    Event = property(lambda self: _NoEvent)

    # The memory statistics and pool controls verl calls through get_torch_device() (verl.utils.memory_utils,
    # verl.utils.profiler.performance, verl.workers.engine_workers): no device pool on a CPU, so 0 / nothing.
    def memory_allocated(self, *_: Any) -> int:
        return 0

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    def reset_peak_memory_stats(self, *_: Any) -> None:
        return None

    reset_accumulated_memory_stats = ipc_collect = reset_peak_memory_stats

    def set_per_process_memory_fraction(self, *_: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        # Only the names above: anything else verl might start calling fails loudly instead of returning 0.
        raise AttributeError(f"verl-maxpo's CPU device module has no {name!r} (torch.cuda.{name} has no CPU meaning)")


class _NoStream:
    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def synchronize(self) -> None:
        return None

    def wait_stream(self, *_: Any) -> None:
        return None

    def wait_event(self, *_: Any) -> None:
        return None


class _NoEvent(_NoStream):
    def record(self, *_: Any) -> None:
        return None

    def query(self) -> bool:
        return True


class PlatformCPU(PlatformBase):
    """verl's platform interface on a CPU: device 'cpu', collectives over gloo, Ray resource 'GPU'.

    Ray's resource name stays "GPU" because verl's resource pools ask for one accelerator per worker
    (`RayResourcePool.get_placement_groups`) and count only GPU/NPU (`RayResourcePool._check_resource_available`):
    the recipe gives Ray a fake GPU slot (`+ray_kwargs.ray_init.num_gpus=1`) and no CUDA is ever touched.
    """

    def __init__(self) -> None:
        # No side effects: verl's auto-detection instantiates every registered platform on any host
        # (`get_platform` in verl.plugin.platform). The engine override this platform needs is set by `patches.apply()`.
        self._module = CPUDeviceModule()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return self._module  # type: ignore[return-value]  # duck-typed torch.cuda

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: only VERL_PLATFORM=cpu selects it, so GPU machines resolve as before.
        return False

    def current_device(self) -> torch.device:  # type: ignore[override]
        # verl does `.to(get_device_id())`; an int 0 would mean cuda:0.
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
