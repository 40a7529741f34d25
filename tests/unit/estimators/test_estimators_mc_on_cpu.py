"""Monte-Carlo unbiasedness of the top_m and ml objectives: sampled groups from a small softmax policy, the mean
of (k/n) sum_i A_i grad log pi(y_i) against the exact gradient of the objective (kept apart from the exact
enumeration tests in test_estimators_unbiased_on_cpu.py). One batched estimator call per case: about a second.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from verl_maxpo.core.estimators import maxpo_advantages

THETA = torch.tensor([0.3, -0.5, 0.9, 0.1], dtype=torch.float64)
REWARD = torch.tensor([0.2, 1.0, -0.4, 0.6], dtype=torch.float64)
N, K, GROUPS = 6, 3, 40000


def exact_grad(w: torch.Tensor) -> torch.Tensor:
    """d/dtheta of E[sum_j w_j Y_(j)] over K i.i.d. draws, over all outcome tuples."""
    theta = THETA.clone().requires_grad_(True)
    pi = torch.softmax(theta, 0)
    tuples = torch.tensor(list(itertools.product(range(len(REWARD)), repeat=len(w))))
    objective = (pi[tuples].prod(dim=1) * (REWARD[tuples].sort(dim=1).values @ w)).sum()
    return torch.autograd.grad(objective, theta)[0]


def sampled_estimates(options: dict, seed: int) -> torch.Tensor:
    """(GROUPS, m) per-group gradient estimates (k/n) sum_i A_i grad log pi(y_i)."""
    g = torch.Generator().manual_seed(seed)
    pi = torch.softmax(THETA, 0)
    y = torch.multinomial(pi, GROUPS * N, replacement=True, generator=g).view(GROUPS, N)
    adv = maxpo_advantages(REWARD[y].reshape(-1), torch.arange(GROUPS).repeat_interleave(N), K, **options)
    score = torch.nn.functional.one_hot(y, len(pi)).double() - pi
    return (K / N) * (adv.view(GROUPS, N, 1) * score).sum(dim=1)


CASES = [
    ({"objective": "top_m", "m": 2}, torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)),
    ({"objective": "ml"}, torch.tensor([1 / 3, 1 / 2, 1.0], dtype=torch.float64)),
]


@pytest.mark.parametrize(("options", "w"), CASES, ids=["top_m2", "ml"])
def test_sampled_mean_matches_the_exact_gradient(options: dict, w: torch.Tensor) -> None:
    est = sampled_estimates(options, seed=1)
    mean, se = est.mean(0), est.std(0) / GROUPS**0.5
    exact = exact_grad(w)
    z = (mean - exact).abs() / se
    assert z.max() < 4.5, f"z-scores {z.tolist()}"
    # the check has power: max@K's gradient is many standard errors away from the same sample mean
    z_max = (mean - exact_grad(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))).abs() / se
    assert z_max.max() > 10
