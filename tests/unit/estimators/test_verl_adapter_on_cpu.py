"""The estimators as verl sees them: registry, compute_advantage paths, Hydra-composed configs, options, errors."""

from __future__ import annotations

import importlib
import uuid

import numpy as np
import pytest
import torch
import verl  # noqa: F401  (its plugin discovery must register maxpo/pkpo by itself)
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf, open_dict
from verl import DataProto
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

from verl_maxpo.core.estimators import maxpo_advantages, pkpo_advantages, pkpo_loo_advantages
from verl_maxpo.integration import adapter as verl_adapter

RESPONSE_LEN = 6


@pytest.fixture(autouse=True)
def registered():
    """verl's own registry test clears the registry; make sure ours is in place for every test here."""
    verl_adapter.register()


def make_batch(n_groups: int = 5, n: int = 8, seed: int = 0) -> DataProto:
    """A DataProto like verl's trainer builds: outcome reward on the last response token, ragged masks."""
    g = torch.Generator().manual_seed(seed)
    bs = n_groups * n
    uids = np.array([str(uuid.UUID(int=seed * 1000 + i + 1)) for i in range(n_groups)], dtype=object).repeat(n)
    perm = torch.randperm(bs, generator=g)  # verl's balance_batch reorders samples
    lengths = torch.randint(1, RESPONSE_LEN + 1, (bs,), generator=g)
    mask = (torch.arange(RESPONSE_LEN).unsqueeze(0) < lengths.unsqueeze(1)).float()
    scores = (torch.rand(bs, generator=g) < 0.35).float()
    rewards = torch.zeros(bs, RESPONSE_LEN)
    rewards[torch.arange(bs), lengths - 1] = scores
    return DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask},
        non_tensors={"uid": uids[perm.numpy()]},
    )


def compose_algorithm(*overrides: str) -> DictConfig:
    """The `algorithm` section exactly as verl's main_ppo composes it from its own config tree."""
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=list(overrides))
    assert OmegaConf.is_struct(cfg.algorithm)
    return cfg.algorithm


def scalar_advantages(data: DataProto) -> torch.Tensor:
    """One advantage per sample, read back from the first response token."""
    return data.batch["advantages"][:, 0]


# ------------------------------------------------------------------------------------------------ registry


def test_import_verl_registers_both_names() -> None:
    assert core_algos.get_adv_estimator_fn("maxpo") is verl_adapter.compute_maxpo_outcome_advantage
    assert core_algos.get_adv_estimator_fn("pkpo") is verl_adapter.compute_pkpo_outcome_advantage
    assert core_algos.get_adv_estimator_fn("pkpo_loo") is verl_adapter.compute_pkpo_loo_outcome_advantage


def test_registration_is_idempotent_and_survives_reload_and_clearing() -> None:
    import verl_maxpo.plugin  # noqa: F401

    importlib.import_module("verl_maxpo.plugin")
    verl_adapter.register()
    reloaded = importlib.reload(verl_adapter)  # new function objects, same module: replaced, not an error
    assert core_algos.ADV_ESTIMATOR_REGISTRY["maxpo"] is reloaded.compute_maxpo_outcome_advantage
    saved = dict(core_algos.ADV_ESTIMATOR_REGISTRY)
    try:
        core_algos.ADV_ESTIMATOR_REGISTRY.clear()  # what verl's own registry test does
        reloaded.register()
        assert {"maxpo", "pkpo", "pkpo_loo"} <= set(core_algos.ADV_ESTIMATOR_REGISTRY)
    finally:
        core_algos.ADV_ESTIMATOR_REGISTRY.clear()
        core_algos.ADV_ESTIMATOR_REGISTRY.update(saved)


def test_a_foreign_estimator_with_our_name_is_not_overwritten() -> None:
    saved = core_algos.ADV_ESTIMATOR_REGISTRY["maxpo"]
    try:
        core_algos.ADV_ESTIMATOR_REGISTRY["maxpo"] = lambda **kw: None
        with pytest.raises(ValueError, match="already been registered"):
            verl_adapter.register()
    finally:
        core_algos.ADV_ESTIMATOR_REGISTRY["maxpo"] = saved


