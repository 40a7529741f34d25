"""Thin verl adapter: registers `maxpo` and `pkpo` in verl's advantage-estimator registry.

Options are read from `algorithm.maxpo` (both estimators share them):
    k            (int, default 4)       the k of max@k / pass@k; every group needs n >= k+1 samples (pkpo: n >= k)
    norm_by_std  (bool, default false)  divide each group's advantages by its reward std (biased across prompts)
verl's `algorithm.norm_adv_by_std_in_grpo` is deliberately not read: it defaults to true for GRPO and would
silently turn MaxPO into a biased estimator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from verl.trainer.ppo import core_algos

from verl_maxpo.estimators import GroupTooSmallError, maxpo_advantages, pkpo_advantages

DEFAULT_K = 4
DEFAULT_NORM_BY_STD = False
ESTIMATOR_NAMES = ("maxpo", "pkpo")

_FIX_HINT = (
    "Raise actor_rollout_ref.rollout.n above k (maxpo needs n >= k+1 samples per prompt) or lower algorithm.maxpo.k."
)


def _lookup(section: Any, key: str) -> Any:
    """`section.get(key)` for dicts, OmegaConf DictConfigs (struct mode too), verl BaseConfigs and plain objects."""
    if section is None:
        return None
    if isinstance(section, Mapping) or hasattr(section, "get"):
        return section.get(key, None)
    return getattr(section, key, None)


def maxpo_options(config: Any) -> tuple[int, bool]:
    """Read (k, norm_by_std) from an algorithm config: None, dict, DictConfig or verl's AlgoConfig."""
    section = _lookup(config, "maxpo")
    k = _lookup(section, "k")
    norm = _lookup(section, "norm_by_std")
    k = DEFAULT_K if k is None else k
    norm = DEFAULT_NORM_BY_STD if norm is None else norm
    if not isinstance(norm, (bool, np.bool_)):
        raise ValueError(f"algorithm.maxpo.norm_by_std must be true or false, got {norm!r}")
    return k, bool(norm)


def _outcome_advantage(fn, token_level_rewards, response_mask, index, config) -> tuple[torch.Tensor, torch.Tensor]:
    if index is None:
        raise ValueError("maxpo/pkpo need group ids: verl passes them as non_tensor_batch['uid']")
    k, norm_by_std = maxpo_options(config)
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        try:
            scalars = fn(scores, index, k, norm_by_std=norm_by_std)
        except GroupTooSmallError as err:
            raise ValueError(f"{err} {_FIX_HINT}") from None
        advantages = scalars.unsqueeze(-1) * response_mask
    return advantages, advantages


def compute_maxpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MaxPO max@k advantage with the leave-two-out baseline (arXiv 2606.06080), outcome rewards only.

    Args:
        token_level_rewards: (bs, response_length); the sequence reward is the sum over tokens.
        response_mask: (bs, response_length).
        index: (bs,) group id per sample (verl's `uid`).
        config: the algorithm config; options under `maxpo` (k, norm_by_std).

    Returns:
        advantages, returns: both (bs, response_length), the per-sample advantage broadcast over the response.
    """
    return _outcome_advantage(maxpo_advantages, token_level_rewards, response_mask, index, config)


def compute_pkpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PKPO's non-centered max@k advantage (Walder & Karkhanis 2025), for A/B comparisons with MaxPO.

    Same shapes and options as `compute_maxpo_outcome_advantage`; needs k >= 2 and n >= k.
    """
    return _outcome_advantage(pkpo_advantages, token_level_rewards, response_mask, index, config)


_ESTIMATORS = {"maxpo": compute_maxpo_outcome_advantage, "pkpo": compute_pkpo_outcome_advantage}


def register() -> None:
    """Register both estimators in verl's registry. Idempotent, and safe after a module reload."""
    registry = core_algos.ADV_ESTIMATOR_REGISTRY
    for name, fn in _ESTIMATORS.items():
        current = registry.get(name)
        if current is fn:
            continue
        if current is not None and getattr(current, "__module__", None) == __name__:
            registry[name] = fn  # an older copy of this same module (importlib.reload): replace it
            continue
        core_algos.register_adv_est(name)(fn)  # raises if someone else owns the name


register()
