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
            (signature: rewards (N,), group_ids (N,), k (if uses_k), keyword options) -> (N,) advantages.
        options: the `algorithm.maxpo` keys this estimator reads.
        min_k: the smallest k it accepts.
        group_slack: every group needs n >= k + group_slack samples.
        unbiased_for: the gradient it is an unbiased estimate of (docs and variance map wording).
        description: one line for `verl-maxpo check`, the docs and `--help`.
        uses_k: whether `function` takes k (positionally, after group_ids); maxrl does not.
        min_n: the smallest group size whatever k (a group of one has no baseline).
    """

    name: str
    function: str
    options: tuple[str, ...]
    min_k: int
    group_slack: int
    unbiased_for: str
    description: str
    uses_k: bool = True
    min_n: int = 2

    def min_group_size(self, k: int) -> int:
        """The smallest group size n this estimator accepts for this k (never below min_n)."""
        return max(k + self.group_slack, self.min_n) if self.uses_k else self.min_n

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


OPTION_KEYS = ("k", "norm_by_std", "objective", "m", "rank_weights", "kernel")
_MAXPO_OPTIONS = OPTION_KEYS
_MAX_ONLY_OPTIONS = ("k", "norm_by_std", "kernel")

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
                unbiased_for="the chosen K-sample objective (max@K by default; top_m, ml or rank weights)",
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
            EstimatorSpec(
                name="maxrl",
                function="verl_maxpo.estimators.maxrl_advantages",
                options=("k",),  # k is the run's K (max@K evaluation); the estimator does not read it
                min_k=1,
                group_slack=0,
                unbiased_for="no fixed objective (divides by the group mean); targets log pass rate",
                description="MaxRL (arXiv 2602.02710): (r_i - mean) / (mean + 1e-6), 0 for an all-zero group",
                uses_k=False,
                min_n=2,
            ),
        )
    }
)

ARMS: Mapping[str, ArmSpec] = MappingProxyType(
    {
        arm.name: arm
        for arm in (
            ArmSpec("maxpo", "maxpo", {}, "MaxPO, max@K"),
            ArmSpec("maxpo_top2", "maxpo", {"objective": "top_m", "m": 2}, "MaxPO, mean of the best 2 of K"),
            ArmSpec("maxpo_ml", "maxpo", {"objective": "ml"}, "MaxPO, sum_j max@j / j (truncated log-likelihood)"),
            ArmSpec("pkpo", "pkpo", {}, "PKPO s^(loo-1), max@K"),
            ArmSpec("pkpo_loo", "pkpo_loo", {}, "PKPO s^(loo), max@K"),
            ArmSpec("maxrl", "maxrl", {}, "MaxRL as published (arXiv 2602.02710)"),
            ArmSpec("grpo", "grpo", {}, "verl's GRPO (mean@1, std-normalized)"),
        )
    }
)


KERNELS = ("auto", "matrix", "scan")


@dataclass(frozen=True)
class MaxPOOptions:
    """The `algorithm.maxpo` options, validated once (`parse`); defaults are what an absent key means.

    Attributes:
        k: the K of the objective (of max@K), an integer >= the estimator's min_k.
        norm_by_std: divide each group's advantages by its reward std (biased across prompts).
        objective: maxpo only: "max", "top_m", "ml" or "weights" (see `verl_maxpo.lstat.objective_weights`).
        m: with objective "top_m" only, 1 <= m <= k.
        rank_weights: with objective "weights" only, k finite numbers (ascending order statistics).
        kernel: "auto", "matrix" or "scan" (same values; see `verl_maxpo.estimators.maxpo_advantages`).
    """

    k: int = 4
    norm_by_std: bool = False
    objective: str = "max"
    m: int | None = None
    rank_weights: tuple[float, ...] | None = None
    kernel: str = "auto"

    @classmethod
    def parse(cls, block: Mapping[str, Any] | None, estimator: str, prefix: str = "algorithm.maxpo.") -> MaxPOOptions:
        """Options of `estimator` from a plain mapping (None: all defaults), or ValueError naming the key.

        Refused: a key that is not an option, a bad value, and a non-default value of an option the estimator
        does not read (objective=ml for pkpo, norm_by_std=true for maxrl, ...): nothing is silently ignored.
        """
        import numbers

        import numpy as np

        from verl_maxpo.estimators import validate_k
        from verl_maxpo.lstat import objective_weights

        spec = _spec(estimator)
        block = {} if block is None else block
        unknown = sorted(str(key) for key in block if key not in OPTION_KEYS)
        if unknown:
            raise ValueError(
                f"{prefix.rstrip('.')} has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(OPTION_KEYS)} "
                "(keys are case-sensitive)"
            )
        values = {key: value for key, value in block.items() if value is not None}
        defaults = cls()
        for key, value in values.items():
            if key not in spec.options and not _is_default(value, getattr(defaults, key)):
                raise ValueError(
                    f"{prefix}{key}={value!r} does not apply to {estimator}, which reads only "
                    f"{', '.join(spec.options) or 'no option'}"
                    + (" (defined for max@K only)" if key in ("objective", "m", "rank_weights") else "")
                )
        try:
            k = validate_k(values.get("k", defaults.k), spec.min_k)
        except ValueError as err:
            raise ValueError(f"{prefix}{err} ({estimator})") from None
        norm = values.get("norm_by_std", defaults.norm_by_std)
        if not isinstance(norm, (bool, np.bool_)):
            raise ValueError(f"{prefix}norm_by_std must be true or false, got {norm!r}")
        kernel = values.get("kernel", defaults.kernel)
        if kernel not in KERNELS:
            raise ValueError(f"{prefix}kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        objective = values.get("objective", defaults.objective)
        m = values.get("m")
        w = objective_weights(k, objective, m, values.get("rank_weights"), prefix)
        return cls(
            k=k,
            norm_by_std=bool(norm),
            objective=objective,
            m=int(m) if isinstance(m, numbers.Integral) else None,
            rank_weights=w if objective == "weights" else None,
            kernel=kernel,
        )

    def call_args(self, estimator: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """(positional, keyword) arguments after (rewards, group_ids) for the estimator's `fn`."""
        spec = _spec(estimator)
        kwargs: dict[str, Any] = {}
        if "norm_by_std" in spec.options:
            kwargs["norm_by_std"] = self.norm_by_std
        if "kernel" in spec.options:
            kwargs["kernel"] = self.kernel
        if "objective" in spec.options and self.objective != "max":
            kwargs.update(objective=self.objective, m=self.m, rank_weights=self.rank_weights)
        return ((self.k,) if spec.uses_k else ()), kwargs


def _spec(estimator: str) -> EstimatorSpec:
    spec = ESTIMATORS.get(estimator)
    if spec is None:
        raise ValueError(f"unknown estimator {estimator!r}; registered: {', '.join(ESTIMATORS)}")
    return spec


def _is_default(value: Any, default: Any) -> bool:
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # an array or other value that does not compare to a scalar
        return False
