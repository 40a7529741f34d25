"""recipes/README.md's GPU-cluster page stays true to verl 0.9.1: its Hydra keys, defaults and version pins.

Every dotted Hydra key the page names must exist in verl's `ppo_trainer` config (composed with Hydra's compose API
from verl's installed config folder, without importing verl); the values it says are verl's defaults or the
recipe's must be what composition gives; the version matrix must match the installed verl's own pins.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "recipes" / "README.md"
HEADING = "## On a GPU cluster"
# A key under a free-form dict that verl leaves empty (the page adds it with `+`): its parent must exist.
FREE_FORM = ("actor_rollout_ref.model.override_config.",)
KEY = re.compile(r"(?<![\w./])((?:actor_rollout_ref|trainer|data|algorithm|critic)(?:\.\w+)+)")


def verl_config_dir() -> Path:
    spec = importlib.util.find_spec("verl")  # without importing verl (Ray, torch)
    return Path(list(spec.submodule_search_locations)[0]) / "trainer" / "config"


def page_section() -> str:
    text = PAGE.read_text()
    assert text.count(HEADING) == 1, f"{PAGE.name} must hold one {HEADING!r} section"
    section = text.split(HEADING, 1)[1]
    return section.split("\n## ", 1)[0]  # up to the next top-level section (### subsections stay)


def page_keys() -> set[str]:
    return {m.group(1).rstrip(".") for m in KEY.finditer(page_section())}


def compose(config_dir: Path, name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return hydra_compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def verl_cfg() -> DictConfig:
    return compose(verl_config_dir(), "ppo_trainer", [])


@pytest.fixture(scope="module")
def gsm8k_cfg() -> DictConfig:
    # File search paths in place of the recipe's pkg:// one, so composing imports no verl.
    searchpath = f"hydra.searchpath=['file://{verl_config_dir()}','file://{ROOT / 'recipes' / 'shared'}']"
    cfg = compose(ROOT / "recipes" / "math", "gsm8k", [searchpath])
    OmegaConf.resolve(cfg)
    return cfg


def test_the_page_names_the_keys_it_explains():
    keys = page_keys()
    for key in (
        "actor_rollout_ref.actor.fsdp_config.param_offload",
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload",
        "actor_rollout_ref.ref.fsdp_config.param_offload",
        "actor_rollout_ref.rollout.gpu_memory_utilization",
        "actor_rollout_ref.rollout.tensor_model_parallel_size",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
    ):
        assert key in keys, f"the GPU-cluster page no longer names {key}"


def test_every_key_on_the_page_exists_in_verls_config(verl_cfg):
    missing = []
    for key in sorted(page_keys()):
        free = next((prefix for prefix in FREE_FORM if key.startswith(prefix)), None)
        probe = free.rstrip(".") if free else key
        if OmegaConf.select(verl_cfg, probe, default=KeyError) is KeyError:
            missing.append(key)
    assert not missing, f"keys on the GPU-cluster page that verl 0.9.1's ppo_trainer lacks: {missing}"


def test_a_misspelt_key_would_be_caught(verl_cfg):
    # The check above can fail: a key verl does not have is reported missing.
    assert OmegaConf.select(verl_cfg, "actor_rollout_ref.actor.fsdp_config.param_offlaod", default=KeyError) is KeyError


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("actor_rollout_ref.actor.strategy", "fsdp"),
        ("actor_rollout_ref.actor.fsdp_config.model_dtype", "fp32"),
        ("actor_rollout_ref.ref.fsdp_config.model_dtype", "fp32"),
        ("actor_rollout_ref.rollout.free_cache_engine", True),
        ("actor_rollout_ref.actor.fsdp_config.param_offload", False),
        ("actor_rollout_ref.actor.fsdp_config.optimizer_offload", False),
        ("actor_rollout_ref.ref.fsdp_config.param_offload", False),
    ],
)
def test_verl_defaults_the_page_states(verl_cfg, key, value):
    assert OmegaConf.select(verl_cfg, key) == value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("actor_rollout_ref.actor.use_dynamic_bsz", True),
        ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu", 16384),
        ("actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu", 16384),  # follows the actor's
        ("actor_rollout_ref.ref.log_prob_max_token_len_per_gpu", 16384),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", 64),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", 0.6),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", 1),
        ("actor_rollout_ref.model.enable_gradient_checkpointing", True),
        ("actor_rollout_ref.model.use_remove_padding", True),
        ("actor_rollout_ref.model.path", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("actor_rollout_ref.actor.use_kl_loss", True),  # why the page counts a reference model
    ],
)
def test_recipe_values_the_page_states(gsm8k_cfg, key, value):
    assert OmegaConf.select(gsm8k_cfg, key) == value


def test_one_gsm8k_sequence_is_the_pages_figure(gsm8k_cfg):
    assert gsm8k_cfg.data.max_prompt_length + gsm8k_cfg.data.max_response_length == 1536
    assert "1,536 tokens for GSM8K" in page_section()


def test_short_key_names_on_the_page_are_leaves_of_named_keys():
    # The table shortens keys to their last part (`gpu_memory_utilization=0.6`); each must be a named key's leaf.
    leaves = {key.rsplit(".", 1)[1] for key in page_keys()}
    short = set(re.findall(r"`([a-z_]+)=(?!=)[^`]*`", page_section()))  # not `vllm==0.24.0` nor `DRY_RUN=1`
    assert short, "the settings table names no short keys"
    assert short <= leaves, f"short names on the page that match no full key it names: {short - leaves}"


def matrix_row(name: str) -> list[str]:
    rows = [line for line in page_section().splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 1, f"the version matrix must have one {name!r} row"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_version_matrix_matches_the_installed_verls_pins():
    assert importlib.metadata.version("verl") == matrix_row("verl")[1]
    pins = {}
    for req in importlib.metadata.requires("verl") or []:
        m = re.fullmatch(r'([\w-]+)==([\w.]+); extra == "vllm"', req)
        if m:
            pins[m.group(1)] = m.group(2)
    assert pins.get("torch") and pins.get("vllm"), f"verl's vllm extra pins no torch/vllm: {pins}"
    torch_row = matrix_row("torch, torchvision, torchaudio")[1]
    assert torch_row == f"{pins['torch']}, {pins['torchvision']}, {pins['torchaudio']}"
    assert matrix_row("vLLM")[1] == pins["vllm"]
    assert matrix_row("transformers")[1] == pins["transformers"]
    # CUDA 13.0: verl names its flash-attn and cupy extras for it.
    cuda_extras = " ".join(importlib.metadata.metadata("verl").get_all("Provides-Extra") or [])
    assert "cu130" in cuda_extras and matrix_row("CUDA")[1] == "13.0"
    python = importlib.metadata.metadata("verl")["Requires-Python"]
    assert set(python.split(",")) == {">=3.10", "<3.13"} and matrix_row("Python")[1] == "3.10 to 3.12"


def page_launch_commands() -> list[list[str]]:
    """Every `verl-maxpo launch ...` command in the page's code blocks, continuation lines joined."""
    text = PAGE.read_text().replace("\\\n", " ")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.split("#", 1)[0] for block in blocks for line in block.splitlines()]
    return [shlex.split(line.strip())[2:] for line in lines if line.strip().startswith("verl-maxpo launch ")]


def test_the_pages_launch_commands_use_the_launchers_interface():
    from verl_maxpo.launch.main import parser

    commands = page_launch_commands()
    assert len(commands) >= 4, commands
    for argv in commands:
        argv = [a.replace('"$SLURM_JOB_NUM_NODES"', "2").replace("$SLURM_JOB_NUM_NODES", "2") for a in argv]
        args = parser().parse_intermixed_args(argv)  # an unknown flag exits 2 and fails the test
        assert all("=" in o and not o.startswith("-") for o in args.overrides), argv
    assert not re.search(r"\b(DRY_RUN|OUT_DIR|ARMS|MODEL_PATH|NGPUS)=", PAGE.read_text())  # no retired settings
