"""Thin verl adapter: registers `maxpo`, `pkpo` and `pkpo_loo` in verl's advantage-estimator registry.

Options are read from `algorithm.maxpo` (all three estimators share them):
    k            (int, default 4)       the k of max@k / pass@k; every group needs n >= k+1 samples (pkpo: n >= k)
    norm_by_std  (bool, default false)  divide each group's advantages by its reward std (biased across prompts)
No block at all means the defaults; a block that is not a mapping, or has any other key, is an error (a typo
such as `algorithm.maxpo.K` must not silently train with k = 4).
verl's `algorithm.norm_adv_by_std_in_grpo` is deliberately not read: it defaults to true for GRPO and would
silently turn MaxPO into a biased estimator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.nodes import ValueNode
from verl.trainer.ppo import core_algos

from verl_maxpo.estimators import (
    GroupTooSmallError,
    maxpo_advantages,
    pkpo_advantages,
    pkpo_loo_advantages,
    validate_k,
)

DEFAULT_K = 4
DEFAULT_NORM_BY_STD = False
OPTION_KEYS = ("k", "norm_by_std")
ESTIMATOR_NAMES = ("maxpo", "pkpo", "pkpo_loo")
_MIN_K = {"maxpo": 1, "pkpo": 2, "pkpo_loo": 1}


def _lookup(section: Any, key: str) -> Any:
    """`section.get(key)` for dicts, OmegaConf DictConfigs (struct mode too), verl BaseConfigs and plain objects."""
    if section is None:
        return None
    if isinstance(section, Mapping) or hasattr(section, "get"):
        return section.get(key, None)
    return getattr(section, key, None)


def _as_dict(section: Any) -> dict[str, Any]:
    """The `algorithm.maxpo` block as a plain dict, or ValueError naming the valid keys."""
    if isinstance(section, DictConfig):
        return OmegaConf.to_container(section, resolve=True)  # one call instead of a slow .get() per key
    if isinstance(section, Mapping):
        return dict(section)
    valid = ", ".join(OPTION_KEYS)
    raise ValueError(
        f"algorithm.maxpo must be a mapping with keys {valid} (e.g. +algorithm.maxpo.k=4), "
        f"got {section!r} ({type(section).__name__})"
    )


_SLOW = object()


def _plain_block_fast(config: DictConfig) -> Any:
    """`algorithm.maxpo` of a DictConfig as a dict of plain values through OmegaConf's node API, or _SLOW.

    Public access (`.get` + `to_container`) costs about 20 us per call, a quarter of a whole grpo_vectorized call
    on a small batch; this reads the same nodes in about 4 us. Anything unusual (interpolations, missing values,
    a block that is not a plain mapping, an OmegaConf without these internals) takes the public path instead.
    """
    try:
        node = config._get_node("maxpo", validate_access=False)
        if node is None:
            return None
        if not isinstance(node, DictConfig) or node._is_none() or node._is_interpolation() or node._is_missing():
            return _SLOW
        block = {}
        for key, child in node._content.items():
            if not isinstance(child, ValueNode) or child._is_interpolation() or child._is_missing():
                return _SLOW
            block[key] = child._value()
        return block
    except Exception:  # noqa: BLE001  an OmegaConf version without these internals: the public path
        return _SLOW


def maxpo_options(config: Any, estimator: str = "maxpo") -> tuple[int, bool]:
    """Read and check (k, norm_by_std) from an algorithm config: None, dict, DictConfig or verl's AlgoConfig.

    Raises:
        ValueError: the block is not a mapping, has a key other than k / norm_by_std, or a value is invalid;
            the message names the option (`algorithm.maxpo.k`, ...).
    """
    options = _plain_block_fast(config) if isinstance(config, DictConfig) else _SLOW
    if options is _SLOW:
        section = _lookup(config, "maxpo")
        options = {} if section is None else _as_dict(section)
    elif options is None:
        options = {}
    unknown = sorted(str(key) for key in options if key not in OPTION_KEYS)
    if unknown:
        raise ValueError(
            f"algorithm.maxpo has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(OPTION_KEYS)} "
            "(keys are case-sensitive)"
        )
    k = options.get("k")
    norm = options.get("norm_by_std")
    try:
        k = validate_k(DEFAULT_K if k is None else k, _MIN_K[estimator])
    except ValueError as err:
        raise ValueError(f"algorithm.maxpo.{err} ({estimator})") from None
    norm = DEFAULT_NORM_BY_STD if norm is None else norm
    if not isinstance(norm, (bool, np.bool_)):
        raise ValueError(f"algorithm.maxpo.norm_by_std must be true or false, got {norm!r}")
    return k, bool(norm)


def _outcome_advantage(
    name: str, fn, token_level_rewards, response_mask, index, config
) -> tuple[torch.Tensor, torch.Tensor]:
    if index is None:
        raise ValueError(
            f"{name} needs group ids: verl passes them as non_tensor_batch['uid'] (one per prompt, shared by its "
            "rollout.n samples); this batch has none"
        )
    k, norm_by_std = maxpo_options(config, name)
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)
        try:
            scalars = fn(scores, index, k, norm_by_std=norm_by_std)
        except GroupTooSmallError as err:
            raise ValueError(f"{err} {_fix_hint(name, k)}") from None
        advantages = scalars.unsqueeze(-1) * response_mask
    return advantages, advantages


def _fix_hint(name: str, k: int) -> str:
    needed = "n >= k" if name == "pkpo" else "n >= k+1"
    return (
        f"Raise actor_rollout_ref.rollout.n to at least {k if name == 'pkpo' else k + 1} ({name} needs {needed} "
        "samples per prompt) or lower algorithm.maxpo.k."
    )


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
    return _outcome_advantage("maxpo", maxpo_advantages, token_level_rewards, response_mask, index, config)


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
    return _outcome_advantage("pkpo", pkpo_advantages, token_level_rewards, response_mask, index, config)


def compute_pkpo_loo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PKPO's leave-one-out variant s^(loo) (Walder & Karkhanis 2025): q_i - n/(n-1) rho_k(r without i).

    Same shapes and options as `compute_maxpo_outcome_advantage`; needs n >= k+1.
    """
    return _outcome_advantage("pkpo_loo", pkpo_loo_advantages, token_level_rewards, response_mask, index, config)


_ESTIMATORS = {
    "maxpo": compute_maxpo_outcome_advantage,
    "pkpo": compute_pkpo_outcome_advantage,
    "pkpo_loo": compute_pkpo_loo_outcome_advantage,
}


def register() -> None:
    """Register the three estimators in verl's registry. Idempotent, and safe after a module reload."""
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
