"""Max@K advantage estimators on a flat batch of scalar rewards: MaxPO (leave-two-out) and PKPO's two variants.

Framework-free (torch and numpy only): the verl registration lives in `verl_maxpo.verl_adapter`.
The derivation, identities and a worked example are in docs/algorithm.md; the paper is arXiv 2606.06080.

Notation for one group of n samples with rewards sorted ascending r_(1) <= ... <= r_(n), sample i at rank t:
    q_i   = mean of max over the K-subsets that contain i
          = [C(t-1, K-1) r_(t) + sum_{m>t} C(m-2, K-2) r_(m)] / C(n-1, K-1)
    v_-i  = unbiased max@K estimate from the other n-1 rewards
          = [sum_{m<t} C(m-1, K-1) r_(m) + sum_{m>t} C(m-2, K-1) r_(m)] / C(n-1, K)
    MaxPO: A_i = q_i - v_-i                      (sums to exactly zero in every group; needs n >= K+1)
    PKPO s^(loo-1), `pkpo`:     A_i = q_i - rho_{K-1}(r without i)          (>= 0, not centered; n >= K >= 2)
    PKPO s^(loo),   `pkpo_loo`: A_i = q_i - n/(n-1) rho_K(r without i)     (not centered; n >= K+1)

Every weight is a ratio of binomials, evaluated in float64 as a product of ratios <= 1 (no overflow for n in
the thousands) and applied to rewards measured from the group's best (no cancellation), so each group sums to
zero within ~1e-12 relative even at n = 4096. Cost per group: one sort plus a prefix and a suffix sum (or, for
n <= MATRIX_MAX_N, one small matmul). Weight tables depend on (n, k, estimator) only and are cached.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
import torch

from verl_maxpo.groups import GroupIds, group_layout

__all__ = [
    "GroupTooSmallError",
    "max_at_k",
    "maxpo_advantages",
    "pkpo_advantages",
    "pkpo_loo_advantages",
    "validate_k",
]


class GroupTooSmallError(ValueError):
    """A group has too few samples for the requested k (the message says which size, which k, and the fix)."""

    def __init__(self, estimator: str, k: int, smallest: int, n_bad: int, n_groups: int, needed: int):
        self.estimator, self.k, self.smallest, self.n_bad, self.needed = estimator, k, smallest, n_bad, needed
        super().__init__(
            f"{estimator} with k={k} needs at least {needed} samples per group, but {n_bad} of {n_groups} "
            f"group(s) have fewer (smallest group size: {smallest}). Sample more completions per prompt "
            f"or lower k."
        )


def validate_k(k: object, minimum: int = 1) -> int:
    """Return k as a Python int, or raise ValueError if it is not an integer >= `minimum`."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer >= {minimum}, got {k!r} ({type(k).__name__})")
    if int(k) < minimum:
        raise ValueError(f"k must be an integer >= {minimum}, got {k}")
    return int(k)


def _check_rewards(rewards: torch.Tensor, group_ids: GroupIds) -> None:
    _check_shapes(rewards, group_ids)
    finite = torch.isfinite(rewards)
    if not bool(finite.all()):
        n_bad = int((~finite).sum())
        raise ValueError(
            f"{n_bad} of {rewards.numel()} rewards are NaN or infinite; fix the reward function "
            "rather than letting them reach the advantage"
        )


def _check_shapes(rewards: torch.Tensor, group_ids: GroupIds) -> None:
    if not isinstance(rewards, torch.Tensor):
        raise TypeError(f"rewards must be a torch.Tensor, got {type(rewards).__name__}")
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D (one scalar per sample), got shape {tuple(rewards.shape)}")
    n_ids = group_ids.numel() if isinstance(group_ids, torch.Tensor) else len(group_ids)
    if n_ids != rewards.numel():
        raise ValueError(f"got {rewards.numel()} rewards but {n_ids} group ids: they must have the same length")


