"""The one table of verl-maxpo's estimators and A/B arms: every other module reads these facts from here.

No verl import (the launcher, docs and tests read it without starting verl). Adding an estimator is one
`EstimatorSpec` entry plus its function in `verl_maxpo.estimators`, its math in docs/algorithm.md and its tests;
adding an A/B arm is one `ArmSpec` entry plus `recipes/shared/estimator/<arm>.yaml`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class EstimatorSpec:
    """One advantage estimator of ours, registered in verl under `name`.

    Attributes:
        name: the `algorithm.adv_estimator` value.
        function: dotted path of the framework-free function in `verl_maxpo.estimators`
            (signature: rewards (N,), group_ids (N,), k, keyword options) -> (N,) advantages.
        options: the `algorithm.maxpo` keys this estimator reads.
        min_k: the smallest k it accepts.
        group_slack: every group needs n >= k + group_slack samples.
        unbiased_for: the gradient it is an unbiased estimate of (docs and variance map wording).
        description: one line for `verl-maxpo check`, the docs and `--help`.
    """

    name: str
    function: str
    options: tuple[str, ...]
    min_k: int
    group_slack: int
    unbiased_for: str
    description: str

    def min_group_size(self, k: int) -> int:
        """The smallest group size n this estimator accepts for this k."""
        return k + self.group_slack

    @property
    def fn(self) -> Callable[..., Any]:
        """The framework-free function itself (imported on first use: torch is not needed to read the table)."""
        module, _, attr = self.function.rpartition(".")
        return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ArmSpec:
    """One A/B arm: an estimator (ours or verl's own) plus fixed options, under one name everywhere.

    Attributes:
        name: the arm's name in ARMS, `estimator=<arm>` (the recipe config group), the demo, variance and report.
        estimator: the `algorithm.adv_estimator` it trains with.
        options: fixed `algorithm.maxpo` options of the arm (k comes from the run, not from the arm).
        description: one line for docs and `--help`.
    """

    name: str
    estimator: str
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


_MAXPO_OPTIONS = ("k", "norm_by_std", "objective", "m", "rank_weights")
_MAX_ONLY_OPTIONS = ("k", "norm_by_std")

ESTIMATORS: Mapping[str, EstimatorSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            EstimatorSpec(
                name="maxpo",
                function="verl_maxpo.estimators.maxpo_advantages",
                options=_MAXPO_OPTIONS,
                min_k=1,
                group_slack=1,
                unbiased_for="the chosen K-sample objective (max@K by default)",
                description="leave-two-out advantage of a symmetric K-sample objective; every group sums to zero",
            ),
            EstimatorSpec(
                name="pkpo",
                function="verl_maxpo.estimators.pkpo_advantages",
                options=_MAX_ONLY_OPTIONS,
                min_k=2,
                group_slack=0,
                unbiased_for="max@K",
                description="PKPO s^(loo-1): q_i - rho_{K-1}(r without i); >= 0, not centered",
            ),
            EstimatorSpec(
                name="pkpo_loo",
                function="verl_maxpo.estimators.pkpo_loo_advantages",
                options=_MAX_ONLY_OPTIONS,
                min_k=1,
                group_slack=1,
                unbiased_for="max@K",
                description="PKPO s^(loo): q_i - n/(n-1) rho_K(r without i); not centered, not shift-invariant",
            ),
        )
    }
)

ARMS: Mapping[str, ArmSpec] = MappingProxyType(
    {
        arm.name: arm
        for arm in (
            ArmSpec("maxpo", "maxpo", {}, "MaxPO, max@K"),
            ArmSpec("pkpo", "pkpo", {}, "PKPO s^(loo-1), max@K"),
            ArmSpec("pkpo_loo", "pkpo_loo", {}, "PKPO s^(loo), max@K"),
            ArmSpec("grpo", "grpo", {}, "verl's GRPO (mean@1, std-normalized)"),
        )
    }
)