# ------------------------------------------------------------------------------------------------ verl's paths


def test_compute_advantage_with_hydra_composed_config() -> None:
    algo = compose_algorithm("algorithm.adv_estimator=maxpo", "+algorithm.maxpo.k=3")
    data = make_batch()
    expected = maxpo_advantages(data.batch["token_level_rewards"].sum(-1), data.non_tensor_batch["uid"], 3)
    out = compute_advantage(data, adv_estimator=algo.adv_estimator, config=algo)
    adv, mask = out.batch["advantages"], out.batch["response_mask"]
    assert adv.shape == (40, RESPONSE_LEN)
    torch.testing.assert_close(adv, expected.unsqueeze(-1) * mask)
    assert torch.equal(out.batch["returns"], adv)
    assert (adv[mask == 0] == 0).all()
    # centered per prompt, and not trivially zero
    for uid in np.unique(out.non_tensor_batch["uid"]):
        sel = torch.from_numpy(out.non_tensor_batch["uid"] == uid)
        assert abs(scalar_advantages(out)[sel].sum().item()) < 1e-6
    assert scalar_advantages(out).abs().max() > 0.1


def test_default_options_without_a_maxpo_block() -> None:
    algo = compose_algorithm("algorithm.adv_estimator=maxpo")  # no algorithm.maxpo at all: k = 4
    data = make_batch()
    expected = maxpo_advantages(data.batch["token_level_rewards"].sum(-1), data.non_tensor_batch["uid"], 4)
    out = compute_advantage(data, adv_estimator="maxpo", config=algo)
    torch.testing.assert_close(scalar_advantages(out), expected)


def test_v1_multi_trajectory_path() -> None:
    algo = compose_algorithm("algorithm.adv_estimator=maxpo", "+algorithm.maxpo.k=2")
    data = make_batch(seed=1)
    # {uid}_{session}_{index}: every row its own session (one output each), so every row is a sample
    keys = [f"{uid}_{i}_0" for i, uid in enumerate(data.non_tensor_batch["uid"])]
    expected = maxpo_advantages(data.batch["token_level_rewards"].sum(-1), data.non_tensor_batch["uid"], 2)
    out = compute_advantage_for_multi_trajectories(data, batch_keys=keys, adv_estimator="maxpo", config=algo)
    torch.testing.assert_close(out.batch["advantages"], expected.unsqueeze(-1) * out.batch["response_mask"])


def test_pkpo_through_compute_advantage_and_equal_to_grpo_passk_at_k_equals_n() -> None:
    n = 8
    data = make_batch(n=n, seed=2)
    scores = data.batch["token_level_rewards"].sum(-1)
    scores += torch.rand(scores.shape, generator=torch.Generator().manual_seed(0))  # distinct rewards
    data.batch["token_level_rewards"][:, 0] += scores - data.batch["token_level_rewards"].sum(-1)
    algo = compose_algorithm("algorithm.adv_estimator=pkpo", f"+algorithm.maxpo.k={n}")
    out = compute_advantage(data, adv_estimator="pkpo", config=algo)
    expected = pkpo_advantages(scores, data.non_tensor_batch["uid"], n)
    torch.testing.assert_close(scalar_advantages(out), expected)
    passk_cfg = OmegaConf.create({"norm_adv_by_std_in_grpo": False})
    passk, _ = core_algos.get_adv_estimator_fn("grpo_passk")(
        token_level_rewards=data.batch["token_level_rewards"],
        response_mask=torch.ones_like(data.batch["response_mask"]),
        index=data.non_tensor_batch["uid"],
        config=passk_cfg,
    )
    torch.testing.assert_close(scalar_advantages(out), passk[:, 0], atol=1e-6, rtol=0)


