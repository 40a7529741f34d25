"""Advantage estimators on a flat batch of scalar rewards: MaxPO (leave-two-out, for max@K and any L-statistic
objective of K draws), PKPO's two max@K variants and MaxRL.

Framework-free (torch and numpy only): the verl registration lives in `verl_maxpo.integration.adapter`, the registry of
names in `verl_maxpo.core.table`. The derivation, identities and worked examples are in docs/algorithm.md;
the paper is arXiv 2606.06080.

Notation for one group of n samples with rewards sorted ascending r_(1) <= ... <= r_(n), sample i at rank t, and
an objective f of K draws:
    q_i   = mean of f over the K-subsets that contain i
    v_-i  = mean of f over the K-subsets of the other n-1 samples (f's unbiased estimate without sample i)
    MaxPO: A_i = q_i - v_-i                      (sums to exactly zero in every group; needs n >= K+1)
    PKPO s^(loo-1), `pkpo`:     A_i = q_i - rho_{K-1}(r without i)          (max@K; >= 0, not centered; n >= K >= 2)
    PKPO s^(loo),   `pkpo_loo`: A_i = q_i - n/(n-1) rho_K(r without i)     (max@K; not centered; n >= K+1)
For max@K, q_i = [C(t-1, K-1) r_(t) + sum_{m>t} C(m-2, K-2) r_(m)] / C(n-1, K-1) and
v_-i = [sum_{m<t} C(m-1, K-1) r_(m) + sum_{m>t} C(m-2, K-1) r_(m)] / C(n-1, K). For an L-statistic
f(S) = sum_j w_j s_(j) both are still one weight per rank for the sample itself, one per rank below it and one per
rank above it (`verl_maxpo.core.lstat`), so every objective runs the same kernel.

max@K weights are ratios of binomials, evaluated in float64 as products of ratios <= 1 (no overflow for n in the
thousands); other objectives' weights come from log-binomials renormalized per rank position. Both are applied to
rewards measured from the group's best (no cancellation), so each group sums to zero within ~1e-12 relative for
max@K even at n = 4096. Cost per group: one sort plus a prefix and a suffix sum (or, for n <= MATRIX_MAX_N, one
small product). Weight tables depend on (n, k, the spec's baseline rule, objective) only and are cached.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from verl_maxpo.core.groups import GroupIds, group_layout
from verl_maxpo.core.lstat import order_stat_weights
from verl_maxpo.core.table import ESTIMATORS, EstimatorSpec, MaxPOOptions, validate_k

__all__ = [
    "GroupTooSmallError",
    "max_at_k",
    "run_estimator",
    "validate_k",
    *(spec.function_name for spec in ESTIMATORS.values()),
]


class GroupTooSmallError(ValueError):
    """A group has too few samples for the requested k (the message says which size, which k, and the fix)."""

    def __init__(self, estimator: str, k: int | None, smallest: int, n_bad: int, n_groups: int, needed: int):
        self.estimator, self.k, self.smallest, self.n_bad, self.needed = estimator, k, smallest, n_bad, needed
        who = estimator if k is None else f"{estimator} with k={k}"
        super().__init__(
            f"{who} needs at least {needed} samples per group, but {n_bad} of {n_groups} "
            f"group(s) have fewer (smallest group size: {smallest}). Sample more completions per prompt"
            + (" or lower k." if k is not None else ".")
        )


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
    if rewards.is_complex():
        raise ValueError(f"rewards must be real, got a {rewards.dtype} tensor (its imaginary part would be dropped)")
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D (one scalar per sample), got shape {tuple(rewards.shape)}")
    if not isinstance(group_ids, (torch.Tensor, np.ndarray, list, tuple)):
        raise ValueError(
            f"group ids must be a 1-D numpy array, list or tensor of labels, got {type(group_ids).__name__}"
        )
    if isinstance(group_ids, (torch.Tensor, np.ndarray)) and group_ids.ndim != 1:
        raise ValueError(f"group ids must be 1-D (one label per sample), got shape {tuple(group_ids.shape)}")
    n_ids = len(group_ids)
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


def _require_group_size(counts: np.ndarray, needed: int, estimator: str, k: int | None) -> None:
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


# Group sizes up to this can use one (n, n) matrix per (n, k, baseline rule, objective): one product per size class
# (with kernel="auto", on CPU only for tiny batches, see _use_matrix). Otherwise prefix/suffix sums ("scan"): O(n)
# memory and work per group.
MATRIX_MAX_N = 64
_SMALL_PRODUCT = 32768  # G * n * n below this: stay below torch's parallel grain size (see _use_matrix)


# A baseline rule of the estimator table: (draws, scaled), see EstimatorSpec.baseline_draws and baseline_scaled.
Baseline = tuple[int, bool]


@functools.lru_cache(maxsize=512)
def _rank_weights(
    n: int, k: int, baseline: Baseline, w: tuple[float, ...] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-rank weights (own, above, below), each (n,) float64 on CPU, of one size class and objective.

    For ascending rewards r and rank t:  A_t = own[t] r_t + sum_{m>t} above[m] r_m - sum_{m<t} below[m] r_m.
    `w` None is max@K, with the baseline rho_{k+draws}(r without i), times n/(n-1) when scaled; otherwise the
    L-statistic rank weights w with MaxPO's baseline (the table allows objectives only there).
    """
    if w is not None:
        return _lstat_rank_weights(n, k, w)
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    own = _binom_ratio(ranks - 1, k - 1, n - 1, k - 1)
    above = _binom_ratio(ranks - 2, k - 2, n - 1, k - 1) if k >= 2 else torch.zeros(n, dtype=torch.float64)
    draws, scaled = baseline
    j = k + draws  # the baseline is rho_j(r without i)
    factor = n / (n - 1) if scaled else 1.0  # PKPO's s^(loo) in our scaling (see pkpo_loo)
    below_b = factor * _binom_ratio(ranks - 1, j - 1, n - 1, j)
    above_b = factor * _binom_ratio(ranks - 2, j - 1, n - 1, j)
    return own, above - above_b, below_b


