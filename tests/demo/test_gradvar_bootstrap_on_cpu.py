"""The gradient-variance table's bootstrap interval over draws, against resampling the draws themselves."""

from __future__ import annotations

import math

import pytest
import torch

from verl_maxpo.demo_gradvar import rel_var_interval


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
    expect = torch.quantile(brute, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    assert (lo, hi) == pytest.approx(expect, rel=1e-9)
    assert lo < _rel_var(draws) < hi
