"""K-sample objectives that are L-statistics, and the per-rank weights of their unbiased estimates.

Framework-free (torch for the arithmetic, no verl). An objective of K draws is f(S) = sum_j w_j s_(j) with
s_(1) <= ... <= s_(K) the sorted rewards of the draws; `objective_weights` turns the named objectives into w.
`order_stat_weights(N, K, w)` gives the weight h[s] of the s-th smallest of N rewards in the mean of f over all
K-subsets: h[s] = sum_j w_j P(s, j), P(s, j) = C(s-1, j-1) C(N-s, K-j) / C(N, K) the chance that a random K-subset
holds rank s at position j. MaxPO's q_i and v_-i are built from three such vectors (see docs/algorithm.md).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping, Sequence, Set

import torch

__all__ = ["OBJECTIVES", "is_max", "objective_weights", "order_stat_weights"]

OBJECTIVES = ("max", "top_m", "ml", "weights")


def objective_weights(
    k: int,
    objective: str = "max",
    m: int | None = None,
    rank_weights: Sequence[float] | None = None,
    prefix: str = "",
) -> tuple[float, ...]:
    """The rank weights w_1..w_k (ascending order statistics of k draws) of a named objective.

    Args:
        k: number of draws (already validated, >= 1).
        objective: "max" (w = (0, .., 0, 1)), "top_m" (mean of the best m: w_j = 1/m for j > k-m), "ml"
            (sum_{j<=k} max@j / j, which is w_j = 1/(k-j+1)) or "weights" (`rank_weights` as given).
        m: only with "top_m", an integer 1 <= m <= k.
        rank_weights: only with "weights", k finite numbers.
        prefix: put before option names in error messages (e.g. "algorithm.maxpo.").

    Raises:
        ValueError: naming the option that does not fit.
    """
    if not isinstance(objective, str) or objective not in OBJECTIVES:
        raise ValueError(f"{prefix}objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if m is not None and objective != "top_m":
        raise ValueError(f"{prefix}m={m!r} is only read with {prefix}objective=top_m (objective is {objective!r})")
    if rank_weights is not None and objective != "weights":
        raise ValueError(
            f"{prefix}rank_weights is only read with {prefix}objective=weights (objective is {objective!r})"
        )
    if objective == "max":
        return (0.0,) * (k - 1) + (1.0,)
    if objective == "top_m":
        if m is None:
            raise ValueError(f"{prefix}objective=top_m needs {prefix}m, an integer with 1 <= m <= k={k}")
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 1 <= int(m) <= k:
            raise ValueError(f"{prefix}m must be an integer with 1 <= m <= k={k}, got {m!r}")
        return (0.0,) * (k - int(m)) + (1.0 / int(m),) * int(m)
    if objective == "ml":
        return tuple(1.0 / (k - j + 1) for j in range(1, k + 1))
    return _checked_rank_weights(rank_weights, k, prefix)


def _checked_rank_weights(rank_weights: object, k: int, prefix: str) -> tuple[float, ...]:
    if rank_weights is None:
        raise ValueError(f"{prefix}objective=weights needs {prefix}rank_weights, a list of k={k} finite numbers")
    if isinstance(rank_weights, (str, bytes, Mapping, Set)):  # a dict or set has no rank order
        raise ValueError(f"{prefix}rank_weights must be a list of k={k} finite numbers, got {rank_weights!r}")
    if not isinstance(rank_weights, Sequence):
        try:
            rank_weights = list(rank_weights)  # OmegaConf ListConfig, numpy/torch 1-D arrays
        except TypeError:
            raise ValueError(
                f"{prefix}rank_weights must be a list of k={k} finite numbers, got {rank_weights!r}"
            ) from None
    values = list(rank_weights)
    if len(values) != k:
        raise ValueError(f"{prefix}rank_weights must have k={k} entries (one per rank, ascending), got {len(values)}")
    out = []
    for j, x in enumerate(values):
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
            raise ValueError(f"{prefix}rank_weights[{j}] must be a finite number, got {x!r}")
        out.append(float(x))
    return tuple(out)


def is_max(w: tuple[float, ...]) -> bool:
    """Whether w is max@K's (0, ..., 0, 1): those go through the max@K weights, bit for bit."""
    return w[-1] == 1.0 and not any(w[:-1])


_COLUMN_CHUNK = 256  # columns of P per block: bounds the (N, chunk) temporaries at n in the thousands


@functools.lru_cache(maxsize=512)
def order_stat_weights(n_pool: int, k: int, w: tuple[float, ...]) -> torch.Tensor:
    """(n_pool,) float64 h with mean_{K-subsets S} f(S) = sum_s h[s] r_(s) for ascending r of n_pool rewards.

    h[s] = sum_j w_j C(s-1, j-1) C(N-s, K-j) / C(N, K). Each column j of P is evaluated in log space (lgamma,
    float64) and renormalized to sum to exactly 1 (it does in exact arithmetic), which removes the error common to
    the column; what remains is ~1e-12 relative per weight at N = 4096. An empty w (K = 0) gives zeros.
    """
    out = torch.zeros(n_pool, dtype=torch.float64)
    if k == 0 or n_pool == 0:
        return out
    s = torch.arange(1, n_pool + 1, dtype=torch.float64).unsqueeze(1)  # ranks, (N, 1)
    cols = [j for j in range(1, k + 1) if w[j - 1] != 0.0]
    for start in range(0, len(cols), _COLUMN_CHUNK):
        j = torch.tensor(cols[start : start + _COLUMN_CHUNK], dtype=torch.float64).unsqueeze(0)  # (1, c)
        below, above = s - 1, n_pool - s  # ranks below / above s
        valid = (below >= j - 1) & (above >= k - j)
        logp = _log_comb(below, j - 1) + _log_comb(above, k - j) - _log_comb(torch.tensor(float(n_pool)), float(k))
        p = torch.where(valid, torch.exp(torch.where(valid, logp, 0.0)), 0.0)
        p = p / p.sum(dim=0, keepdim=True)
        weights = torch.tensor([w[c - 1] for c in cols[start : start + _COLUMN_CHUNK]], dtype=torch.float64)
        out += p @ weights
    return out


def _log_comb(a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """log C(a, b) for 0 <= b <= a (elementwise; garbage elsewhere, masked by the caller)."""
    b = torch.as_tensor(b, dtype=torch.float64)
    return torch.lgamma(a + 1) - torch.lgamma(b + 1) - torch.lgamma((a - b).clamp_min(0) + 1)
