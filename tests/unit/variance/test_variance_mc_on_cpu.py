"""`verl-maxpo variance`, Monte-Carlo part (kept apart from the exact tests): sampling the same model agrees with
the exact moments within 4 standard errors on a few cells."""

from __future__ import annotations

import pytest

from verl_maxpo.tools import variance

CELLS = [
    ("maxpo", "binary", 0.2, 8, 4, 2.0),
    ("pkpo", "binary", 0.2, 8, 4, 2.0),
    ("pkpo_loo", "partial4", 0.1, 8, 2, 1.0),
    ("maxpo", "binary", 0.05, 16, 4, 4.0),
    ("grpo", "partial4", 0.5, 4, 2, 0.5),
    ("maxpo_top2", "partial4", 0.3, 8, 4, 2.0),
    ("maxpo_ml", "binary", 0.1, 8, 4, 1.0),
    ("maxrl", "binary", 0.2, 8, 4, 2.0),
]


@pytest.mark.parametrize(("name", "law", "p", "n", "k", "ratio"), CELLS)
def test_monte_carlo_agrees_with_exact(name: str, law: str, p: float, n: int, k: int, ratio: float) -> None:
    mean, trace = variance.exact_moments(name, law, p, n, k, ratio)
    mc_mean, mean_se, mc_square, square_se = variance.monte_carlo_moments(name, law, p, n, k, ratio, 100_000, seed=7)
    assert abs(mc_mean - mean) < 4 * mean_se, (mc_mean, mean, mean_se)
    assert abs(mc_square - (trace + mean**2)) < 4 * square_se, (mc_square, trace + mean**2, square_se)
    assert square_se < 0.05 * mc_square  # the check has teeth: the standard error is small against the value
