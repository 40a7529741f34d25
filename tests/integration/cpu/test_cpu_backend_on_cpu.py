"""The CPU backend's registration is opt-in, and its pieces compute what they should (fast: no trainer run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from verl_maxpo.core.table import ESTIMATORS

REPO = Path(__file__).resolve().parents[3]

# Prints verl's registries, its platform resolution and the state of every CPU patch, after `import verl`.
PROBE = r"""
import json, sys
import verl
from verl.plugin.platform import PlatformRegistry
from verl.plugin.platform.platform_manager import _detect_platform_name
from verl.single_controller.ray.base import RayResourcePool
from verl.trainer.ppo import core_algos
from verl.utils import distributed
from verl.workers.rollout import base
from verl.workers.rollout.replica import RolloutReplicaRegistry
print(json.dumps({
    "platforms": list(PlatformRegistry.registered_names()),
    "detected": _detect_platform_name(),
    "rollouts": sorted("/".join(k) for k in base._ROLLOUT_REGISTRY),
    "replicas": sorted(RolloutReplicaRegistry._registry),
    "estimators": sorted(core_algos.ADV_ESTIMATOR_REGISTRY),
    "pg_init_patched": hasattr(distributed.initialize_global_process_group_ray, "_verl_maxpo_cpu"),
    "placement_patched": hasattr(RayResourcePool.get_placement_groups, "_verl_maxpo_cpu"),
    "import_hooks": sorted(f.name for f in sys.meta_path if "verl_maxpo" in type(f).__module__),
    "heavy_modules": sorted(m for m in ("matplotlib", "verl_maxpo.tools.demo.main", "verl_maxpo.tools.report.main",
                                          "verl_maxpo.cpu.rollout")
                            if m in sys.modules),
}))
"""


def probe(**env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "VERL_ENGINE_DEVICE")}
    full.update(PYTHONPATH=str(REPO), **env)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=full, timeout=180, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def without_plugins() -> dict:
    return probe(VERL_USE_EXTERNAL_PLUGINS="none")


@pytest.mark.slow  # fresh interpreters importing verl
def test_opt_in_unset_changes_nothing_but_names(without_plugins: dict) -> None:
    ours = probe()
    base = without_plugins
    assert ours["platforms"] == [*base["platforms"], "cpu"]
    assert ours["detected"] == base["detected"]
    assert set(ours["rollouts"]) - set(base["rollouts"]) == {"hf_cpu/async"}
    assert set(base["rollouts"]) <= set(ours["rollouts"])
    assert set(ours["replicas"]) == {*base["replicas"], "hf_cpu"}
    assert set(ours["estimators"]) == {*base["estimators"], *ESTIMATORS}  # the estimator table's names
    assert not ours["pg_init_patched"] and not ours["placement_patched"]
    assert ours["import_hooks"] == ["verl.trainer.ppo.v1.utils"]  # the session wrapper's one-shot hook only
    assert ours["heavy_modules"] == []


@pytest.mark.slow  # fresh interpreters importing verl
def test_opt_in_selects_cpu_platform_and_patches() -> None:
    ours = probe(VERL_PLATFORM="cpu")
    assert ours["detected"] == "cpu"
    assert ours["pg_init_patched"] and ours["placement_patched"]
    assert ours["import_hooks"] == ["verl.trainer.ppo.v1.utils", "verl.workers.engine.fsdp.transformer_impl"]
    assert ours["heavy_modules"] == []


def test_platform_answers_for_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import verl  # noqa: F401  # first, as in any verl process: its plugin imports verl_maxpo.cpu.platform

    from verl_maxpo.cpu.platform import PlatformCPU

    monkeypatch.delenv("VERL_ENGINE_DEVICE", raising=False)
    before = dict(os.environ)
    platform = PlatformCPU()  # verl's auto-detection instantiates every platform: no side effects
    assert dict(os.environ) == before
    assert platform.device_name == "cpu" and platform.communication_backend_name() == "gloo"
    assert platform.current_device() == torch.device("cpu")
    assert platform.ray_resource_name() == "GPU" and platform.is_platform_available(use_smi_check=True) is False
    module = platform.device_module
    assert module.memory_allocated() == 0 and module.max_memory_reserved() == 0
    module.manual_seed(3)
    a = torch.rand(2)
    module.set_rng_state(module.get_rng_state())
    module.manual_seed(3)
    assert torch.equal(torch.rand(2), a)
    free, total = module.mem_get_info()
    assert 0 < free <= total
    with pytest.raises(AttributeError, match="has no 'nccl'"):
        module.nccl  # noqa: B018
    # Only the memory names verl calls are answered; any other (a new one verl starts calling) fails loudly.
    for name in ("memory_reserved", "max_memory_allocated", "reset_peak_memory_stats", "ipc_collect"):
        assert not getattr(module, name)()
    module.set_per_process_memory_fraction(0.5)
    with pytest.raises(AttributeError):
        module.memory_stats  # noqa: B018


@pytest.mark.parametrize(
    ("have", "need", "fits", "names"),
    [
        ((6, 1), (5, 1), True, []),
        ((4, 1), (5, 1), False, ["num_cpus to at least 5"]),
        ((6, 0), (5, 1), False, ["num_gpus=1"]),
        ((2, 0), (5, 1), False, ["num_cpus", "num_gpus"]),
    ],
)
def test_placement_check_says_what_to_raise(have: tuple, need: tuple, fits: bool, names: list[str]) -> None:
    from verl_maxpo.cpu.resources import fit_message, needed

    assert needed(1) == (5, 1) and needed(2) == (8, 2)
    message = fit_message(*have, *need)
    assert fit_message(2, 0, 3, 1, held=(2, 0)) == (
        "Ray offers 0 GPU slot(s) but verl asks for 1: on a CPU give Ray fake slots with "
        "+ray_kwargs.ray_init.num_gpus=1 (and trainer.n_gpus_per_node to match); Ray offers 2 logical CPU(s) but "
        "verl needs 3: set ray_kwargs.ray_init.num_cpus to at least 5 (logical CPUs, not real cores)"
    )
    assert (message is None) == fits
    for name in names:
        assert name in message


def test_filter_logits_keeps_top_k_and_top_p() -> None:
    from verl_maxpo.cpu.rollout import filter_logits

    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert torch.isinf(filter_logits(logits, 2, 1.0)).tolist() == [False, False, True, True]
    assert torch.isinf(filter_logits(logits, -1, 0.7)).tolist() == [False, False, True, True]
    assert torch.isinf(filter_logits(logits, -1, 0.5)).tolist() == [False, True, True, True]
    assert not torch.isinf(filter_logits(logits, -1, 1.0)).any()


@pytest.mark.parametrize(
    ("response", "truth", "score"),
    [("085", "085", 1.0), ("080", "085", 2 / 3), ("185", "085", 2 / 3), ("8", "085", 0.0), ("08", "085", 1 / 3),
     ("", "085", 0.0), ("0851", "085", 0.5)],
)  # fmt: skip
def test_tiny_reward_gives_partial_credit(response: str, truth: str, score: float) -> None:
    from verl_maxpo.tasks.tiny.reward import compute_score

    assert compute_score("verl_maxpo/tiny_addition", response, truth) == pytest.approx(score)


@pytest.mark.parametrize(
    ("rank", "lora", "refused"),
    [(0, {}, False), (8, {"merge": True}, False), (8, {}, True), (8, {"merge": False}, True)],
)
def test_lora_reaches_the_rollout_only_merged(rank: int, lora: dict, refused: bool) -> None:
    """The sampler loads full weights: an unmerged LoRA run is refused at start-up, and an adapter-only weight sync
    (verl's `peft_config`) is refused too, never loaded as if it were the model."""
    import asyncio
    from types import SimpleNamespace

    from verl_maxpo.cpu.rollout import LORA_UNMERGED, HFCPUServerAdapter, check_lora_merged

    config = SimpleNamespace(lora_rank=rank, lora=lora)
    if refused:
        with pytest.raises(NotImplementedError, match="lora.merge=true"):
            check_lora_merged(config)
    else:
        check_lora_merged(config)
    adapter = object.__new__(HFCPUServerAdapter)
    with pytest.raises(NotImplementedError) as err:
        asyncio.run(adapter.update_weights(iter([]), peft_config={"r": 8}))
    assert str(err.value) == LORA_UNMERGED
