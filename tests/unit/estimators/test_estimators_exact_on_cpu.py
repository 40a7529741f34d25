"""Exact tests of the framework-free estimators: brute-force subset enumeration, identities and numerics.

Everything here is deterministic (no Monte-Carlo): expected values come from enumerating subsets.
"""

from __future__ import annotations

import itertools
import math
import uuid

import numpy as np
import pytest
import torch

from verl_maxpo import compute_advantages
from verl_maxpo.core import estimators
from verl_maxpo.core.estimators import (
    GroupTooSmallError,
    max_at_k,
    maxpo_advantages,
    maxrl_advantages,
    pkpo_advantages,
    pkpo_loo_advantages,
)
from verl_maxpo.core.groups import group_index

# ---------------------------------------------------------------- brute force, straight from the definitions


def bf_rho(r: tuple[float, ...], k: int) -> float:
    """Unbiased max@k: mean over all k-subsets of the subset's max."""
    return float(np.mean([max(s) for s in itertools.combinations(r, k)]))


def bf_maxpo(r: tuple[float, ...], k: int) -> np.ndarray:
    """A_i = q_i - v_-i by enumeration."""
    out = []
    for i in range(len(r)):
        others = r[:i] + r[i + 1 :]
        q = np.mean([max((r[i], *s)) for s in itertools.combinations(others, k - 1)])
        out.append(q - bf_rho(others, k))
    return np.array(out)


def bf_maxpo_pairwise(r: tuple[float, ...], k: int) -> np.ndarray:
    """The leave-two-out form: 1/(n-1) sum_j [q(r_i; R_ij) - q(r_j; R_ij)] with q(x; R) over (k-1)-subsets of R."""
    n = len(r)

    def q(x: float, rest: tuple[float, ...]) -> float:
        return float(np.mean([max((x, *t)) for t in itertools.combinations(rest, k - 1)]))

    out = np.zeros(n)
    for i, j in itertools.permutations(range(n), 2):
        rest = tuple(r[m] for m in range(n) if m not in (i, j))
        out[i] += (q(r[i], rest) - q(r[j], rest)) / (n - 1)
    return out


def bf_pkpo(r: tuple[float, ...], k: int) -> np.ndarray:
    """Mean over k-subsets S containing i of [max S - max S without i]."""
    out = []
    for i in range(len(r)):
        others = r[:i] + r[i + 1 :]
        out.append(np.mean([max((r[i], *s)) - max(s) for s in itertools.combinations(others, k - 1)]))
    return np.array(out)


def bf_pkpo_loo(r: tuple[float, ...], k: int) -> np.ndarray:
    """PKPO's s^(loo) straight from its definition, times n/k: sample i's effective reward s_i = (k/n) q_i minus
    the mean, over the other n-1 samples j, of s_j recomputed on the group without i; s by subset enumeration."""
    n = len(r)

    def s(values: tuple[float, ...], j: int) -> float:  # (1/C(m, k)) * sum over k-subsets containing j of max
        m = len(values)
        rest = values[:j] + values[j + 1 :]
        return sum(max((values[j], *t)) for t in itertools.combinations(rest, k - 1)) / math.comb(m, k)

    out = []
    for i in range(n):
        others = r[:i] + r[i + 1 :]
        baseline = np.mean([s(others, j) for j in range(n - 1)])
        out.append((s(r, i) - baseline) * n / k)
    return np.array(out)


def reward_sets(n: int, rng: np.random.Generator) -> dict[str, tuple[float, ...]]:
    return {
        "binary": tuple(float(x) for x in rng.integers(0, 2, n)),
        "continuous": tuple(float(x) for x in rng.normal(size=n)),
        "tied": tuple(float(x) for x in rng.integers(0, 3, n) * 0.5 - 0.5),
    }


CASES = [(n, k) for n in range(2, 9) for k in range(1, n)]


@pytest.mark.parametrize(("n", "k"), CASES)
def test_maxpo_equals_enumeration(n: int, k: int) -> None:
    rng = np.random.default_rng(1000 * n + k)
    for kind, r in reward_sets(n, rng).items():
        got = maxpo_advantages(torch.tensor(r, dtype=torch.float64), [0] * n, k).numpy()
        np.testing.assert_allclose(got, bf_maxpo(r, k), atol=1e-12, err_msg=f"{kind} n={n} k={k}")


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in range(2, 7) for k in range(1, n)])
def test_maxpo_equals_leave_two_out_pairwise_form(n: int, k: int) -> None:
    rng = np.random.default_rng(7 * n + k)
    for kind, r in reward_sets(n, rng).items():
        got = maxpo_advantages(torch.tensor(r, dtype=torch.float64), [0] * n, k).numpy()
        np.testing.assert_allclose(got, bf_maxpo_pairwise(r, k), atol=1e-12, err_msg=f"{kind} n={n} k={k}")


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in range(2, 9) for k in range(2, n + 1)])
def test_pkpo_equals_enumeration(n: int, k: int) -> None:
    rng = np.random.default_rng(31 * n + k)
    for kind, r in reward_sets(n, rng).items():
        got = pkpo_advantages(torch.tensor(r, dtype=torch.float64), [0] * n, k).numpy()
        np.testing.assert_allclose(got, bf_pkpo(r, k), atol=1e-12, err_msg=f"{kind} n={n} k={k}")
        assert (got >= -1e-12).all(), "PKPO advantages are never negative"