def test_pkpo_loo_through_compute_advantage_with_hydra_composed_config() -> None:
    algo = compose_algorithm("algorithm.adv_estimator=pkpo_loo", "+algorithm.maxpo.k=3")
    data = make_batch(seed=5)
    out = compute_advantage(data, adv_estimator="pkpo_loo", config=algo)
    expected = pkpo_loo_advantages(data.batch["token_level_rewards"].sum(-1), data.non_tensor_batch["uid"], 3)
    torch.testing.assert_close(scalar_advantages(out), expected)
    assert not torch.allclose(
        expected, maxpo_advantages(data.batch["token_level_rewards"].sum(-1), data.non_tensor_batch["uid"], 3)
    )


@pytest.mark.parametrize("name", ["rloo", "rloo_vectorized"])
def test_k1_equals_verls_rloo(name: str) -> None:
    data = make_batch(seed=3)
    kwargs = {
        "token_level_rewards": data.batch["token_level_rewards"],
        "response_mask": data.batch["response_mask"],
        "index": data.non_tensor_batch["uid"],
    }
    ours, _ = core_algos.get_adv_estimator_fn("maxpo")(**kwargs, config={"maxpo": {"k": 1}})
    theirs, _ = core_algos.get_adv_estimator_fn(name)(**kwargs, config=None)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert ours.abs().max() > 0.1


# ------------------------------------------------------------------------------------------------ options


def _run(config) -> torch.Tensor:
    data = make_batch(seed=4)
    adv, _ = verl_adapter.compute_maxpo_outcome_advantage(
        token_level_rewards=data.batch["token_level_rewards"],
        response_mask=data.batch["response_mask"],
        index=data.non_tensor_batch["uid"],
        config=config,
    )
    return adv


def test_config_flavours_agree() -> None:
    algo_cfg = AlgoConfig(adv_estimator="maxpo")
    algo_cfg.maxpo = {"k": 2}  # verl's dataclass has no such field, but accepts a new attribute
    struct = OmegaConf.create({"adv_estimator": "maxpo", "maxpo": {"k": 2}})
    OmegaConf.set_struct(struct, True)
    reference = _run({"maxpo": {"k": 2}})
    for config in (struct, algo_cfg, OmegaConf.create({"maxpo": {"k": 2, "norm_by_std": False}})):
        torch.testing.assert_close(_run(config), reference)
    assert not torch.equal(_run(None), reference)  # None means k = 4
    torch.testing.assert_close(_run(None), _run({"maxpo": {"k": 4}}))
    torch.testing.assert_close(_run(AlgoConfig()), _run({}))


def test_grpo_std_flag_is_ignored_and_norm_by_std_is_ours() -> None:
    plain = _run({"norm_adv_by_std_in_grpo": True, "maxpo": {"k": 2}})
    torch.testing.assert_close(plain, _run({"norm_adv_by_std_in_grpo": False, "maxpo": {"k": 2}}))
    scaled = _run({"maxpo": {"k": 2, "norm_by_std": True}})
    assert not torch.allclose(scaled, plain)


# ------------------------------------------------------------------------------------------------ errors


