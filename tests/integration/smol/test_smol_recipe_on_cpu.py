"""The smol recipe composes as verl's entry point composes it, with the settings a real model needs on a CPU; and
Hydra's `+` adds a key only where the config lacks it (what README.md says about `+algorithm.maxpo.k`)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("hydra")
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import ConfigCompositionException  # noqa: E402

from verl_maxpo.launch.main import SEARCHPATH  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def composed(overrides: list[str], folder: str = "smol", name: str = "smol"):
    with initialize_config_dir(config_dir=str(REPO / "recipes" / folder), version_base=None):
        return compose(config_name=name, overrides=[SEARCHPATH, *overrides])


def test_the_recipe_holds_the_real_model_settings() -> None:
    cfg = composed(["smol_assets=/a"])
    assert cfg.actor_rollout_ref.model.path == "/a/model" and cfg.data.train_files == "/a/data/train.parquet"
    assert cfg.reward.custom_reward_function.path == "/a/reward.py"
    assert cfg.data.val_batch_size == 16  # verl's default sends the whole test set in one batch (issue 27)
    assert cfg.actor_rollout_ref.rollout.dtype == "bfloat16" and cfg.actor_rollout_ref.rollout.name == "hf_cpu"
    assert cfg.algorithm.adv_estimator == "maxpo" and cfg.algorithm.maxpo.k == 4
    assert cfg.actor_rollout_ref.rollout.n >= cfg.algorithm.maxpo.k + 1


@pytest.mark.slow  # over a second
def test_plus_adds_a_key_only_where_the_config_lacks_it() -> None:
    with pytest.raises(ConfigCompositionException, match="already at"):
        composed(["+algorithm.maxpo.k=8"])  # the recipe declares algorithm.maxpo.k
    assert composed(["algorithm.maxpo.k=8"]).algorithm.maxpo.k == 8
    assert composed(["++algorithm.maxpo.k=8"]).algorithm.maxpo.k == 8
    verl_dir = Path(__import__("verl").__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(verl_dir), version_base=None):
        base = compose(config_name="ppo_trainer", overrides=["+algorithm.maxpo.k=8"])  # verl's base: no such block
        assert base.algorithm.maxpo.k == 8
        with pytest.raises(ConfigCompositionException):
            compose(config_name="ppo_trainer", overrides=["algorithm.maxpo.k=8"])