@pytest.mark.parametrize(("n", "k"), CASES)
def test_pkpo_loo_equals_enumeration_and_the_closed_form(n: int, k: int) -> None:
    rng = np.random.default_rng(53 * n + k)
    for kind, r in reward_sets(n, rng).items():
        got = pkpo_loo_advantages(torch.tensor(r, dtype=torch.float64), [0] * n, k).numpy()
        np.testing.assert_allclose(got, bf_pkpo_loo(r, k), atol=1e-12, err_msg=f"{kind} n={n} k={k}")
        # the closed form q_i - n/(n-1) rho_k(r without i): MaxPO's baseline with a factor n/(n-1)
        q_minus_loo = bf_maxpo(r, k)
        loo = np.array([bf_rho(r[:i] + r[i + 1 :], k) for i in range(n)])
        np.testing.assert_allclose(got, q_minus_loo + loo - n / (n - 1) * loo, atol=1e-12)
        # not centered: a group sums to -n/(n-1) rho_k(r)
        assert got.sum() == pytest.approx(-n / (n - 1) * bf_rho(r, k), abs=1e-11)


def test_pkpo_loo_moves_by_minus_shift_over_n_minus_1() -> None:
    r = torch.tensor([0.3, -1.2, 0.3, 2.0, 0.7, 0.0, 1.1], dtype=torch.float64)
    base = pkpo_loo_advantages(r, [0] * 7, 3)
    torch.testing.assert_close(pkpo_loo_advantages(r + 5.0, [0] * 7, 3), base - 5.0 / 6, atol=1e-12, rtol=0)


@pytest.mark.parametrize("fn", [maxpo_advantages, pkpo_advantages, pkpo_loo_advantages])
@pytest.mark.parametrize("n", [estimators.MATRIX_MAX_N - 1, estimators.MATRIX_MAX_N + 1, 100])
def test_matrix_and_prefix_sum_paths_agree(fn, n: int) -> None:
    g = torch.Generator().manual_seed(n)
    rewards = torch.cat([torch.rand(3 * n, generator=g, dtype=torch.float64), (torch.rand(n, generator=g) < 0.1)])
    ids = np.repeat(np.arange(4), n)
    perm = torch.randperm(4 * n, generator=g)  # non-contiguous groups: the gather/scatter path
    for k in (1, 2, 5, n - 1):
        if fn is pkpo_advantages and k == 1:
            continue
        default = fn(rewards, ids, k)
        assert torch.equal(default, fn(rewards, ids, k, kernel="matrix" if n <= estimators.MATRIX_MAX_N else "scan"))
        other = fn(rewards, ids, k, kernel="scan" if n <= estimators.MATRIX_MAX_N else "matrix")
        torch.testing.assert_close(other, default, atol=1e-12, rtol=0)
        torch.testing.assert_close(fn(rewards[perm], ids[perm.numpy()], k), default[perm], atol=1e-13, rtol=0)
        assert default.abs().max() > 1e-3


def test_strided_float64_rewards() -> None:
    table = torch.rand(24, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    column = table[:, 1]  # not contiguous
    torch.testing.assert_close(
        maxpo_advantages(column, [0] * 8 + [1] * 8 + [2] * 8, 3),
        maxpo_advantages(column.contiguous(), [0] * 8 + [1] * 8 + [2] * 8, 3),
        atol=0,
        rtol=0,
    )


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in range(1, 9) for k in range(1, n + 1)])
def test_max_at_k_equals_enumeration(n: int, k: int) -> None:
    rng = np.random.default_rng(11 * n + k)
    for kind, r in reward_sets(n, rng).items():
        got = max_at_k(torch.tensor(r, dtype=torch.float64), [0] * n, k)
        assert got.shape == (1,)
        assert got.item() == pytest.approx(bf_rho(r, k), abs=1e-12), f"{kind} n={n} k={k}"


@pytest.mark.parametrize(("n", "k"), [(8, 4), (16, 4), (16, 8), (9, 1), (12, 11), (64, 8)])
def test_binary_closed_form(n: int, k: int) -> None:
    def comb(a: int, b: int) -> int:
        return math.comb(a, b) if 0 <= b <= a else 0

    for c in range(n + 1):
        r = torch.tensor([1.0] * c + [0.0] * (n - c), dtype=torch.float64)
        got = maxpo_advantages(r, [0] * n, k)
        correct = comb(n - c, k) / comb(n - 1, k)
        wrong = comb(n - c - 1, k) / comb(n - 1, k) - comb(n - c - 1, k - 1) / comb(n - 1, k - 1)
        if c:
            torch.testing.assert_close(got[:c], torch.full((c,), correct, dtype=torch.float64), atol=1e-12, rtol=0)
        if c < n:
            torch.testing.assert_close(got[c:], torch.full((n - c,), wrong, dtype=torch.float64), atol=1e-12, rtol=0)


