"""Thin verl adapter: registers every estimator of `verl_maxpo.core.table.ESTIMATORS` in verl's registry.

Options are read from `algorithm.maxpo` into one `MaxPOOptions` (validated once per call):
    k             (int, default 4)         the K of the objective; every group needs n >= k+1 (pkpo: n >= k)
    norm_by_std   (bool, default false)    divide each group's advantages by its reward std (biased across prompts)
    objective     (default max)            maxpo only: max, top_m, ml or weights
    m             (int, top_m only)        mean of the best m of the k draws, 1 <= m <= k
    rank_weights  (list, weights only)     k finite weights of the ascending order statistics
    kernel        (default auto)           auto, matrix or scan: same values, different cost
No block at all means the defaults; a block that is not a mapping, has any other key, or sets an option the
estimator does not read to a non-default value, is an error naming the key (a typo such as `algorithm.maxpo.K`
must not silently train with k = 4). maxrl reads no option (k is accepted: it is the run's K for evaluation).
A null k is an error, not the default.
verl's `algorithm.norm_adv_by_std_in_grpo` is deliberately not read: it defaults to true for GRPO and would
silently turn MaxPO into a biased estimator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from verl.trainer.ppo import core_algos

from verl_maxpo.core.estimators import GroupTooSmallError, run_estimator
from verl_maxpo.core.table import ESTIMATORS, OPTION_KEYS, EstimatorSpec, MaxPOOptions

VerlEstimator = Callable[..., tuple[torch.Tensor, torch.Tensor]]
_OPTION_SET = frozenset(OPTION_KEYS)


def _refuse_stray_options(config: Any) -> None:
    """An option set one level up (`algorithm.k` instead of `algorithm.maxpo.k`) is an error naming where it goes:
    verl's algorithm section has no such keys, and reading the default instead would train with another K."""
    if isinstance(config, (dict, DictConfig)):
        if _OPTION_SET.isdisjoint(config.keys()):  # one pass over the keys: the per-call cost of the usual case
            return
        stray = [key for key in OPTION_KEYS if key in config]
    else:
        stray = [key for key in OPTION_KEYS if _has_key(config, key)]
    if stray:
        raise ValueError(
            f"algorithm.{stray[0]} is not read: estimator options go under algorithm.maxpo "
            f"(set algorithm.maxpo.{stray[0]} instead; found {', '.join('algorithm.' + key for key in stray)})"
        )


def _has_key(config: Any, key: str) -> bool:
    if isinstance(config, (Mapping, DictConfig)):
        try:
            return key in config
        except AttributeError:  # verl's AlgoConfig: a Mapping whose lookup of an unknown key raises AttributeError
            pass
    return hasattr(config, key)


def _maxpo_block(config: Any) -> dict[str, Any] | None:
    """`config.maxpo` as a plain dict (None when absent) through public APIs: dict, DictConfig, verl's AlgoConfig."""
    if config is None:
        return None
    _refuse_stray_options(config)
    if isinstance(config, (Mapping, DictConfig)) or hasattr(config, "get"):
        section = config.get("maxpo", None)  # DictConfig.get returns the default in struct mode too
    else:
        section = getattr(config, "maxpo", None)
    if section is None:
        return None
    if isinstance(section, DictConfig):
        items = _plain_items(section)
        return OmegaConf.to_container(section, resolve=True) if items is None else dict(items)
    if isinstance(section, Mapping):
        return dict(section)
    shown = OmegaConf.to_container(section) if isinstance(section, ListConfig) else section
    raise ValueError(
        f"algorithm.maxpo must be a mapping with keys {', '.join(OPTION_KEYS)} (e.g. +algorithm.maxpo.k=4), "
        f"got {shown!r} ({type(section).__name__})"
    )


def _plain_items(section: DictConfig) -> list[tuple[Any, Any]] | None:
    """The block's (key, value) items when every value is a plain scalar, else None (then `to_container`
    resolves them).

    verl calls the estimator every step with the same block: `items_ex(resolve=False)` reads the raw values in a
    third of the time of `OmegaConf.to_container(resolve=True)`, which is the dominant cost of a small-batch call.
    An interpolation or `???` (a str here), a nested list (rank_weights) or an empty, missing or interpolated
    block (no items) takes the resolving path, so what is returned is always what resolution would give.
    """
    try:
        items = section.items_ex(resolve=False)
    except (OmegaConfBaseException, TypeError):  # a None or missing block: the resolving path says what is wrong
        return None
    if not items:
        return None
    for _, value in items:
        if isinstance(value, (DictConfig, ListConfig)):
            return None
        if isinstance(value, str) and ("${" in value or value == "???"):
            return None
    return items


def read_options(config: Any, estimator: str = "maxpo") -> MaxPOOptions:
    """The validated `algorithm.maxpo` options of `estimator` from an algorithm config (None, dict, DictConfig or
    verl's AlgoConfig).

    Raises:
        ValueError: the block is not a mapping, has an unknown key, a value is invalid, or an option the
            estimator does not read is set; the message names the option (`algorithm.maxpo.k`, ...).
    """
    return MaxPOOptions.parse(_maxpo_block(config), estimator)