def test_group_too_small_error_names_the_verl_fix() -> None:
    data = make_batch(n=4)
    algo = compose_algorithm("algorithm.adv_estimator=maxpo", "+algorithm.maxpo.k=4")
    with pytest.raises(ValueError) as err:
        compute_advantage(data, adv_estimator="maxpo", config=algo)
    message = str(err.value)
    assert "k=4" in message
    assert "actor_rollout_ref.rollout.n" in message and "algorithm.maxpo.k" in message


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"maxpo": {"k": 0}}, "algorithm.maxpo.k"),
        ({"maxpo": {"k": 2.5}}, "algorithm.maxpo.k"),
        ({"maxpo": {"k": "four"}}, "algorithm.maxpo.k"),
        ({"maxpo": {"norm_by_std": "yes"}}, "algorithm.maxpo.norm_by_std"),
    ],
)
def test_bad_options(config, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        _run(config)


def test_nan_reward_and_missing_index() -> None:
    data = make_batch()
    rewards = data.batch["token_level_rewards"].clone()
    rewards[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        verl_adapter.compute_maxpo_outcome_advantage(rewards, data.batch["response_mask"], data.non_tensor_batch["uid"])
    with pytest.raises(ValueError, match="group ids"):
        verl_adapter.compute_maxpo_outcome_advantage(rewards, data.batch["response_mask"], None)
    with pytest.raises(ValueError, match=r"\b40\b.*\b39\b"):
        verl_adapter.compute_maxpo_outcome_advantage(
            data.batch["token_level_rewards"], data.batch["response_mask"], data.non_tensor_batch["uid"][:-1]
        )


def test_options_follow_interpolations_and_later_edits_of_the_config() -> None:
    cfg = OmegaConf.create({"x": 2, "maxpo": {"k": "${x}", "norm_by_std": False}})  # the public, resolving path
    torch.testing.assert_close(_run(cfg), _run({"maxpo": {"k": 2}}))
    cfg.maxpo.k = 3  # a plain value now: the fast node path, which must see the edit (nothing is cached)
    torch.testing.assert_close(_run(cfg), _run({"maxpo": {"k": 3}}))
    cfg.maxpo.norm_by_std = True
    torch.testing.assert_close(_run(cfg), _run({"maxpo": {"k": 3, "norm_by_std": True}}))
    assert verl_adapter.read_options(OmegaConf.create({"maxpo": None})) == verl_adapter.MaxPOOptions()


def test_validated_options_are_never_stale_when_the_same_config_is_edited() -> None:
    """The per-block cache is keyed by what the block holds now, read on every call: edits take effect at once."""
    cfg = OmegaConf.create({"adv_estimator": "maxpo", "maxpo": {"k": 2}})
    OmegaConf.set_struct(cfg, True)
    first = _run(cfg)
    torch.testing.assert_close(first, _run({"maxpo": {"k": 2}}))
    cfg.maxpo.k = 3
    third = _run(cfg)
    torch.testing.assert_close(third, _run({"maxpo": {"k": 3}}))
    assert not torch.allclose(first, third)
    with open_dict(cfg):
        cfg.maxpo.objective = "top_m"
        cfg.maxpo.m = 2
    torch.testing.assert_close(_run(cfg), _run({"maxpo": {"k": 3, "objective": "top_m", "m": 2}}))
    with open_dict(cfg):
        cfg.maxpo = {"k": 2}  # a new node for the whole block
    torch.testing.assert_close(_run(cfg), first)
    cfg.maxpo.k = 2.0  # equal to 2 and hashes alike, but it is not an integer: refused, not served from the cache
    with pytest.raises(ValueError, match=r"algorithm\.maxpo\.k"):
        _run(cfg)
    cfg.maxpo.k = 2
    torch.testing.assert_close(_run(cfg), first)
    with open_dict(cfg):
        cfg.maxpo.K = 4  # a typo added later is refused even though {"k": 2} was validated before
    with pytest.raises(ValueError, match=r"\bK\b"):
        _run(cfg)


def test_options_read_the_same_through_the_raw_and_the_resolving_path() -> None:
    plain = OmegaConf.create({"maxpo": {"k": 3, "norm_by_std": True, "objective": "top_m", "m": 2}})
    resolved = OmegaConf.create({"x": 3, "maxpo": {"k": "${x}", "norm_by_std": True, "objective": "top_m", "m": 2}})
    listed = OmegaConf.create({"maxpo": {"k": 3, "objective": "weights", "rank_weights": [0.0, 0.5, 1.0]}})
    expected = verl_adapter.MaxPOOptions(k=3, norm_by_std=True, objective="top_m", m=2)
    assert verl_adapter._options(plain, "maxpo") == expected
    assert verl_adapter._options(resolved, "maxpo") == expected
    assert verl_adapter._options(listed, "maxpo").rank_weights == (0.0, 0.5, 1.0)
    empty = OmegaConf.create({"maxpo": {}})
    assert verl_adapter._options(empty, "maxpo") == verl_adapter.MaxPOOptions()