def test_worked_example_from_the_reference() -> None:
    got = maxpo_advantages(torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0], dtype=torch.float64), ["p"] * 8, 4)
    torch.testing.assert_close(got, torch.tensor([1.0] + [-1 / 7] * 7, dtype=torch.float64), atol=1e-12, rtol=0)


def test_pkpo_at_k_equals_n_rewards_only_the_best() -> None:
    got = pkpo_advantages(torch.tensor([0.2, 0.9, 0.5, 0.1]), [0] * 4, 4)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.4, 0.0, 0.0]), atol=1e-6, rtol=0)


def test_equivalent_centered_inclusion_form() -> None:
    # A_i = n/(n-k) (q_i - mean_j q_j), with q_i by enumeration.
    r = (0.3, -1.2, 0.3, 2.0, 0.7, 0.0, 1.1)
    n, k = len(r), 3
    q = np.array(
        [np.mean([max((r[i], *s)) for s in itertools.combinations(r[:i] + r[i + 1 :], k - 1)]) for i in range(n)]
    )
    got = maxpo_advantages(torch.tensor(r, dtype=torch.float64), [0] * n, k).numpy()
    np.testing.assert_allclose(got, n / (n - k) * (q - q.mean()), atol=1e-12)


# ---------------------------------------------------------------- structure: centering, symmetry, ties, batching


def _mixed_batch(seed: int = 0) -> tuple[torch.Tensor, np.ndarray, list[int]]:
    """Groups of sizes 5, 9, 16, 16, 33 shuffled together, with uuid labels as verl passes them."""
    g = torch.Generator().manual_seed(seed)
    sizes = [5, 9, 16, 16, 33]
    labels = np.array([str(uuid.UUID(int=i + 1)) for i in range(len(sizes))], dtype=object).repeat(sizes)
    rewards = torch.rand(sum(sizes), generator=g, dtype=torch.float64).round(decimals=1)  # ties on purpose
    perm = torch.randperm(sum(sizes), generator=g)
    return rewards[perm], labels[perm.numpy()], sizes


@pytest.mark.parametrize("k", [1, 2, 4])
def test_every_group_sums_to_zero_and_matches_per_group_calls(k: int) -> None:
    rewards, labels, _ = _mixed_batch()
    adv = maxpo_advantages(rewards, labels, k)
    for label in np.unique(labels):
        sel = torch.from_numpy(labels == label)
        assert abs(adv[sel].sum().item()) < 1e-12
        alone = maxpo_advantages(rewards[sel], labels[sel.numpy()], k)
        torch.testing.assert_close(adv[sel], alone, atol=1e-14, rtol=0)


def test_pkpo_groups_do_not_sum_to_zero() -> None:
    rewards, labels, _ = _mixed_batch()
    adv = pkpo_advantages(rewards, labels, 4)
    for label in np.unique(labels):
        sel = torch.from_numpy(labels == label)
        if rewards[sel].unique().numel() > 1:
            assert adv[sel].sum().item() > 1e-6
        assert (adv[sel] >= -1e-12).all()


@pytest.mark.parametrize("fn", [maxpo_advantages, pkpo_advantages, pkpo_loo_advantages])
def test_permutation_equivariance(fn) -> None:
    rewards, labels, _ = _mixed_batch(1)
    adv = fn(rewards, labels, 4)
    perm = torch.randperm(rewards.numel(), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(fn(rewards[perm], labels[perm.numpy()], 4), adv[perm], atol=1e-13, rtol=0)


def test_tied_rewards_get_identical_advantages_whatever_their_order() -> None:
    r = torch.tensor([1.0, 0.5, 1.0, 0.0, 0.5, 1.0, 0.0, 0.5, 0.5], dtype=torch.float64)
    for k in range(1, 8):
        adv = maxpo_advantages(r, [0] * 9, k)
        for value in (0.0, 0.5, 1.0):
            same = adv[r == value]
            assert (same.max() - same.min()).item() < 1e-14


@pytest.mark.parametrize("fn", [maxpo_advantages, pkpo_advantages])
def test_all_equal_rewards_give_exact_zeros(fn) -> None:
    for value in (0.0, 1.0, -3.5):
        adv = fn(torch.full((16,), value), ["g"] * 16, 4)
        assert torch.equal(adv, torch.zeros(16))


def test_k1_is_rloo() -> None:
    rewards, labels, _ = _mixed_batch(2)
    adv = maxpo_advantages(rewards, labels, 1)
    for label in np.unique(labels):
        sel = torch.from_numpy(labels == label)
        r = rewards[sel]
        torch.testing.assert_close(adv[sel], r - (r.sum() - r) / (r.numel() - 1), atol=1e-14, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 8, 64, 512, 2048, 4095])