def _binom_ratio(top: torch.Tensor, choose: int, m: int, c: int) -> torch.Tensor:
    """C(top, choose) / C(m, c) elementwise for integer-valued `top` in [-1, m], with C(a, b) = 0 unless 0 <= b <= a.

    Written as [C(top, choose) / C(m, choose)] * [C(m, choose) / C(m, c)]. The first factor is a product of
    ratios (s - choose) / s <= 1 for s = top+1..m (a reverse cumulative product: no overflow, graceful
    underflow); the second is an exact big-integer quotient. lgamma differences of numbers near
    lgamma(4097) ~ 3e4 carry ~1e-11 relative error per weight, enough to break the zero sum beyond 1e-9 at
    n = 4096; these products stay near 1e-13.
    """
    if choose < 0:
        return torch.zeros_like(top)
    s = torch.arange(1, m + 1, dtype=torch.float64, device=top.device)
    step = ((s - choose) / s).clamp_min(0.0)  # C(s-1, choose) / C(s, choose); 0 where s <= choose
    tail = torch.ones(m + 1, dtype=torch.float64, device=top.device)
    tail[:m] = torch.flip(torch.cumprod(torch.flip(step, dims=[0]), dim=0), dims=[0])  # tail[x] = prod_{s>x} step
    scale = math.comb(m, choose) / math.comb(m, c)  # Python ints: exact, correctly rounded quotient
    valid = top >= 0
    return torch.where(valid, tail[top.clamp_min(0).long()] * scale, torch.zeros_like(top))


def _require_group_size(counts: np.ndarray, needed: int, estimator: str, k: int) -> None:
    """Raise GroupTooSmallError unless every group has at least `needed` samples (counts: host array)."""
    too_small = counts < needed
    if too_small.any():
        raise GroupTooSmallError(estimator, k, int(counts.min()), int(too_small.sum()), counts.size, needed)


def _rows(values: torch.Tensor, members: torch.Tensor | None, n: int) -> torch.Tensor:
    """values[members] for a (G, n) index matrix, through index_select; members None: contiguous rows of n."""
    if members is None:
        return values.reshape(-1, n)
    return values.index_select(0, members.reshape(-1)).view(members.shape)


def _exclusive_prefix(x: torch.Tensor) -> torch.Tensor:
    """Row-wise sum of the entries strictly left of each position."""
    out = torch.zeros_like(x)
    out[:, 1:] = torch.cumsum(x[:, :-1], dim=1)
    return out


def _exclusive_suffix(x: torch.Tensor) -> torch.Tensor:
    """Row-wise sum of the entries strictly right of each position (summed from the right: no cancellation)."""
    out = torch.zeros_like(x)
    out[:, :-1] = torch.flip(torch.cumsum(torch.flip(x[:, 1:], dims=[1]), dim=1), dims=[1])
    return out


# Group sizes up to this can use one (n, n) matrix per (n, k, estimator): a single product per size class (on
# CPU only for tiny batches, see _sorted_advantage). Otherwise prefix/suffix sums: O(n) memory and work per group.
MATRIX_MAX_N = 64
_SMALL_PRODUCT = 32768  # G * n * n below this: stay below torch's parallel grain size (see _sorted_advantage)
ESTIMATORS = ("maxpo", "pkpo", "pkpo_loo")


