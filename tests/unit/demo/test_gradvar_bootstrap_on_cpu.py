"""The gradient-variance table's bootstrap interval over draws, against resampling the draws themselves."""

from __future__ import annotations

import math

import pytest
import torch

from verl_maxpo.tools.demo.gradvar import rel_var_interval


def _rel_var(g: torch.Tensor) -> float:
    m = g.shape[0]
    mean = g.mean(0)
    trace_cov = ((g - mean) ** 2).sum().item() / (m - 1)
    signal = mean.square().sum().item() - trace_cov / m
    return trace_cov / signal if signal > 0 else math.inf


def test_gram_matrix_bootstrap_equals_resampling_the_draws() -> None:
    draws = torch.randn(12, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 1.5
    lo, hi = rel_var_interval(draws, resamples=400, seed=5)
    idx = torch.randint(12, (400, 12), generator=torch.Generator().manual_seed(5))
    brute = torch.tensor([_rel_var(draws[i]) for i in idx], dtype=torch.float64)
    lower = torch.quantile(brute, 0.025, interpolation="lower").item()
    expect = [lower, torch.quantile(brute, 0.975, interpolation="higher").item()]
    assert (lo, hi) == pytest.approx(expect, rel=1e-9)
    assert lo < _rel_var(draws) < hi


def test_draws_without_signal_give_an_infinite_end_not_nan() -> None:
    draws = torch.zeros(4, 5, dtype=torch.float64)
    draws[0, 0] = 1.0  # one draw with a gradient, three zero-gradient draws
    lo, hi = rel_var_interval(draws, resamples=200)
    assert not math.isnan(lo) and not math.isnan(hi) and math.isinf(hi)