def test_n4096_finite_and_centered(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    for continuous, rewards in (
        (True, torch.rand(4096, generator=g, dtype=torch.float64)),
        (True, torch.randn(4096, generator=g, dtype=torch.float64) * 3 + 10),
        # with 2% successes and k near n every k-subset already holds a success: all advantages are exactly 0
        (False, (torch.rand(4096, generator=g) < 0.02).double()),
    ):
        adv = maxpo_advantages(rewards, [0] * 4096, k)
        assert torch.isfinite(adv).all()
        scale = adv.abs().sum().item()
        assert scale > 0 or not continuous
        assert abs(adv.sum().item()) <= 1e-9 * scale


def test_n4096_binary_matches_closed_form() -> None:
    n, k, c = 4096, 2048, 37
    r = torch.zeros(n, dtype=torch.float64)
    r[:c] = 1.0
    adv = maxpo_advantages(r, [0] * n, k)
    correct = math.comb(n - c, k) / math.comb(n - 1, k)
    wrong = math.comb(n - c - 1, k) / math.comb(n - 1, k) - math.comb(n - c - 1, k - 1) / math.comb(n - 1, k - 1)
    assert adv[0].item() == pytest.approx(correct, rel=1e-10)
    assert adv[-1].item() == pytest.approx(wrong, rel=1e-10)


# ---------------------------------------------------------------- dtypes, devices, group-id flavours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_returns_rewards_dtype_and_device(dtype: torch.dtype) -> None:
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], dtype=dtype)
    adv = maxpo_advantages(r, [0, 0, 0, 1, 1, 1], 2)
    assert adv.dtype == dtype and adv.device == r.device
    expected = maxpo_advantages(r.double(), [0, 0, 0, 1, 1, 1], 2).to(dtype)
    assert torch.equal(adv, expected)


def test_group_id_flavours_agree() -> None:
    rewards, labels, _ = _mixed_batch(3)
    reference = maxpo_advantages(rewards, labels, 4)
    codes = group_index(labels)[0]
    for ids in (
        codes,  # int64 tensor
        codes.numpy().astype(np.int32),  # numpy ints
        codes.tolist(),  # python list
        np.array([f"prompt-{c}" for c in codes.tolist()]),  # fixed-width numpy strings
        np.array([int(c) * 7 + 100 for c in codes.tolist()], dtype=object),  # object array of ints
    ):
        torch.testing.assert_close(maxpo_advantages(rewards, ids, 4), reference, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("labels", "codes", "contiguous"),
    [
        (["u", "u", "v", "v", "w", "w"], [0, 0, 1, 1, 2, 2], True),  # verl's layout: one run per label
        (["u", "u", "v", "v", "u", "u"], [0, 0, 1, 1, 0, 0], False),  # a label back after another run
        (["v", "u", "v", "u"], [0, 1, 0, 1], False),  # interleaved (balance_batch reorders samples)
        ([7, 7, 3, 3, 3], [0, 0, 1, 1, 1], True),  # unequal runs of ints
    ],
)
def test_first_appearance_codes_of_runs_and_of_returning_labels(labels, codes, contiguous: bool) -> None:
    from verl_maxpo.core.groups import _codes, group_layout

    arr = np.array(labels, dtype=object)
    got, known = _codes(arr, sort=False)
    assert got.tolist() == codes and known is contiguous
    counts, blocks = group_layout(arr, sort=False)
    assert counts.tolist() == np.bincount(codes).tolist()
    members = [None if m is None else m.tolist() for _, _, m in blocks]
    assert (members == [None]) is (contiguous and len(set(counts.tolist())) == 1)
    rewards = torch.arange(len(labels), dtype=torch.float64) ** 2
    expected = maxpo_advantages(rewards, torch.tensor(codes), 1)  # k = 1: RLOO, defined for every size here
    torch.testing.assert_close(maxpo_advantages(rewards, arr, 1), expected, atol=1e-12, rtol=0)


def test_group_index_is_contiguous_and_sorted() -> None:
    inverse, counts = group_index(np.array(["b", "a", "c", "a", "b", "b"], dtype=object))
    assert inverse.tolist() == [1, 0, 2, 0, 1, 1]
    assert counts.tolist() == [2, 3, 1]


def test_norm_by_std_scales_each_group_by_its_std() -> None:
    rewards, labels, _ = _mixed_batch(4)
    plain = maxpo_advantages(rewards, labels, 4)
    scaled = maxpo_advantages(rewards, labels, 4, norm_by_std=True, eps=1e-6)
    for label in np.unique(labels):
        sel = torch.from_numpy(labels == label)
        torch.testing.assert_close(scaled[sel], plain[sel] / (rewards[sel].std() + 1e-6), atol=1e-12, rtol=0)


