"""The shipped Hydra recipes compose through verl's real entry point and are what verl's own code accepts.

Each recipe x arm is composed by verl's Hydra entry point with the exact arguments its header command shows plus
`estimator=<arm>` (and `--cfg job`), then checked against verl's registry, config dataclasses, RLHFDataset and
validate_config; each GRPO/PKPO arm is compared key by key with the MaxPO arm, and the group's files with the
estimator table. This checkout's recipes/shared is put first in the searchpath (an installed verl_maxpo.recipes
may be another checkout's).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from math import comb
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

pytestmark = pytest.mark.slow  # composes every recipe through verl's entry point in subprocesses

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "data"
# <task>_<arm> -> the recipe's folder; composed as `--config-name <task> estimator=<arm>`.
RECIPES = {f"{task}_{arm}": folder for task, folder in (("gsm8k", "math"), ("math", "math"), ("code", "code"))
           for arm in ("maxpo", "grpo", "pkpo")}  # fmt: skip
ESTIMATOR_GROUP = ROOT / "recipes" / "shared" / "estimator"
TWINS = [("gsm8k_maxpo", "gsm8k_grpo"), ("math_maxpo", "math_grpo"), ("code_maxpo", "code_grpo")]
PKPO_TWINS = [("gsm8k_maxpo", "gsm8k_pkpo"), ("math_maxpo", "math_pkpo"), ("code_maxpo", "code_pkpo")]
# The only keys a GRPO twin may change: the estimator and the estimator's own options.
ESTIMATOR_KEYS = {
    "algorithm.adv_estimator",
    "algorithm.norm_adv_by_std_in_grpo",
    "algorithm.maxpo.k",
    "algorithm.maxpo.norm_by_std",
}
HEADER = re.compile(
    r"^#   (python -m verl\.trainer\.main_ppo --config-path pkg://verl_maxpo\.recipes\.(\w+) --config-name (\w+)) "
    r"\[overrides\]$"
)
TINY = "tiny_assets=/tiny_assets"  # a fixed tiny assets folder (its default follows $PWD)
SEARCHPATH = f"hydra.searchpath=[pkg://verl.trainer.config,file://{ROOT}/recipes/shared]"
OFFLINE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONHASHSEED": "0"}


def _load_helper(name: str):
    spec = importlib.util.spec_from_file_location(name, FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def header_command(name: str) -> list[str]:
    """argv of the command in the recipe's opening lines (the recipe found in the installed package)."""
    task, arm = name.split("_", 1)
    path = ROOT / "recipes" / RECIPES[name] / f"{task}.yaml"
    lines = path.read_text().splitlines()[:6]
    matches = [HEADER.match(line) for line in lines]
    found = [m for m in matches if m]
    assert len(found) == 1, f"{path.name} must open with its run command, found {lines}"
    command, config_dir, config_name = found[0].groups()
    assert config_dir == RECIPES[name] and config_name == task
    argv = shlex.split(command)
    return [sys.executable, *argv[1:], SEARCHPATH, f"estimator={arm}"]


def verl_config_dir() -> Path:
    spec = importlib.util.find_spec("verl")  # without importing verl (Ray, torch)
    return Path(list(spec.submodule_search_locations)[0]) / "trainer" / "config"


# Runs verl's Hydra entry point (the `main` that `python -m verl.trainer.main_ppo` calls) once per argv in one
# process: composing is ~0.3 s, importing verl is ~5 s, so one interpreter for all recipes keeps this test fast.
COMPOSE_DRIVER = """
import contextlib, io, json, sys
import verl.trainer.main_ppo as entry
out = {}
for name, argv in json.loads(sys.argv[1]).items():
    sys.argv = ["verl.trainer.main_ppo", *argv]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        entry.main()
    out[name] = buf.getvalue()
sys.stdout.write(json.dumps(out))
"""


