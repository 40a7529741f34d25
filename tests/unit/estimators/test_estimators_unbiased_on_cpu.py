"""Unbiasedness, checked exactly: enumerate every outcome tuple of a small categorical policy (no sampling; the
Monte-Carlo check of the same claims lives in test_estimators_mc_on_cpu.py).

For a softmax policy pi(theta) over m outcomes with reward R[y], the max@k objective is
J_k = E[max(R[Y_1..Y_k])]; its exact gradient comes from autograd over all m^k k-tuples. The estimator's
expectation sum_y P(y) (k/n) sum_i A_i grad log pi(y_i) is a finite sum over all m^n n-tuples, computed with
one batched estimator call (one group per tuple). No sampling anywhere.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from verl_maxpo.core.estimators import maxpo_advantages, pkpo_advantages, pkpo_loo_advantages

THETA = torch.tensor([0.3, -0.5, 0.9, 0.1], dtype=torch.float64)
REWARD_TABLES = {
    "binary": torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64),
    "continuous": torch.tensor([0.2, 1.0, -0.4, 0.6], dtype=torch.float64),
    "tied": torch.tensor([0.5, 1.0, 0.5, 0.0], dtype=torch.float64),
}


def exact_grad_max_at_k(theta: torch.Tensor, reward: torch.Tensor, k: int) -> torch.Tensor:
    theta = theta.clone().requires_grad_(True)
    pi = torch.softmax(theta, 0)
    tuples = torch.tensor(list(itertools.product(range(len(reward)), repeat=k)))
    objective = (pi[tuples].prod(dim=1) * reward[tuples].max(dim=1).values).sum()
    (grad,) = torch.autograd.grad(objective, theta)
    return grad


def expected_estimate(theta: torch.Tensor, reward: torch.Tensor, n: int, k: int, fn) -> torch.Tensor:
    m = len(reward)
    pi = torch.softmax(theta, 0)
    tuples = torch.tensor(list(itertools.product(range(m), repeat=n)))  # (m^n, n)
    prob = pi[tuples].prod(dim=1)  # (m^n,)
    group_ids = torch.arange(tuples.shape[0]).repeat_interleave(n)
    adv = fn(reward[tuples].reshape(-1), group_ids, k).reshape(tuples.shape)  # (m^n, n)
    score = torch.nn.functional.one_hot(tuples, m).double() - pi  # grad of log pi(y_i) w.r.t. theta
    per_tuple = (k / n) * (adv.unsqueeze(-1) * score).sum(dim=1)  # (m^n, m)
    return (prob.unsqueeze(-1) * per_tuple).sum(dim=0)


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in (3, 5, 6) for k in range(1, n)])
@pytest.mark.parametrize("table", list(REWARD_TABLES))
def test_maxpo_is_unbiased(n: int, k: int, table: str) -> None:
    reward = REWARD_TABLES[table]
    expected = expected_estimate(THETA, reward, n, k, maxpo_advantages)
    exact = exact_grad_max_at_k(THETA, reward, k)
    assert exact.abs().max() > 1e-3  # a non-trivial gradient to match
    torch.testing.assert_close(expected, exact, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in (3, 5, 6) for k in range(2, n + 1)])
@pytest.mark.parametrize("table", list(REWARD_TABLES))
def test_pkpo_is_unbiased_but_not_centered(n: int, k: int, table: str) -> None:
    reward = REWARD_TABLES[table]
    expected = expected_estimate(THETA, reward, n, k, pkpo_advantages)
    torch.testing.assert_close(expected, exact_grad_max_at_k(THETA, reward, k), atol=1e-12, rtol=1e-10)

    # Same scale, but one-sided: every advantage >= 0, and a group whose best reward is unique sums above zero
    # (its best sample always gains); MaxPO would sum to exactly zero on the same groups.
    tuples = torch.tensor(list(itertools.product(range(len(reward)), repeat=n)))
    rewards = reward[tuples]
    adv = pkpo_advantages(rewards.reshape(-1), torch.arange(len(tuples)).repeat_interleave(n), k).reshape(-1, n)
    assert (adv >= -1e-12).all()
    unique_best = (rewards == rewards.max(dim=1, keepdim=True).values).sum(dim=1) == 1
    assert unique_best.any()
    assert (adv[unique_best].sum(dim=1) > 1e-9).all()


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in (3, 5, 6) for k in range(1, n)])
@pytest.mark.parametrize("table", list(REWARD_TABLES))
def test_pkpo_loo_is_unbiased(n: int, k: int, table: str) -> None:
    reward = REWARD_TABLES[table]
    expected = expected_estimate(THETA, reward, n, k, pkpo_loo_advantages)
    torch.testing.assert_close(expected, exact_grad_max_at_k(THETA, reward, k), atol=1e-12, rtol=1e-10)


def test_a_biased_baseline_is_detected() -> None:
    """The check above can fail: a baseline that uses the sample's own reward (GRPO-style mean) is biased."""

    def mean_baseline(rewards: torch.Tensor, group_ids: torch.Tensor, k: int) -> torch.Tensor:
        r = rewards.reshape(-1, 5)
        return (r - r.mean(dim=1, keepdim=True)).reshape(-1)

    reward = REWARD_TABLES["continuous"]
    expected = expected_estimate(THETA, reward, 5, 1, mean_baseline)
    exact = exact_grad_max_at_k(THETA, reward, 1)
    assert (expected - exact).abs().max() > 1e-3


def exact_grad_lstat(theta: torch.Tensor, reward: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Exact gradient of E[sum_j w_j Y_(j)] over k = len(w) i.i.d. draws (all m^k tuples, autograd)."""
    theta = theta.clone().requires_grad_(True)
    pi = torch.softmax(theta, 0)
    tuples = torch.tensor(list(itertools.product(range(len(reward)), repeat=len(w))))
    objective = (pi[tuples].prod(dim=1) * (reward[tuples].sort(dim=1).values @ w)).sum()
    (grad,) = torch.autograd.grad(objective, theta)
    return grad


def _lstat_cases(k: int) -> list[tuple[dict, torch.Tensor]]:
    f64 = torch.float64
    top = [
        ({"objective": "top_m", "m": m}, torch.tensor([0.0] * (k - m) + [1 / m] * m, dtype=f64))
        for m in range(2, k + 1)
    ]
    ml = ({"objective": "ml"}, torch.tensor([1 / (k - j + 1) for j in range(1, k + 1)], dtype=f64))
    w = torch.linspace(-0.5, 1.0, k, dtype=f64)
    return [*top, ml, ({"objective": "weights", "rank_weights": w.tolist()}, w)]


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in (3, 5) for k in range(2, n)])
@pytest.mark.parametrize("table", list(REWARD_TABLES))
def test_every_objective_is_unbiased_for_its_own_gradient(n: int, k: int, table: str) -> None:
    reward = REWARD_TABLES[table]
    for options, w in _lstat_cases(k):
        fn = functools.partial(maxpo_advantages, **options)
        expected = expected_estimate(THETA, reward, n, k, fn)
        exact = exact_grad_lstat(THETA, reward, w)
        assert exact.abs().max() > 1e-4
        torch.testing.assert_close(expected, exact, atol=1e-12, rtol=1e-10, msg=f"{options}")
        assert (exact - exact_grad_max_at_k(THETA, reward, k)).abs().max() > 1e-6  # not max@K's: the check can fail