def test_max_at_k_for_binary_is_the_pass_at_k_formula_and_ordered_by_label() -> None:
    # group "a": 3 correct of 10; group "b": 0 of 10; labels given out of order.
    r = torch.tensor([0.0] * 10 + [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    got = max_at_k(r, ["b"] * 10 + ["a"] * 10, 4)
    assert got.tolist() == pytest.approx([1 - math.comb(7, 4) / math.comb(10, 4), 0.0], abs=1e-12)


def test_empty_batch() -> None:
    assert maxpo_advantages(torch.zeros(0), [], 4).shape == (0,)


# ---------------------------------------------------------------- bad input: clear errors, nothing silently zeroed


def test_group_too_small_names_size_k_and_fix() -> None:
    # the type, k and the size it needs (5), the smallest size found (4): what a fix needs, not the sentence
    with pytest.raises(GroupTooSmallError, match=r"(?s)k=4.*\b5\b.*\b4\b"):
        maxpo_advantages(torch.rand(9), [0] * 5 + [1] * 4, 4)
    with pytest.raises(GroupTooSmallError, match=r"\bk\b"):
        maxpo_advantages(torch.rand(4), [0] * 4, 4)
    with pytest.raises(GroupTooSmallError, match=r"\b5\b"):
        pkpo_advantages(torch.rand(4), [0] * 4, 5)
    with pytest.raises(GroupTooSmallError, match=r"(?s)pkpo_loo.*k=4.*\b5\b"):
        pkpo_loo_advantages(torch.rand(4), [0] * 4, 4)


@pytest.mark.parametrize("bad_k", [0, -2, 2.0, 2.5, "4", None, True])
def test_bad_k(bad_k) -> None:
    with pytest.raises(ValueError, match=r"\bk\b"):
        maxpo_advantages(torch.rand(8), [0] * 8, bad_k)


def test_pkpo_needs_k_at_least_2() -> None:
    with pytest.raises(ValueError, match=r"\bk\b.*2"):
        pkpo_advantages(torch.rand(8), [0] * 8, 1)


def test_non_finite_rewards_are_counted() -> None:
    r = torch.rand(8)
    r[2], r[5], r[6] = float("nan"), float("inf"), float("-inf")
    with pytest.raises(ValueError, match=r"\b3\b.*\b8\b"):  # how many of how many
        maxpo_advantages(r, [0] * 8, 2)


def test_length_mismatch() -> None:
    with pytest.raises(ValueError, match=r"\b8\b.*\b7\b"):
        maxpo_advantages(torch.rand(8), [0] * 7, 2)


def test_float_group_ids_rejected() -> None:
    with pytest.raises(ValueError, match="group ids"):
        maxpo_advantages(torch.rand(4), np.array([0.5, 0.5, 1.5, 1.5]), 1)


# ---------------------------------------------------------------- L-statistic objectives (objective=...)


def bf_lstat(r: tuple[float, ...], k: int, f) -> np.ndarray:
    """A_i = q_i - v_-i for any symmetric objective f of k rewards, by enumeration."""
    out = []
    for i in range(len(r)):
        others = r[:i] + r[i + 1 :]
        q = np.mean([f((r[i], *s)) for s in itertools.combinations(others, k - 1)])
        v = np.mean([f(s) for s in itertools.combinations(others, k)])
        out.append(q - v)
    return np.array(out)


def f_top_m(m: int):
    return lambda s: float(np.mean(sorted(s)[-m:]))


def f_ml(s: tuple[float, ...]) -> float:
    """sum_{j<=k} max@j / j, max@j of the k draws taken as the mean over their j-subsets (not via rank weights)."""
    return sum(np.mean([max(t) for t in itertools.combinations(s, j)]) / j for j in range(1, len(s) + 1))


def f_weights(w: np.ndarray):
    return lambda s: float(np.dot(w, sorted(s)))


def objectives_for(k: int, rng: np.random.Generator) -> list[tuple[dict, object]]:
    w = rng.normal(size=k)
    cases = [({"objective": "top_m", "m": m}, f_top_m(m)) for m in range(1, k + 1)]
    return cases + [({"objective": "ml"}, f_ml), ({"objective": "weights", "rank_weights": w.tolist()}, f_weights(w))]


@pytest.mark.parametrize("n", range(2, 10))
def test_every_objective_equals_enumeration(n: int) -> None:
    rng = np.random.default_rng(97 * n)
    worst = 0.0
    for k in range(1, n):
        for options, f in objectives_for(k, rng):
            for kind, r in reward_sets(n, rng).items():
                got = maxpo_advantages(torch.tensor(r, dtype=torch.float64), [0] * n, k, **options).numpy()
                want = bf_lstat(r, k, f)
                np.testing.assert_allclose(got, want, atol=1e-12, err_msg=f"{kind} n={n} k={k} {options}")
                assert abs(got.sum()) <= 1e-9 * max(1.0, np.abs(got).sum()), "not centered"
                worst = max(worst, float(np.abs(got - want).max()))
    assert worst < 1e-12


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_objectives_in_a_mixed_batch_match_per_group_calls_and_sum_to_zero(k: int) -> None:
    rewards, labels, _ = _mixed_batch(6)
    rng = np.random.default_rng(k)
    for options, _ in objectives_for(k, rng):
        adv = maxpo_advantages(rewards, labels, k, **options)
        for label in np.unique(labels):
            sel = torch.from_numpy(labels == label)
            alone = maxpo_advantages(rewards[sel], labels[sel.numpy()], k, **options)
            torch.testing.assert_close(adv[sel], alone, atol=1e-14, rtol=0)
            assert abs(adv[sel].sum().item()) <= 1e-9 * adv[sel].abs().sum().item() + 1e-15
        assert adv.abs().max() > 1e-3


def test_m1_and_max_weights_are_todays_maxpo_bit_for_bit() -> None:
    rewards, labels, _ = _mixed_batch(7)
    for k in (1, 2, 4):
        today = maxpo_advantages(rewards, labels, k)
        assert torch.equal(maxpo_advantages(rewards, labels, k, objective="top_m", m=1), today)
        one_hot = [0.0] * (k - 1) + [1.0]
        assert torch.equal(maxpo_advantages(rewards, labels, k, objective="weights", rank_weights=one_hot), today)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_top_m_with_m_equal_k_is_rloo_over_k(k: int) -> None:
    rewards, labels, _ = _mixed_batch(8)
    adv = maxpo_advantages(rewards, labels, k, objective="top_m", m=k)
    for label in np.unique(labels):
        sel = torch.from_numpy(labels == label)
        r = rewards[sel]
        rloo = r - (r.sum() - r) / (r.numel() - 1)
        torch.testing.assert_close(adv[sel], rloo / k, atol=1e-14, rtol=0)


def test_reference_worked_check_top3_of_5() -> None:
    r = torch.tensor([0.3, 1.0, 0.0, 0.7, 0.2], dtype=torch.float64)
    got = maxpo_advantages(r, [0] * 5, 3, objective="top_m", m=3)
    want = torch.tensor([-0.058333333333, 0.233333333333, -0.183333333333, 0.108333333333, -0.1], dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=1e-11, rtol=0)


def test_ml_rank_weights_closed_form() -> None:
    from verl_maxpo.core.lstat import objective_weights

    for k in range(1, 9):
        w = objective_weights(k, "ml")
        s = tuple(np.random.default_rng(k).normal(size=k))
        assert np.dot(w, sorted(s)) == pytest.approx(f_ml(s), abs=1e-12)
        assert w == tuple(1 / (k - j + 1) for j in range(1, k + 1))


# n = 8, K = 4, one success: every objective's advantage, exactly (docs/algorithm.md shows the same table)
WORKED = [
    ({"objective": "max"}, 1.0, -1 / 7),
    ({"objective": "top_m", "m": 2}, 1 / 2, -1 / 14),
    ({"objective": "ml"}, 1.0, -1 / 7),  # one success: f(S) is 1 exactly when S holds it, as for max
    ({"objective": "weights", "rank_weights": [0.1, 0.2, 0.3, 0.4]}, 2 / 5, -2 / 35),
]


@pytest.mark.parametrize(("options", "success", "failure"), WORKED)
def test_worked_example_one_success_of_eight(options: dict, success: float, failure: float) -> None:
    r = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0], dtype=torch.float64)
    got = compute_advantages(r, ["p"] * 8, k=4, **options)
    torch.testing.assert_close(got, torch.tensor([success] + [failure] * 7, dtype=torch.float64), atol=1e-12, rtol=0)