@pytest.fixture(scope="module")
def composed() -> dict[str, DictConfig]:
    """Every recipe composed by verl's main_ppo entry point with its header command plus --cfg job, resolved."""
    argvs = {}
    for name in RECIPES:
        argv = header_command(name)
        assert argv[1:3] == ["-m", "verl.trainer.main_ppo"]
        argvs[name] = [*argv[3:], "--cfg", "job"]
    for arm in ("maxpo", "grpo", "pkpo"):  # the tiny recipe: header command is multi-line; composed by name
        argvs[f"tiny_{arm}"] = ["--config-path", str(ROOT / "recipes" / "tiny"), "--config-name", "tiny",
                                SEARCHPATH, f"estimator={arm}", TINY, "--cfg", "job"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", COMPOSE_DRIVER, json.dumps(argvs)],
        cwd=ROOT,
        env=OFFLINE_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"a recipe does not compose:\n{proc.stderr[-3000:]}"
    configs = {}
    for name, text in json.loads(proc.stdout).items():
        cfg = OmegaConf.create(text)
        OmegaConf.resolve(cfg)
        configs[name] = cfg
    return configs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return _load_helper("tiny_hf").build_model_dir(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """gsm8k/, math/ and code/ parquet made by the data scripts from the committed fixtures."""
    out = tmp_path_factory.mktemp("data")
    for script, fixture, task in (
        ("gsm8k", "gsm8k", "gsm8k"),
        ("math", "math", "math"),
        ("code", "code_contests", "code"),
    ):
        cmd = [sys.executable, "-m", "verl_maxpo", "prepare", script, "--local-dir", str(FIXTURES / fixture)]
        subprocess.run([*cmd, "--out-dir", str(out / task)], check=True, capture_output=True, timeout=120)
    return out


def flatten(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        items = {}
        for key, value in node.items():
            items.update(flatten(value, f"{prefix}{key}."))
        return items
    return {prefix[:-1]: node}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_core_settings(composed, name):
    cfg = composed[name]
    task = name.rsplit("_", 1)[0]
    estimator = name.rsplit("_", 1)[1]
    assert cfg.algorithm.adv_estimator == estimator
    assert cfg.actor_rollout_ref.actor.strategy == "fsdp" and cfg.actor_rollout_ref.ref.strategy == "fsdp"
    assert cfg.actor_rollout_ref.rollout.name == "vllm"
    assert cfg.actor_rollout_ref.model.path.startswith("Qwen/Qwen2.5-")
    assert cfg.actor_rollout_ref.rollout.n == 16
    val = cfg.actor_rollout_ref.rollout.val_kwargs
    assert val.n == 16 and val.do_sample is True and val.temperature > 0
    assert list(cfg.trainer.logger) == ["console", "file"]
    assert cfg.trainer.validation_data_dir == f"outputs/{cfg.trainer.experiment_name}/val"
    assert cfg.data.train_files == f"~/data/verl-maxpo/{task}/train.parquet"
    # One seed drives data order, update shuffling, vLLM and FSDP; full_determinism stays off (it collapses groups).
    assert cfg.seed == 1
    assert cfg.data.seed == cfg.actor_rollout_ref.actor.data_loader_seed == cfg.actor_rollout_ref.rollout.seed == 1
    assert cfg.actor_rollout_ref.actor.fsdp_config.seed == cfg.actor_rollout_ref.ref.fsdp_config.seed == 1
    assert cfg.data.shuffle is True and cfg.actor_rollout_ref.rollout.full_determinism is False
    assert cfg.actor_rollout_ref.actor.loss_agg_mode == "seq-mean-token-sum-norm"
    assert cfg.actor_rollout_ref.actor.loss_scale_factor == cfg.data.max_response_length
    if estimator in ("maxpo", "pkpo"):
        assert cfg.algorithm.maxpo.k == 4 and cfg.algorithm.maxpo.norm_by_std is False
        assert cfg.actor_rollout_ref.rollout.n > cfg.algorithm.maxpo.k
        assert cfg.trainer.experiment_name == f"{task}_{estimator}_k4_seed1"
    else:
        assert "maxpo" not in cfg.algorithm and cfg.algorithm.norm_adv_by_std_in_grpo is True
        assert cfg.trainer.experiment_name == f"{task}_grpo_seed1"


def test_code_recipes_score_with_local_prime_code_by_default(composed):
    # The yaml default; the launchers refuse to start without SANDBOX_URL unless ALLOW_LOCAL_CODE_EXEC=1.
    for name in ("code_maxpo", "code_pkpo", "code_grpo"):
        assert composed[name].reward.sandbox_fusion.url is None
        assert composed[name].actor_rollout_ref.model.path == "Qwen/Qwen2.5-Coder-1.5B-Instruct"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_estimator_resolves_in_verls_registry_with_the_recipe_options(composed, name):
    import verl  # noqa: F401  (loads the verl.plugins entry points: registers maxpo/pkpo)
    from verl.trainer.ppo import core_algos

    cfg = composed[name]
    fn = core_algos.get_adv_estimator_fn(cfg.algorithm.adv_estimator)
    n = cfg.actor_rollout_ref.rollout.n
    rewards = torch.zeros(2 * n, 3)
    rewards[[0, 1], -1] = 1.0  # group 0: two correct samples of n; group 1: all wrong
    mask = torch.ones(2 * n, 3)
    index = np.array(["p0"] * n + ["p1"] * n, dtype=object)
    adv, _ = fn(token_level_rewards=rewards, response_mask=mask, index=index, config=cfg.algorithm)
    scalars = adv[:, 0].double()
    assert torch.allclose(adv, scalars.unsqueeze(-1).to(adv.dtype) * mask)
    assert torch.all(scalars[n:] == 0)
    if cfg.algorithm.adv_estimator != "pkpo":  # PKPO is non-centered: its groups do not sum to zero
        assert abs(scalars[:n].sum().item()) < 1e-4
    if cfg.algorithm.adv_estimator == "maxpo":
        k = cfg.algorithm.maxpo.k
        # Binary rewards, c = 2 correct of n: a correct sample's MaxPO advantage is C(n-2, k) / C(n-1, k).
        assert scalars[0].item() == pytest.approx(comb(n - 2, k) / comb(n - 1, k), abs=1e-5)
    elif cfg.algorithm.adv_estimator == "pkpo":
        from verl_maxpo.core.estimators import pkpo_advantages

        group_rewards = torch.tensor([1.0, 1.0] + [0.0] * (n - 2)).double()
        expected = pkpo_advantages(group_rewards, torch.zeros(n, dtype=torch.long), cfg.algorithm.maxpo.k)
        assert torch.allclose(scalars[:n], expected.double(), atol=1e-5) and scalars[0] > 0
    else:
        group = torch.tensor([1.0, 1.0] + [0.0] * (n - 2))
        expected = (group - group.mean()) / (group.std() + 1e-6)
        assert torch.allclose(scalars[:n].float(), expected, atol=1e-4)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_verl_config_dataclasses_accept_the_sections(composed, tiny_model, prepared, name):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.workers.config import CriticConfig, FSDPActorConfig, HFModelConfig, RolloutConfig

    cfg = composed[name].copy()
    cfg.actor_rollout_ref.model.path = str(tiny_model)
    cfg.critic.model.path = str(tiny_model)

    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert isinstance(actor, FSDPActorConfig) and actor.use_kl_loss and actor.rollout_n == 16
    actor.validate(cfg.trainer.n_gpus_per_node, cfg.data.train_batch_size, cfg.actor_rollout_ref.model)
    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    assert isinstance(rollout, RolloutConfig) and rollout.val_kwargs.n == 16 and rollout.seed == 1
    critic = omega_conf_to_dataclass(cfg.critic)
    assert isinstance(critic, CriticConfig) and critic.enable is False
    model = omega_conf_to_dataclass(cfg.actor_rollout_ref.model)
    assert isinstance(model, HFModelConfig) and model.hf_config.model_type == "qwen2"

    # The reference section, renamed the way verl's ActorRolloutRefWorker does before converting it.
    ref = OmegaConf.to_container(cfg.actor_rollout_ref.ref)
    ref["ppo_mini_batch_size"] = cfg.actor_rollout_ref.actor.ppo_mini_batch_size
    ref["ppo_micro_batch_size"] = ref.pop("log_prob_micro_batch_size")
    ref["ppo_micro_batch_size_per_gpu"] = ref.pop("log_prob_micro_batch_size_per_gpu")
    ref["use_dynamic_bsz"] = ref.pop("log_prob_use_dynamic_bsz")
    ref["ppo_max_token_len_per_gpu"] = ref.pop("log_prob_max_token_len_per_gpu")
    assert isinstance(omega_conf_to_dataclass(OmegaConf.create(ref)), FSDPActorConfig)

    # verl has no data dataclass: its consumer is RLHFDataset, which reads the section directly.
    task = name.rsplit("_", 1)[0]
    parquet = prepared / task / "train.parquet"
    dataset = RLHFDataset([str(parquet)], model.tokenizer, cfg.data)
    assert len(dataset) == pq.ParquetFile(parquet).metadata.num_rows > 0  # every fixture row fits max_prompt_length
    item = dataset[0]
    assert item["raw_prompt"][0]["role"] == "user" and item["data_source"] in (
        "openai/gsm8k",
        "DigitalLearningGmbH/MATH-lighteval",
        "codecontests",
    )

    # The checks main_ppo runs before it starts Ray: a reference policy, no critic.
    assert need_reference_policy(cfg) and not need_critic(cfg)
    validate_config(cfg, use_reference_policy=True, use_critic=False)


def test_algo_config_rejects_the_maxpo_block_but_verl_never_converts_it(composed):
    from verl.trainer.config import AlgoConfig
    from verl.utils.config import omega_conf_to_dataclass

    algorithm = composed["gsm8k_maxpo"].algorithm
    with pytest.raises(Exception, match="maxpo"):
        omega_conf_to_dataclass(algorithm)
    without = OmegaConf.masked_copy(algorithm, [key for key in algorithm if key != "maxpo"])
    converted = omega_conf_to_dataclass(without)
    assert isinstance(converted, AlgoConfig) and converted.adv_estimator == "maxpo"


@pytest.mark.parametrize(("maxpo", "pkpo"), PKPO_TWINS)
def test_pkpo_twin_differs_only_in_the_estimator(composed, maxpo, pkpo):
    a = flatten(OmegaConf.to_container(composed[maxpo], resolve=True))
    b = flatten(OmegaConf.to_container(composed[pkpo], resolve=True))
    run_a, run_b = composed[maxpo].trainer.experiment_name, composed[pkpo].trainer.experiment_name
    assert run_b == run_a.replace("_maxpo_", "_pkpo_") != run_a
    differing = {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}
    assert differing & ESTIMATOR_KEYS == {"algorithm.adv_estimator"}
    assert (a["algorithm.adv_estimator"], b["algorithm.adv_estimator"]) == ("maxpo", "pkpo")
    for key in differing - ESTIMATOR_KEYS:
        assert isinstance(a.get(key), str) and a[key].replace(run_a, run_b) == b.get(key), key


@pytest.mark.parametrize(("maxpo", "grpo"), TWINS)
def test_grpo_twin_differs_only_in_the_estimator(composed, maxpo, grpo):
    a = flatten(OmegaConf.to_container(composed[maxpo], resolve=True))
    b = flatten(OmegaConf.to_container(composed[grpo], resolve=True))
    run_a, run_b = composed[maxpo].trainer.experiment_name, composed[grpo].trainer.experiment_name
    assert run_a != run_b
    differing = {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}
    estimator_diff = differing & ESTIMATOR_KEYS
    naming_diff = differing - ESTIMATOR_KEYS
    assert estimator_diff == {"algorithm.adv_estimator", "algorithm.maxpo.k", "algorithm.maxpo.norm_by_std"}
    assert (a["algorithm.adv_estimator"], b["algorithm.adv_estimator"]) == ("maxpo", "grpo")
    # Every other difference is the run name inside a name or path, nothing else.
    assert "trainer.experiment_name" in naming_diff and "trainer.validation_data_dir" in naming_diff
    for key in naming_diff:
        assert isinstance(a.get(key), str) and a[key].replace(run_a, run_b) == b.get(key), key


def test_the_estimator_group_is_the_table_of_arms():
    """recipes/shared/estimator/<arm>.yaml exists for exactly the table's ARMS, each with its estimator and options."""
    from verl_maxpo.core.table import ARMS, ESTIMATORS, arm_reads_k

    assert sorted(p.stem for p in ESTIMATOR_GROUP.glob("*.yaml")) == sorted(ARMS)
    shared = OmegaConf.create((ESTIMATOR_GROUP.parent / "maxpo_options.yaml").read_text())
    for arm, spec in ARMS.items():
        text = (ESTIMATOR_GROUP / f"{arm}.yaml").read_text()
        assert text.startswith("# @package _global_\n"), arm
        own = OmegaConf.create(text)
        includes_shared = "/maxpo_options" in own.get("defaults", [])
        # The shared lines stand once: an arm that lists maxpo_options repeats none of its keys.
        if includes_shared:
            assert not set(own.algorithm.get("maxpo", {})) & set(shared.algorithm.maxpo), arm
        own.pop("defaults", None)
        algorithm = (OmegaConf.merge(shared, own) if includes_shared else own).algorithm
        assert algorithm.adv_estimator == spec.estimator, arm
        options = OmegaConf.to_container(algorithm.maxpo) if "maxpo" in algorithm else {}
        assert {key: options.get(key) for key in spec.options} == dict(spec.options), arm
        reads = ESTIMATORS[spec.estimator].options if spec.estimator in ESTIMATORS else ()
        assert set(options) <= set(reads), f"{arm}: sets options its estimator does not read"
        assert ("k" in options) == arm_reads_k(spec), arm  # maxrl tolerates a k but reads none: its arm sets none