def _options(config: Any, estimator: str) -> MaxPOOptions:
    """The parsed options of `estimator` for this config, through the table's one cache of parsed blocks.

    The block's raw items are read afresh on every call (a config edited between calls is parsed again); a block of
    plain scalars skips OmegaConf's resolving `to_container`, the dominant cost of a small-batch call.
    """
    if isinstance(config, DictConfig):
        section = config.get("maxpo", None)
        items = _plain_items(section) if isinstance(section, DictConfig) else None
        if items is not None:
            _refuse_stray_options(config)
            return MaxPOOptions.parse(dict(items), estimator)
    return read_options(config, estimator)


def _check_batch(name: str, token_level_rewards: Any, response_mask: Any, index: Any) -> None:
    """The one shape/type check where verl's tensors enter (before any broadcast could hide a mismatch)."""
    if not isinstance(token_level_rewards, torch.Tensor) or token_level_rewards.ndim != 2:
        got = (
            tuple(token_level_rewards.shape)
            if isinstance(token_level_rewards, torch.Tensor)
            else type(token_level_rewards).__name__
        )
        raise ValueError(f"{name}: token_level_rewards must be a (bs, response_length) tensor, got {got}")
    if not isinstance(response_mask, torch.Tensor) or response_mask.shape != token_level_rewards.shape:
        got = tuple(response_mask.shape) if isinstance(response_mask, torch.Tensor) else type(response_mask).__name__
        raise ValueError(
            f"{name}: response_mask must have the shape of token_level_rewards {tuple(token_level_rewards.shape)}, "
            f"got {got}"
        )
    if response_mask.is_floating_point() and not math.isfinite(response_mask.sum().item()):
        n_bad = int((~torch.isfinite(response_mask)).sum())  # one sum first: the usual, finite mask pays no more
        if n_bad:
            raise ValueError(
                f"{name}: response_mask has {n_bad} NaN or infinite entries; it must hold 0/1 per response token"
            )
    if index is None:
        raise ValueError(
            f"{name} needs group ids: verl passes them as non_tensor_batch['uid'] (one per prompt, shared by its "
            "rollout.n samples); this batch has none"
        )


def _verl_estimator(spec: EstimatorSpec) -> VerlEstimator:
    """verl's estimator signature around one table entry."""
    name = spec.name

    def compute(
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: np.ndarray | None = None,
        config: Any = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_batch(name, token_level_rewards, response_mask, index)
        options = _options(config, name)
        with torch.no_grad():
            scores = token_level_rewards.sum(dim=-1)
            try:
                scalars = run_estimator(spec, scores, index, options)
            except GroupTooSmallError as err:
                raise ValueError(f"{err} {_fix_hint(spec, options.k)}") from None
            advantages = scalars.unsqueeze(-1) * response_mask
        return advantages, advantages

    compute.__name__ = compute.__qualname__ = f"compute_{name}_outcome_advantage"
    compute.__doc__ = f"""{spec.description} (verl outcome-advantage estimator `{name}`).

    Unbiased for: {spec.unbiased_for}. Options from `algorithm.maxpo` ({", ".join(spec.options) or "none"}).

    Args:
        token_level_rewards: (bs, response_length); the sequence reward is the sum over tokens.
        response_mask: (bs, response_length), the same shape.
        index: (bs,) group id per sample (verl's `uid`).
        config: the algorithm config; options under `maxpo`.
        **kwargs: accepted and unused (verl may pass batch= and non_tensor_batch=).

    Returns:
        advantages, returns: both (bs, response_length), the per-sample advantage broadcast over the response.
    """
    return compute


def _fix_hint(spec: EstimatorSpec, k: int) -> str:
    needed = spec.min_group_size(k)
    return f"Raise actor_rollout_ref.rollout.n to at least {needed} ({spec.name} needs {needed} samples per prompt)" + (
        " or lower algorithm.maxpo.k." if spec.reads_k else "."
    )


VERL_FUNCTIONS: dict[str, VerlEstimator] = {name: _verl_estimator(spec) for name, spec in ESTIMATORS.items()}
# compute_maxpo_outcome_advantage, ...: one module-level name per table estimator, as verl names its own.
globals().update({fn.__name__: fn for fn in VERL_FUNCTIONS.values()})


def register() -> None:
    """Register every table estimator in verl's registry. Idempotent, and safe after a module reload."""
    registry = core_algos.ADV_ESTIMATOR_REGISTRY
    for name, fn in VERL_FUNCTIONS.items():
        current = registry.get(name)
        if current is fn:
            continue
        if current is not None and getattr(current, "__module__", None) == __name__:
            registry[name] = fn  # an older copy of this same module (importlib.reload): replace it
            continue
        core_algos.register_adv_est(name)(fn)  # raises if someone else owns the name


register()