def test_ml_differs_from_max_with_two_successes() -> None:
    r = torch.tensor([1.0, 1, 0, 0, 0, 0, 0, 0], dtype=torch.float64)
    ml = maxpo_advantages(r, [0] * 8, 4, objective="ml").numpy()
    np.testing.assert_allclose(ml, bf_lstat(tuple(r.tolist()), 4, f_ml), atol=1e-12)
    assert not np.allclose(ml, maxpo_advantages(r, [0] * 8, 4).numpy())


@pytest.mark.parametrize("objective", [{"objective": "top_m", "m": 3}, {"objective": "ml"}])
@pytest.mark.parametrize("n", [40, estimators.MATRIX_MAX_N + 1])
def test_objective_kernels_agree(objective: dict, n: int) -> None:
    g = torch.Generator().manual_seed(n)
    rewards = torch.rand(3 * n, generator=g, dtype=torch.float64)
    ids = np.repeat(np.arange(3), n)
    for k in (3, 7, n - 1):
        a = maxpo_advantages(rewards, ids, k, kernel="matrix", **objective)
        b = maxpo_advantages(rewards, ids, k, kernel="scan", **objective)
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
        assert a.abs().max() > 1e-4


@pytest.mark.parametrize("options", [{"objective": "top_m", "m": 2}, {"objective": "ml"}])
@pytest.mark.parametrize("k", [8, 64, 512])
def test_objectives_n1024_finite_and_centered(options: dict, k: int) -> None:
    rewards = torch.randn(1024, generator=torch.Generator().manual_seed(k), dtype=torch.float64) * 3 + 10
    adv = maxpo_advantages(rewards, [0] * 1024, k, **options)
    assert torch.isfinite(adv).all()
    assert abs(adv.sum().item()) <= 1e-9 * adv.abs().sum().item()


