"""The estimator table drives the kernel, the public names and every caller (issue 22)."""

from __future__ import annotations

import dataclasses
import inspect
import re

import torch

import verl_maxpo
from verl_maxpo.core import estimators
from verl_maxpo.core.estimators import run_estimator
from verl_maxpo.core.table import ARMS, ESTIMATORS, MaxPOOptions, arm_reads_k
from verl_maxpo.tools import variance


def test_no_estimator_name_dispatch_in_the_math() -> None:
    source = inspect.getsource(estimators)
    names = "|".join(map(re.escape, ESTIMATORS))
    assert not re.findall(rf"(==|!=|in \(?)\s*['\"]({names})['\"]", source)


def test_public_names_come_from_the_table() -> None:
    for spec in ESTIMATORS.values():
        assert spec.function_name in verl_maxpo.__all__ and spec.function_name in estimators.__all__
        assert getattr(verl_maxpo, spec.function_name) is spec.fn


def test_reads_k_has_one_meaning() -> None:
    for arm in ARMS.values():
        spec = ESTIMATORS.get(arm.estimator)
        want = spec is not None and "k" in spec.options
        assert arm_reads_k(arm) == want, arm.name
    assert not arm_reads_k(ARMS["maxrl"]) and arm_reads_k(ARMS["pkpo"]) and not arm_reads_k(ARMS["grpo"])
    assert (
        variance.gradient_factor(ARMS["maxrl"], 8, 4) == 1 / 8
        and variance.gradient_factor(ARMS["maxpo"], 8, 4) == 4 / 8
    )


def test_the_kernel_reads_the_spec_not_the_name() -> None:
    """A spec under a new name with pkpo's rules computes pkpo: the name plays no part in the math."""
    rewards = torch.tensor([0.0, 1.0, 0.5, 0.25, 1.0, 0.0, 0.75, 0.5], dtype=torch.float64)
    ids = [0] * 4 + [1] * 4
    for name in ("pkpo", "pkpo_loo", "maxpo", "maxrl"):
        renamed = dataclasses.replace(ESTIMATORS[name], name="renamed")
        options = MaxPOOptions(k=2)
        assert torch.equal(run_estimator(renamed, rewards, ids, options), run_estimator(name, rewards, ids, options))


def test_every_caller_goes_through_run_estimator(monkeypatch) -> None:
    calls = []
    original = estimators.run_estimator

    def spy(*args, **kwargs):
        calls.append(args[0] if isinstance(args[0], str) else args[0].name)
        return original(*args, **kwargs)

    monkeypatch.setattr(estimators, "run_estimator", spy)
    from verl_maxpo.core import api
    from verl_maxpo.integration import adapter as verl_adapter

    monkeypatch.setattr(api, "run_estimator", spy)
    monkeypatch.setattr(verl_adapter, "run_estimator", spy)
    monkeypatch.setattr(variance, "run_estimator", spy)
    rewards, ids = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0]), [0, 0, 0, 1, 1, 1]
    verl_maxpo.maxpo_advantages(rewards, ids, 2)
    verl_maxpo.compute_advantages(rewards, ids, estimator="pkpo", k=2)
    verl_adapter.VERL_FUNCTIONS["maxrl"](rewards[:, None], torch.ones(6, 1), ids, None)
    variance._advantage_fn(ARMS["pkpo_loo"])(rewards.view(2, 3).double(), 2)
    assert calls == ["maxpo", "pkpo", "maxrl", "pkpo_loo"]
