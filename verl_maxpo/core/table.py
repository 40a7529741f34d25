"""The one table of verl-maxpo's estimators and A/B arms: every other module reads these facts from here.

No verl import (the launcher, docs and tests read it without starting verl). Adding an estimator is one
`EstimatorSpec` entry plus its public function in `verl_maxpo.core.estimators` (a thin wrapper of `run_estimator`), its
math in docs/algorithm.md and its tests: the kernel reads the spec's rules, and the public names, `__all__` lists,
verl registration and every caller come from this table. Adding an A/B arm is one `ArmSpec` entry plus
`recipes/shared/estimator/<arm>.yaml` (checked against the entry by tests/cli/launch/test_recipes_configs_on_cpu.py).
"""

from __future__ import annotations

import functools
import importlib
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class EstimatorSpec:
    """One advantage estimator of ours, registered in verl under `name`.

    Attributes:
        name: the `algorithm.adv_estimator` value.
        function: dotted path of the public framework-free function in `verl_maxpo.core.estimators`
            (signature: rewards (N,), group_ids (N,), k (if reads_k), keyword options) -> (N,) advantages.
        options: the `algorithm.maxpo` keys this estimator reads. k, the run's K, is accepted by every estimator
            and read by those that list it (`reads_k`).
        min_k: the smallest k it accepts.
        group_slack: every group needs n >= k + group_slack samples.
        unbiased_for: the gradient it is an unbiased estimate of (docs and variance map wording).
        description: one line for `verl-maxpo check`, the docs and `--help`.
        min_n: the smallest group size whatever k (a group of one has no baseline).
        kernel: "order_stat" (sort each group, one weight per rank: maxpo, pkpo, pkpo_loo) or "mean_ratio"
            ((r - mean) / (mean + eps) per group, no sort: maxrl).
        baseline_draws: order_stat only: the baseline is rho_{k + baseline_draws}(r without i), the mean best of
            that many of the other samples (pkpo: -1).
        baseline_scaled: order_stat only: the baseline carries PKPO's factor n/(n-1) (pkpo_loo), which also makes
            the estimator move by -shift/(n-1) under a constant shift of the rewards.
        reward_floor: rewards below it are refused (maxrl is defined for success rewards >= 0); None: no floor.
    """

    name: str
    function: str
    options: tuple[str, ...]
    min_k: int
    group_slack: int
    unbiased_for: str
    description: str
    min_n: int = 2
    kernel: str = "order_stat"
    baseline_draws: int = 0
    baseline_scaled: bool = False
    reward_floor: float | None = None

    def min_group_size(self, k: int) -> int:
        """The smallest group size n this estimator accepts for this k (never below min_n)."""
        return max(k + self.group_slack, self.min_n) if self.reads_k else self.min_n

    @property
    def reads_k(self) -> bool:
        """Whether the estimator reads k ("k" in options; its function then takes k after group_ids): the one
        meaning of "this arm reads k" for the launcher, the demo, the variance map and the verl adapter."""
        return "k" in self.options

    @property
    def function_name(self) -> str:
        """The public function's name (`maxpo_advantages`, ...), exported by `verl_maxpo` and its estimators."""
        return self.function.rpartition(".")[2]

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
                function="verl_maxpo.core.estimators.maxpo_advantages",
                options=_MAXPO_OPTIONS,
                min_k=1,
                group_slack=1,
                unbiased_for="the chosen K-sample objective (max@K by default; top_m, ml or rank weights)",
                description="leave-two-out advantage of a symmetric K-sample objective; every group sums to zero",
            ),
            EstimatorSpec(
                name="pkpo",
                function="verl_maxpo.core.estimators.pkpo_advantages",
                options=_MAX_ONLY_OPTIONS,
                min_k=2,
                group_slack=0,
                baseline_draws=-1,
                unbiased_for="max@K",
                description="PKPO s^(loo-1): q_i - rho_{K-1}(r without i); >= 0, not centered",
            ),
            EstimatorSpec(
                name="pkpo_loo",
                function="verl_maxpo.core.estimators.pkpo_loo_advantages",
                options=_MAX_ONLY_OPTIONS,
                min_k=1,
                group_slack=1,
                unbiased_for="max@K",
                description="PKPO s^(loo): q_i - n/(n-1) rho_K(r without i); not centered, not shift-invariant",
                baseline_scaled=True,
            ),
            EstimatorSpec(
                name="maxrl",
                function="verl_maxpo.core.estimators.maxrl_advantages",
                options=(),  # k is accepted as the run's K (max@K evaluation); the estimator does not read it
                min_k=1,
                group_slack=0,
                unbiased_for="no fixed objective (divides by the group mean); targets log pass rate",
                description="MaxRL (arXiv 2602.02710): (r_i - mean) / (mean + 1e-6), 0 for an all-zero group",
                min_n=2,
                kernel="mean_ratio",
                reward_floor=0.0,
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
K_LIMIT = 10**9  # k must stay below this: a group needs n >= k samples, and no batch holds 10**9 of one prompt


def arm_reads_k(arm: ArmSpec) -> bool:
    """Whether an arm reads k: its estimator is ours and lists k (verl's own, and maxrl, do not)."""
    spec = ESTIMATORS.get(arm.estimator)
    return spec is not None and spec.reads_k


def validate_k(k: object, minimum: int = 1) -> int:
    """Return k as a Python int, or raise ValueError if it is not an integer with minimum <= k < K_LIMIT."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer >= {minimum}, got {k!r} ({type(k).__name__})")
    if int(k) < minimum:
        raise ValueError(f"k must be an integer >= {minimum}, got {k}")
    if int(k) >= K_LIMIT:
        raise ValueError(f"k must be an integer >= {minimum} and below {K_LIMIT:_}, got {int(k):_}")
    return int(k)


@dataclass(frozen=True)
class MaxPOOptions:
    """The `algorithm.maxpo` options, validated once (`parse`); defaults are what an absent key means.

    Every caller (the verl adapter, `compute_advantages`, the public estimator functions, the variance map)
    parses its options into this object, and `verl_maxpo.core.estimators.run_estimator` takes it as is.

    Attributes:
        k: the K of the objective (of max@K), an integer >= the estimator's min_k.
        norm_by_std: divide each group's advantages by its reward std (biased across prompts).
        objective: maxpo only: "max", "top_m", "ml" or "weights" (see `verl_maxpo.core.lstat.objective_weights`).
        m: with objective "top_m" only, 1 <= m <= k.
        rank_weights: with objective "weights" only, k finite numbers (ascending order statistics).
        kernel: "auto", "matrix" or "scan" (same values; see `verl_maxpo.core.estimators.maxpo_advantages`).
    """

    k: int = 4
    norm_by_std: bool = False
    objective: str = "max"
    m: int | None = None
    rank_weights: tuple[float, ...] | None = None
    kernel: str = "auto"

    @functools.cached_property
    def lstat_weights(self) -> tuple[float, ...] | None:
        """The objective's rank weights w_1..w_k, None for max@K (which keeps its own, bit-for-bit weights)."""
        if self.objective == "max":
            return None
        from verl_maxpo.core.lstat import is_max, objective_weights

        w = objective_weights(self.k, self.objective, self.m, self.rank_weights)
        return None if is_max(w) else w

    @classmethod
    def parse(cls, block: Mapping[str, Any] | None, estimator: str, prefix: str = "algorithm.maxpo.") -> MaxPOOptions:
        """Options of `estimator` from a plain mapping (None: all defaults), or ValueError naming the key.

        Refused: a key that is not an option, a bad value (k null included), and a non-default value of an option
        the estimator does not read (objective=ml for pkpo, norm_by_std=true for maxrl, ...): nothing is silently
        ignored. k is accepted by every estimator (the run's K) and range-checked against the estimator's min_k
        only where it is read. This is the one cache of parsed options: the same block validates once.
        """
        try:
            # The value's type is part of the key: 2 and 2.0, 1 and True hash alike but validate differently.
            frozen = tuple(
                (
                    key,
                    type(v),
                    tuple(map(type, v)) if isinstance(v, list) else (),
                    tuple(v) if isinstance(v, list) else v,
                )
                for key, v in (block or {}).items()
            )
            return _parse_cached(cls, frozen, estimator, prefix)
        except TypeError:  # an unhashable value: validate without the cache (and say what is wrong)
            return cls._parse(block, estimator, prefix)

    @classmethod
    def _parse(cls, block: Mapping[str, Any] | None, estimator: str, prefix: str) -> MaxPOOptions:
        import numpy as np

        from verl_maxpo.core.lstat import objective_weights

        spec = estimator_spec(estimator)
        block = {} if block is None else block
        unknown = sorted(str(key) for key in block if key not in OPTION_KEYS)
        if unknown:
            raise ValueError(
                f"{prefix.rstrip('.')} has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(OPTION_KEYS)} "
                "(keys are case-sensitive)"
            )
        # An absent option and a null one mean the default, except k: a null k is a forgotten value, not K = 4.
        values = {key: value for key, value in block.items() if value is not None or key == "k"}
        defaults = cls()
        for key, value in values.items():
            if key != "k" and key not in spec.options and not _is_default(value, getattr(defaults, key)):
                raise ValueError(
                    f"{prefix}{key}={value!r} does not apply to {estimator}, which reads only "
                    f"{', '.join(spec.options) or 'no option'}"
                    + (" (defined for max@K only)" if key in ("objective", "m", "rank_weights") else "")
                )
        try:
            k = validate_k(values.get("k", defaults.k), spec.min_k if spec.reads_k else 1)
        except ValueError as err:
            raise ValueError(f"{prefix}{err} ({estimator})") from None
        norm = values.get("norm_by_std", defaults.norm_by_std)
        if not isinstance(norm, (bool, np.bool_)):
            raise ValueError(f"{prefix}norm_by_std must be true or false, got {norm!r}")
        kernel = values.get("kernel", defaults.kernel)
        if not isinstance(kernel, str) or kernel not in KERNELS:
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


@functools.lru_cache(maxsize=256)
def _parse_cached(cls: type, frozen: tuple, estimator: str, prefix: str) -> MaxPOOptions:
    """Options are parsed on every verl call: the same block validates once (errors are never cached)."""
    return cls._parse({key: value for key, _, _, value in frozen}, estimator, prefix)


def estimator_spec(estimator: str) -> EstimatorSpec:
    """The table entry of `estimator`, or ValueError listing the registered names."""
    spec = ESTIMATORS.get(estimator)
    if spec is None:
        raise ValueError(f"unknown estimator {estimator!r}; registered: {', '.join(ESTIMATORS)}")
    return spec


def _is_default(value: Any, default: Any) -> bool:
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # an array or other value that does not compare to a scalar
        return False