# ---------------------------------------------------------------- maxrl


def test_maxrl_formula_and_the_all_zero_group() -> None:
    r = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0] + [0.0] * 4 + [0.5, 1.0, 0.0, 0.5], dtype=torch.float64)
    ids = [0] * 8 + [1] * 4 + [2] * 4
    got = maxrl_advantages(r, ids)
    want = [(x - 1 / 8) / (1 / 8 + 1e-6) for x in r[:8].tolist()] + [0.0] * 4
    want += [(x - 0.5) / (0.5 + 1e-6) for x in r[12:].tolist()]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), atol=1e-12, rtol=0)
    assert got[0].item() == pytest.approx(7.0, rel=1e-5) and got[1].item() == pytest.approx(-1.0, rel=1e-5)
    for g in range(3):
        assert abs(got[torch.tensor(ids) == g].sum().item()) < 1e-12  # centered


def test_maxrl_refuses_negative_rewards_and_groups_of_one() -> None:
    with pytest.raises(ValueError, match=r"(?s)maxrl.*\b1\b.*\b4\b"):
        maxrl_advantages(torch.tensor([1.0, -0.5, 0.0, 1.0]), [0, 0, 1, 1])
    with pytest.raises(GroupTooSmallError, match=r"(?s)maxrl.*\b2\b.*\b1\b"):
        maxrl_advantages(torch.tensor([1.0, 0.0, 1.0]), [0, 0, 1])


def test_maxrl_through_compute_advantages_ignores_k() -> None:
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    ids = ["a"] * 3 + ["b"] * 3
    want = maxrl_advantages(r, ids)
    torch.testing.assert_close(want, torch.tensor([2.0, -1, -1, 0.5, 0.5, -1]), atol=1e-5, rtol=0)
    assert torch.equal(compute_advantages(r, ids, estimator="maxrl"), want)
    assert torch.equal(compute_advantages(r, ids, estimator="maxrl", k=2), want)


# ---------------------------------------------------------------- the public entry point


