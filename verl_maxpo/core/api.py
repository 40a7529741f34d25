"""One entry point for any training framework (TRL, OpenRLHF, plain PyTorch): advantages from the estimator table.

Framework-free: torch and numpy only. verl users get the same functions through `algorithm.adv_estimator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from verl_maxpo.core.estimators import run_estimator
from verl_maxpo.core.groups import GroupIds
from verl_maxpo.core.table import ESTIMATORS, MaxPOOptions

__all__ = ["compute_advantages"]


def compute_advantages(
    rewards: torch.Tensor,
    group_ids: GroupIds,
    *,
    estimator: str = "maxpo",
    k: int = 4,
    objective: str = "max",
    m: int | None = None,
    rank_weights: Sequence[float] | None = None,
    norm_by_std: bool = False,
    kernel: str = "auto",
) -> torch.Tensor:
    """Per-sample advantages of a registered estimator (`verl_maxpo.core.table.ESTIMATORS`).

    Args:
        rewards: (N,) one scalar reward per completion, any real dtype and device.
        group_ids: (N,) the prompt of each completion (strings, ints, or an integer tensor); groups may differ
            in size and need not be contiguous.
        estimator: a name in the estimator table (`ESTIMATORS`).
        k: the K of the objective (accepted by every estimator, read by those whose spec lists it).
        objective, m, rank_weights: the K-sample objective, maxpo only (see `maxpo_advantages`).
        norm_by_std: divide each group by its reward std (maxpo, pkpo, pkpo_loo).
        kernel: "auto", "matrix" or "scan" (same values, different cost).

    Returns:
        (N,) advantages in the rewards' dtype (float32 for integer rewards), the same order as `rewards`.

    Raises:
        ValueError: an unknown estimator, an option it does not read set to a non-default value, a bad value, or
            bad rewards / group ids; the message names the argument.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    block: dict[str, Any] = {"k": k, "objective": objective, "m": m, "rank_weights": rank_weights}
    block.update(norm_by_std=norm_by_std, kernel=kernel)
    return run_estimator(estimator, rewards, group_ids, MaxPOOptions.parse(block, estimator, prefix=""))