@functools.lru_cache(maxsize=512)
def _rank_weights(n: int, k: int, estimator: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-rank weights (each (n,) float64, CPU) of one size class; they depend on (n, k, estimator) only.

    For ascending rewards r and rank t:  q_t = own[t] r_t + sum_{m>t} above[m] r_m   and the baseline
    b_t = sum_{m<t} below_b[m] r_m + sum_{m>t} above_b[m] r_m, so that A_t = q_t - b_t.
    """
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    own = _binom_ratio(ranks - 1, k - 1, n - 1, k - 1)
    above = _binom_ratio(ranks - 2, k - 2, n - 1, k - 1) if k >= 2 else torch.zeros(n, dtype=torch.float64)
    j = k - 1 if estimator == "pkpo" else k  # the baseline is rho_j(r without i)
    factor = n / (n - 1) if estimator == "pkpo_loo" else 1.0  # PKPO's s^(loo) in our scaling (see pkpo_loo)
    below_b = factor * _binom_ratio(ranks - 1, j - 1, n - 1, j)
    above_b = factor * _binom_ratio(ranks - 2, j - 1, n - 1, j)
    return own, above, below_b, above_b


@functools.lru_cache(maxsize=512)
def _advantage_matrix(n: int, k: int, estimator: str, device: torch.device) -> torch.Tensor:
    """(n, n) float64 M with A_sorted = r_sorted @ M for one group of ascending rewards (row m: source rank)."""
    own, above, below_b, above_b = _rank_weights(n, k, estimator)
    source_above_target = torch.ones(n, n, dtype=torch.bool).tril(-1)  # [m, t]: m > t
    matrix = torch.diag(own)
    matrix += torch.where(source_above_target, (above - above_b).unsqueeze(1), 0.0)
    matrix -= torch.where(source_above_target.T, below_b.unsqueeze(1), 0.0)
    return matrix.to(device)


@functools.lru_cache(maxsize=512)
def _device_weights(n: int, k: int, estimator: str, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(own, above - above_b, below_b) of `_rank_weights` on `device`."""
    own, above, below_b, above_b = _rank_weights(n, k, estimator)
    return own.to(device), (above - above_b).to(device), below_b.to(device)


def _sorted_advantage(r_sorted: torch.Tensor, k: int, estimator: str) -> torch.Tensor:
    """Advantages (G, n) of rows of ascending float64 rewards (G, n), in the same (sorted) order."""
    n = r_sorted.shape[1]
    # Every estimator is a difference of subset averages. Measuring rewards from the group's best makes a group of
    # equal rewards exactly zero, and zeroes the top ranks, where large-k weights concentrate, so the difference no
    # longer cancels two numbers near r_max (at n = 4096 this took the zero-sum error from 1e-5 to 1e-9 relative;
    # exact weights did the rest).
    best = r_sorted[:, -1:]
    shifted = r_sorted - best
    on_cpu = shifted.device.type == "cpu"
    if n <= MATRIX_MAX_N and (not on_cpu or shifted.shape[0] * n * n < _SMALL_PRODUCT):
        matrix = _advantage_matrix(n, k, estimator, r_sorted.device)
        # On CPU a broadcast multiply and sum, which torch runs on one thread at this size. A float64 matmul goes
        # to the BLAS, and any op big enough to run on several threads costs a scheduler tick per thread when the
        # CPU is busy: at load 7 on 2 cores we measured 32 ms for such a product where this takes microseconds.
        a = shifted @ matrix if not on_cpu else (shifted.unsqueeze(-1) * matrix).sum(1)
    else:
        # O(n) per group: prefix and suffix sums over (G, n), small enough per op to stay single-threaded for
        # batches up to tens of thousands of samples.
        own, above_minus_above_b, below_b = _device_weights(n, k, estimator, r_sorted.device)
        a = own * shifted + _exclusive_suffix(above_minus_above_b * shifted) - _exclusive_prefix(below_b * shifted)
    if estimator == "pkpo_loo":  # the only one of the three that a shift of the rewards changes: by -shift/(n-1)
        a = a - best / (n - 1)
    return a


def _grouped_advantage(
    rewards: torch.Tensor,
    group_ids: GroupIds,
    k: int,
    estimator: str,
    norm_by_std: bool,
    eps: float,
) -> torch.Tensor:
    _check_shapes(rewards, group_ids)
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.float32
    if rewards.numel() == 0:
        return torch.zeros(0, dtype=out_dtype, device=rewards.device)
    counts, blocks = group_layout(group_ids, device=rewards.device, sort=False)
    _require_group_size(counts, k if estimator == "pkpo" else k + 1, estimator, k)

    r64 = rewards.to(torch.float64)
    adv = torch.empty(r64.shape, dtype=torch.float64, device=r64.device)  # contiguous even for a strided input
    for n, _, members in blocks:
        # index_select/index_copy_ rather than advanced indexing: same result, far less slowdown on a busy CPU.
        r_sorted, perm = torch.sort(_rows(r64, members, n), dim=1)  # ties: any order gives the same values
        a = _sorted_advantage(r_sorted, k, estimator)
        if norm_by_std:
            a = a / (r_sorted.std(dim=1, keepdim=True) + eps)
        if members is None:  # contiguous groups: write each row back through the sort permutation alone
            adv.view(-1, n).scatter_(1, perm, a)
        else:
            adv.index_copy_(0, torch.gather(members, 1, perm).reshape(-1), a.reshape(-1))
    # A NaN or infinite reward always reaches the sum (as NaN or inf), so one reduction on the output replaces a
    # separate pass over the input; only then are the bad rewards counted for the message.
    if not math.isfinite(adv.sum().item()):
        _check_rewards(rewards, group_ids)
    return adv.to(out_dtype)


def maxpo_advantages(
    rewards: torch.Tensor,
    group_ids: GroupIds,
    k: int,
    *,
    norm_by_std: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """MaxPO advantage A_i = q_i - v_-i of every sample within its group (arXiv 2606.06080).

    Unbiased for the max@k policy gradient with the (k/n) factor, and exactly centered: each group sums to 0.
    k = 1 reduces to RLOO (r_i minus the mean of the others).

    Args:
        rewards: (N,) scalar reward per sample, any float dtype, any device.
        group_ids: (N,) group label per sample (uuid strings, ints or a tensor); groups may differ in size.
        k: the k of max@k, 1 <= k <= n-1 for every group size n.
        norm_by_std: divide each group's advantages by its reward std + eps (GRPO-like scale; biased across
            prompts, so off by default).
        eps: added to the std when `norm_by_std` is set.

    Returns:
        (N,) advantages in the rewards' dtype (float32 for integer rewards) on the rewards' device.

    Raises:
        ValueError: k not an integer >= 1, NaN/inf rewards, mismatched lengths, or a group with n <= k
            (`GroupTooSmallError`).
    """
    k = validate_k(k, 1)
    return _grouped_advantage(rewards, group_ids, k, "maxpo", norm_by_std, eps)


def pkpo_advantages(
    rewards: torch.Tensor,
    group_ids: GroupIds,
    k: int,
    *,
    norm_by_std: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """PKPO's non-centered max@k advantage (Walder & Karkhanis 2025, s^(loo-1)): q_i - rho_{k-1}(r without i).

    Unbiased at the same scale as MaxPO, but every advantage is >= 0 and groups do not sum to zero. At k = n it
    gives only the best sample r_max - r_second (verl's `grpo_passk` without std scaling).

    Args and returns as in `maxpo_advantages`, except that k >= 2 and groups need n >= k.
    """
    k = validate_k(k, 2)
    return _grouped_advantage(rewards, group_ids, k, "pkpo", norm_by_std, eps)


def pkpo_loo_advantages(
    rewards: torch.Tensor,
    group_ids: GroupIds,
    k: int,
    *,
    norm_by_std: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """PKPO's leave-one-out variant s^(loo) (Walder & Karkhanis 2025, arXiv 2505.15201), in our scaling:
    A_i = q_i - n/(n-1) * rho_k(r without i).

    PKPO subtracts from sample i's effective reward the mean effective reward of the other n-1 samples, each
    recomputed on the group without i; that mean is (k/(n-1)) rho_k(r without i), and multiplying by n/k (our
    convention: the gradient carries the factor k/n) gives the formula above. Unbiased at MaxPO's scale, but not
    centered (a group sums to -n/(n-1) rho_k(r)) and, unlike maxpo and pkpo, not invariant to a constant shift
    of the rewards (each advantage moves by -shift/(n-1)).

    Args and returns as in `maxpo_advantages`: k >= 1 and every group needs n >= k+1.
    """
    k = validate_k(k, 1)
    return _grouped_advantage(rewards, group_ids, k, "pkpo_loo", norm_by_std, eps)


def max_at_k(rewards: torch.Tensor, group_ids: GroupIds, k: int) -> torch.Tensor:
    """Unbiased max@k of each group: the mean, over all k-subsets of its n samples, of the subset's best reward.

    For 0/1 rewards this is the standard unbiased pass@k estimator 1 - C(n-c, k) / C(n, k).

    Args:
        rewards: (N,) scalar rewards.
        group_ids: (N,) group labels; every group needs n >= k samples.
        k: integer >= 1.

    Returns:
        (G,) float64 on the rewards' device, one value per group, in the order of `groups.group_index`
        (sorted labels).
    """
    k = validate_k(k, 1)
    _check_rewards(rewards, group_ids)
    if rewards.numel() == 0:
        return torch.zeros(0, dtype=torch.float64, device=rewards.device)
    counts, blocks = group_layout(group_ids, device=rewards.device, sort=True)
    _require_group_size(counts, k, "max@k", k)
    r64 = rewards.to(torch.float64)
    out = torch.zeros(counts.size, dtype=torch.float64, device=rewards.device)
    for n, groups, members in blocks:
        r_sorted, _ = torch.sort(_rows(r64, members, n), dim=1)
        out[torch.from_numpy(groups).to(out.device)] = r_sorted @ _max_at_k_weights(n, k, r64.device)
    return out


@functools.lru_cache(maxsize=512)
def _max_at_k_weights(n: int, k: int, device: torch.device) -> torch.Tensor:
    """(n,) weights C(t-1, k-1) / C(n, k) of the ascending rewards in rho_k."""
    return _binom_ratio(torch.arange(0, n, dtype=torch.float64), k - 1, n, k).to(device)