def test_compute_advantages_reads_the_table() -> None:
    rewards, labels, _ = _mixed_batch(9)
    assert torch.equal(compute_advantages(rewards, labels), maxpo_advantages(rewards, labels, 4))
    assert torch.equal(compute_advantages(rewards, labels, estimator="pkpo", k=3), pkpo_advantages(rewards, labels, 3))
    assert torch.equal(
        compute_advantages(rewards, labels, estimator="pkpo_loo", k=2, norm_by_std=True),
        pkpo_loo_advantages(rewards, labels, 2, norm_by_std=True),
    )
    assert torch.equal(
        compute_advantages(rewards, labels, k=3, objective="top_m", m=2),
        maxpo_advantages(rewards, labels, 3, objective="top_m", m=2),
    )


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"estimator": "grpo"}, "estimator must be one of maxpo, pkpo, pkpo_loo, maxrl"),
        ({"m": 2}, r"m=2 is only read with objective=top_m"),
        ({"objective": "top_m"}, r"objective=top_m needs m"),
        ({"objective": "top_m", "m": 5}, r"m must be an integer with 1 <= m <= k=4"),
        ({"objective": "top_m", "m": 2.0}, r"m must be an integer"),
        ({"objective": "weights", "rank_weights": [1.0, 2.0]}, r"rank_weights must have k=4 entries"),
        ({"objective": "weights", "rank_weights": [0, 0, float("nan"), 1]}, r"rank_weights\[2\] must be a finite"),
        ({"objective": "weights"}, r"objective=weights needs rank_weights"),
        ({"rank_weights": [0, 0, 0, 1]}, r"rank_weights is only read with objective=weights"),
        ({"objective": "mean"}, r"objective must be one of max, top_m, ml, weights"),
        ({"estimator": "pkpo", "objective": "ml"}, r"objective='ml' does not apply to pkpo.*max@K only"),
        ({"estimator": "pkpo_loo", "objective": "top_m", "m": 2}, r"does not apply to pkpo_loo"),
        ({"estimator": "maxrl", "norm_by_std": True}, r"norm_by_std=True does not apply to maxrl"),
        ({"kernel": "fast"}, r"kernel must be one of auto, matrix, scan"),
        ({"k": 0}, r"k must be an integer >= 1"),
    ],
)
def test_compute_advantages_refuses_with_the_argument_name(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        compute_advantages(torch.rand(10), [0] * 5 + [1] * 5, **kwargs)


# ---------------------------------------------------------------- against OrderGrad's definitions (arXiv 2606.06096)
# OrderGrad's L-statistic objective is J = E[sum_j alpha_j R_(j:K)] (alpha over ascending ranks; its presets such as
# "TopM:2" and "ReMax" name the top ranks). Its LR advantage is a_i = sum_j alpha_j (q_ij - v_j^(-i)), with q_ij the
# mean of the j-th smallest over the K-subsets containing i and v_j^(-i) the mean over the K-subsets of the others,
# at the same (K/N) gradient scale as ours. The reference below goes through its closed form for a batch value,
# v_j = sum_m R_(m:N) C(m-1, j-1) C(N-m, K-j) / C(N, K), and the subset count identity
# C(N, K) v_j = C(N-1, K-1) q_ij + C(N-1, K) v_j^(-i) (a K-subset either contains i or not): no enumeration, and
# none of verl_maxpo's own weights.


def _ordergrad_batch_values(r: np.ndarray, k: int) -> np.ndarray:
    """(K,) v_j: the mean over the K-subsets of `r` of their j-th smallest reward (OrderGrad's W matrix)."""
    n = r.size
    s = np.sort(r)
    w = np.array(
        [[math.comb(m - 1, j - 1) * math.comb(n - m, k - j) for j in range(1, k + 1)] for m in range(1, n + 1)],
        dtype=np.float64,
    ) / math.comb(n, k)
    return s @ w


def _ordergrad_advantages(r: np.ndarray, k: int, alpha: np.ndarray) -> np.ndarray:
    n = r.size
    v_all = _ordergrad_batch_values(r, k)
    out = np.empty(n)
    for i in range(n):
        v_minus = _ordergrad_batch_values(np.delete(r, i), k)
        q = (math.comb(n, k) * v_all - math.comb(n - 1, k) * v_minus) / math.comb(n - 1, k - 1)
        out[i] = alpha @ (q - v_minus)
    return out


_OG_REWARDS = np.array([0.3, -1.2, 2.5, 0.3, 0.9, 4.0, -0.4, 1.7])  # n = 8, one tie


@pytest.mark.parametrize(
    ("name", "kwargs", "alpha"),
    [
        ("ReMax", {}, np.array([0.0, 0.0, 0.0, 1.0])),
        ("TopM:2", {"objective": "top_m", "m": 2}, np.array([0.0, 0.0, 0.5, 0.5])),
        ("random", {"objective": "weights"}, np.array([0.7, -0.3, 1.9, 0.25])),  # signed, not normalized
    ],
)
def test_values_match_ordergrads_definitions(name: str, kwargs: dict, alpha: np.ndarray) -> None:
    k = 4
    if kwargs.get("objective") == "weights":
        kwargs = {**kwargs, "rank_weights": alpha.tolist()}
    expected = _ordergrad_advantages(_OG_REWARDS, k, alpha)
    got = maxpo_advantages(torch.tensor(_OG_REWARDS), [0] * 8, k, **kwargs).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.abs(expected).max() > 0.1 and abs(expected.sum()) < 1e-12  # a real signal that is centered
    # the reference itself, against enumeration of the K-subsets (q_ij and v_j^(-i) straight from the definition)
    i, others = 5, np.delete(_OG_REWARDS, 5)
    q = np.mean([np.sort((_OG_REWARDS[i], *s)) for s in itertools.combinations(others, k - 1)], axis=0)
    v = np.mean([np.sort(s) for s in itertools.combinations(others, k)], axis=0)
    assert alpha @ (q - v) == pytest.approx(expected[i], abs=1e-12)


def test_ordergrad_remax_value_by_hand() -> None:
    """ReMax at n = 5, K = 2 by hand: rewards 0, 0, 0, 1, 3 (sample 4 has reward 3)."""
    r = np.array([0.0, 0.0, 0.0, 1.0, 3.0])
    # q_4 = mean max over {4, j}: 3; v^(-4) = mean max over pairs of {0, 0, 0, 1}: 3/6; a_4 = 3 - 1/2
    # q_3 = mean over {3, j}: (1 + 1 + 1 + 3)/4 = 3/2; v^(-3) = pairs of {0, 0, 0, 3}: 9/6; a_3 = 0
    # q_0 = (0 + 0 + 1 + 3)/4 = 1; v^(-0) = pairs of {0, 0, 1, 3}: (0 + 1 + 3 + 1 + 3 + 3)/6 = 11/6; a_0 = -5/6
    expected = np.array([-5 / 6, -5 / 6, -5 / 6, 0.0, 2.5])
    np.testing.assert_allclose(_ordergrad_advantages(r, 2, np.array([0.0, 1.0])), expected, atol=1e-12)
    np.testing.assert_allclose(maxpo_advantages(torch.tensor(r), [0] * 5, 2).numpy(), expected, atol=1e-12)