def _lstat_rank_weights(n: int, k: int, w: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(own, above, below) of A = q - v for the objective f(S) = sum_j w_j s_(j) (derivation: docs/algorithm.md).

    With h(N, K, w) the weights of the ascending rewards in the mean of f over the K-subsets of N rewards:
      own[t]     = (n/k) h(n, k, w)[t]                  (t at position j of a k-subset containing it)
      q, m < t:  h(n-1, k-1, w_1..w_{k-1})[m]           (the others of the subset: rank m among the n-1 others)
      q, m > t:  h(n-1, k-1, w_2..w_k)[m-1]             (t sits below m, so m's position shifts by one)
      v, m < t:  h(n-1, k, w)[m];  v, m > t: h(n-1, k, w)[m-1]
    """
    zero = torch.zeros(1, dtype=torch.float64)
    own = (n / k) * order_stat_weights(n, k, w)
    v = order_stat_weights(n - 1, k, w)
    q_low = order_stat_weights(n - 1, k - 1, w[:-1])
    q_high = order_stat_weights(n - 1, k - 1, w[1:])
    above = torch.cat([zero, q_high - v])  # index m-1 of the (n-1) pool for rank m >= 2
    below = torch.cat([v - q_low, zero])  # index m for rank m <= n-1
    return own, above, below


@functools.lru_cache(maxsize=512)
def _advantage_matrix(
    n: int, k: int, baseline: Baseline, w: tuple[float, ...] | None, device: torch.device
) -> torch.Tensor:
    """(n, n) float64 M with A_sorted = r_sorted @ M for one group of ascending rewards (row m: source rank)."""
    own, above, below = _rank_weights(n, k, baseline, w)
    source_above_target = torch.ones(n, n, dtype=torch.bool).tril(-1)  # [m, t]: m > t
    matrix = torch.diag(own)
    matrix += torch.where(source_above_target, above.unsqueeze(1), 0.0)
    matrix -= torch.where(source_above_target.T, below.unsqueeze(1), 0.0)
    return matrix.to(device)


@functools.lru_cache(maxsize=512)
def _device_weights(
    n: int, k: int, baseline: Baseline, w: tuple[float, ...] | None, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """`_rank_weights` on `device`."""
    return tuple(x.to(device) for x in _rank_weights(n, k, baseline, w))


def _use_matrix(kernel: str, groups: int, n: int, device: torch.device) -> bool:
    """kernel="auto": the matrix for n <= MATRIX_MAX_N, on CPU only while G * n * n < _SMALL_PRODUCT.

    On CPU the product is a broadcast multiply and sum, which torch runs on one thread at that size; anything big
    enough to run on several threads can wait a scheduler tick per thread when the CPU is busy (docs/bench.md,
    "Reading CPU numbers on a shared machine"), so larger CPU batches take the scan.
    """
    if kernel != "auto":
        return kernel == "matrix"
    return n <= MATRIX_MAX_N and (device.type != "cpu" or groups * n * n < _SMALL_PRODUCT)


def _sorted_advantage(
    r_sorted: torch.Tensor, k: int, baseline: Baseline, w: tuple[float, ...] | None, kernel: str
) -> torch.Tensor:
    """Advantages (G, n) of rows of ascending float64 rewards (G, n), in the same (sorted) order."""
    n = r_sorted.shape[1]
    # Every estimator is a difference of subset averages, and for an L-statistic a constant shift moves q_i and
    # v_-i alike. Measuring rewards from the group's best makes a group of equal rewards exactly zero, and zeroes
    # the top ranks, where large-k weights concentrate, so the difference no longer cancels two numbers near r_max
    # (at n = 4096 this took the zero-sum error from 1e-5 to 1e-9 relative; exact weights did the rest).
    best = r_sorted[:, -1:]
    shifted = r_sorted - best
    if _use_matrix(kernel, shifted.shape[0], n, shifted.device):
        matrix = _advantage_matrix(n, k, baseline, w, r_sorted.device)
        on_cpu = shifted.device.type == "cpu"  # see _use_matrix: on CPU a single-threaded multiply and sum
        a = shifted @ matrix if not on_cpu else (shifted.unsqueeze(-1) * matrix).sum(1)
    else:
        own, above, below = _device_weights(n, k, baseline, w, r_sorted.device)
        a = own * shifted + _exclusive_suffix(above * shifted) - _exclusive_prefix(below * shifted)
    if baseline[1]:  # a scaled baseline is the only one that a shift of the rewards changes: by -shift/(n-1)
        a = a - best / (n - 1)
    return a


def _maxrl_rows(rows: torch.Tensor, eps: float) -> torch.Tensor:
    """MaxRL (arXiv 2602.02710) on (G, n) float64 rows: (r - mean) / (mean + eps), 0 for a group of zeros."""
    mean = rows.mean(dim=1, keepdim=True)
    # Rewards are >= 0 here (the table's reward floor), so mean == 0 is a group of zeros; a NaN or inf reward
    # makes the row non-finite, and the output check refuses it instead of zeroing the group.
    return torch.where(mean == 0, 0.0, (rows - mean) / (mean + eps))


def run_estimator(
    spec: EstimatorSpec | str,
    rewards: torch.Tensor,
    group_ids: GroupIds,
    options: MaxPOOptions,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Advantages of one table estimator: the one function every caller goes through (the public functions below,
    `compute_advantages`, the verl adapter, the variance map, bench and the CUDA check).

    `options` are trusted as parsed by `MaxPOOptions.parse` for this estimator; the rules (group size, kernel,
    baseline, reward floor) come from the spec, so nothing here depends on an estimator's name.
    """
    if isinstance(spec, str):
        spec = ESTIMATORS[spec]
    _check_shapes(rewards, group_ids)
    if spec.reward_floor is not None:
        below = rewards < spec.reward_floor
        if bool(below.any()):
            raise ValueError(
                f"{spec.name} is defined for success rewards >= {spec.reward_floor:g}, but {int(below.sum())} of "
                f"{rewards.numel()} rewards are negative (smallest {rewards.min().item():.3g}); "
                "use maxpo with objective=ml for general rewards"
            )
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.float32
    if rewards.numel() == 0:
        return torch.zeros(0, dtype=out_dtype, device=rewards.device)
    k = options.k
    counts, blocks = group_layout(group_ids, device=rewards.device, sort=False)
    _require_group_size(counts, spec.min_group_size(k), spec.name, k if spec.reads_k else None)

    r64 = rewards.to(torch.float64)
    adv = torch.empty(r64.shape, dtype=torch.float64, device=r64.device)  # contiguous even for a strided input
    order_stat = spec.kernel == "order_stat"
    baseline = (spec.baseline_draws, spec.baseline_scaled)
    w = options.lstat_weights if "objective" in spec.options else None
    norm_by_std = options.norm_by_std and "norm_by_std" in spec.options
    for n, _, members in blocks:
        # index_select/index_copy_ rather than advanced indexing: same result, far less slowdown on a busy CPU.
        rows = _rows(r64, members, n)
        if not order_stat:  # mean_ratio needs no sort: write the rows back where they came from
            a = _maxrl_rows(rows, eps)
            if members is None:
                adv.view(-1, n).copy_(a)
            else:
                adv.index_copy_(0, members.reshape(-1), a.reshape(-1))
            continue
        r_sorted, perm = torch.sort(rows, dim=1)  # ties: any order gives the same values
        a = _sorted_advantage(r_sorted, k, baseline, w, options.kernel)
        if norm_by_std:
            a = a / (r_sorted.std(dim=1, keepdim=True) + eps)
        if members is None:  # contiguous groups: write each row back through the sort permutation alone
            adv.view(-1, n).scatter_(1, perm, a)
        else:
            adv.index_copy_(0, torch.gather(members, 1, perm).reshape(-1), a.reshape(-1))
    return _checked_output(adv, rewards, group_ids, out_dtype)


def _checked_output(adv: torch.Tensor, rewards: torch.Tensor, group_ids: GroupIds, dtype: torch.dtype) -> torch.Tensor:
    """adv cast to `dtype`, or ValueError: a NaN/inf reward, or finite rewards whose advantages overflow.

    One reduction on the cast output replaces a pass over the input: NaN, inf and a value that overflows the cast
    all make its sum non-finite (so does a sum of huge finite values, which the exact check below then clears).
    """
    out = adv.to(dtype)
    if math.isfinite(out.sum().item()):
        return out
    largest = adv.abs().max().item()
    if not math.isfinite(largest):
        _check_rewards(rewards, group_ids)  # raises, counting the bad rewards, when the input is the cause
        raise ValueError(
            "advantages overflow float64: the rewards span too large a range (largest |reward| "
            f"{rewards.abs().max().item():.3g}); rescale the reward function"
        )
    limit = torch.finfo(dtype).max
    if largest > limit:
        raise ValueError(
            f"advantages overflow {str(dtype).removeprefix('torch.')} (largest |advantage| {largest:.3g}, dtype "
            f"maximum {limit:.3g}); rescale the rewards or pass them in a wider dtype"
        )
    return out


def _options(estimator: str, **block: object) -> MaxPOOptions:
    """The public functions' keyword options, parsed once by the table's one parser (errors name the argument)."""
    return MaxPOOptions.parse(block, estimator, prefix="")


def maxpo_advantages(
    rewards: torch.Tensor,
    group_ids: GroupIds,
    k: int,
    *,
    objective: str = "max",
    m: int | None = None,
    rank_weights: Sequence[float] | None = None,
    norm_by_std: bool = False,
    eps: float = 1e-6,
    kernel: str = "auto",
) -> torch.Tensor:
    """MaxPO advantage A_i = q_i - v_-i of every sample within its group (arXiv 2606.06080).

    q_i is the mean of the objective over the k-subsets that contain sample i, v_-i its mean over the k-subsets of
    the other n-1 samples. Unbiased for the objective's policy gradient with the (k/n) factor, and exactly
    centered: each group sums to 0. For max@k, k = 1 reduces to RLOO (r_i minus the mean of the others).

    Args:
        rewards: (N,) scalar reward per sample, any real dtype, any device.
        group_ids: (N,) group label per sample (uuid strings, ints or a tensor); groups may differ in size.
        k: the number of draws of the objective, 1 <= k <= n-1 for every group size n.
        objective: "max" (max@k), "top_m" (mean of the best m of the k draws; m = k gives RLOO / k), "ml"
            (sum_{j<=k} max@j / j: for 0/1 rewards the log-likelihood of success truncated at order k) or
            "weights" (sum_j rank_weights[j] * (j-th smallest of the k draws)).
        m: with objective="top_m" only, 1 <= m <= k (m = 1 is max@k).
        rank_weights: with objective="weights" only, k finite numbers for the ascending order statistics.
        norm_by_std: divide each group's advantages by its reward std + eps (GRPO-like scale; biased across
            prompts, so off by default).
        eps: added to the std when `norm_by_std` is set.
        kernel: "matrix" (one (n, n) product per group size), "scan" (prefix/suffix sums, O(n) per group) or
            "auto": the matrix for n <= 64 (on CPU only while groups * n * n < 32768), else the scan. Same values.

    Returns:
        (N,) advantages in the rewards' dtype (float32 for integer rewards) on the rewards' device.

    Raises:
        ValueError: k not an integer >= 1, an option that does not fit the objective, NaN/inf rewards,
            advantages that overflow the dtype, bad group ids, or a group with n <= k (`GroupTooSmallError`).
    """
    options = _options(
        "maxpo", k=k, objective=objective, m=m, rank_weights=rank_weights, norm_by_std=norm_by_std, kernel=kernel
    )
    return run_estimator("maxpo", rewards, group_ids, options, eps)


def pkpo_advantages(
    rewards: torch.Tensor,
    group_ids: GroupIds,
    k: int,
    *,
    norm_by_std: bool = False,
    eps: float = 1e-6,
    kernel: str = "auto",
) -> torch.Tensor:
    """PKPO's non-centered max@k advantage (Walder & Karkhanis 2025, s^(loo-1)): q_i - rho_{k-1}(r without i).

    Unbiased at the same scale as MaxPO, but every advantage is >= 0 and groups do not sum to zero. At k = n it
    gives only the best sample r_max - r_second (verl's `grpo_passk` without std scaling). Defined for max@k only.

    Args and returns as in `maxpo_advantages`, except that k >= 2 and groups need n >= k.
    """
    return run_estimator("pkpo", rewards, group_ids, _options("pkpo", k=k, norm_by_std=norm_by_std, kernel=kernel), eps)


def pkpo_loo_advantages(
    rewards: torch.Tensor,
    group_ids: GroupIds,
    k: int,
    *,
    norm_by_std: bool = False,
    eps: float = 1e-6,
    kernel: str = "auto",
) -> torch.Tensor:
    """PKPO's leave-one-out variant s^(loo) (Walder & Karkhanis 2025, arXiv 2505.15201), in our scaling:
    A_i = q_i - n/(n-1) * rho_k(r without i).

    PKPO subtracts from sample i's effective reward the mean effective reward of the other n-1 samples, each
    recomputed on the group without i; that mean is (k/(n-1)) rho_k(r without i), and multiplying by n/k (our
    convention: the gradient carries the factor k/n) gives the formula above. Unbiased at MaxPO's scale, but not
    centered (a group sums to -n/(n-1) rho_k(r)) and, unlike maxpo and pkpo, not invariant to a constant shift
    of the rewards (each advantage moves by -shift/(n-1)). Defined for max@k only.

    Args and returns as in `maxpo_advantages`: k >= 1 and every group needs n >= k+1.
    """
    options = _options("pkpo_loo", k=k, norm_by_std=norm_by_std, kernel=kernel)
    return run_estimator("pkpo_loo", rewards, group_ids, options, eps)


def maxrl_advantages(rewards: torch.Tensor, group_ids: GroupIds, *, eps: float = 1e-6) -> torch.Tensor:
    """MaxRL's advantage as published (arXiv 2602.02710): A_i = (r_i - mean_g) / (mean_g + eps).

    A group whose rewards are all 0 gets 0. Defined for success rewards, so a negative reward is refused. Each
    group sums to zero (centered), but dividing by the sample mean makes it unbiased for no fixed objective; see
    `maxpo_advantages(objective="ml")` for the unbiased estimate of the truncated log-likelihood it targets.

    Args:
        rewards: (N,) rewards >= 0 (pass/fail: 0/1), any real dtype, any device.
        group_ids: (N,) group labels; every group needs n >= 2 samples.
        eps: added to the group mean in the denominator (the paper's 1e-6).

    Returns:
        (N,) advantages in the rewards' dtype (float32 for integer rewards).
    """
    return run_estimator("maxrl", rewards, group_ids, _options("maxrl"), eps)


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
