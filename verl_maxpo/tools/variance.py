"""`verl-maxpo variance`: the exact relative gradient variance of max@K advantage estimators, one prompt at a time.

The model (docs/when-to-use.md has the derivation): one prompt, n i.i.d. samples. A sample's reward is
r = l/T where l ~ Binomial(T, p) (T = 1: pass/fail; T = 4: "fraction of 4 unit tests passed"). The policy is a
hierarchical softmax: a logit theta_0 sets p, and within each reward level a softmax picks the completion. The
score of a sample at level l is then
    s = m_l e_0 + eps,   m_l = l - T p   (d log P(l) / d theta_0),   E[eps | l] = 0,   E|eps|^2 = sigma_l^2,
with eps independent across samples. The within-level part eps is the completion-specific part of grad log pi;
its size is set per level: sigma_l^2 = noise * ratio^(2 (1 - l/T)), so `ratio` is the failure/success ratio of
score norms (the mechanism the demo measured: failing completions have larger score vectors).

The per-group estimate is g = (k/n) sum_i A_i s_i (k = K for the estimators that take K, 1 for grpo, rloo and
maxrl). Given the count vector c of the levels in the group the advantages are fixed (tied rewards share one
advantage), so
    E[g | c] = (k/n) sum_l S1_l(c) m_l e_0,   Cov(g | c) has trace (k/n)^2 sum_l S2_l(c) sigma_l^2,
with S1_l = sum of A over the samples at level l and S2_l = sum of A^2. The law of total covariance gives
    trace Cov(g) = E_c[(k/n)^2 sum_l S2_l sigma_l^2] + Var_c(E[g | c] . e_0),
an exact finite sum over count vectors (n+1 of them for pass/fail; C(n+T, T) in general): nothing is sampled.
The advantages come from the package's own estimators, called once per (law, n, K, estimator) on every count
vector at once. Relative variance = trace Cov(g) / |E g|^2.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from verl_maxpo.core.estimators import run_estimator
from verl_maxpo.core.table import ARMS, ESTIMATORS, ArmSpec, MaxPOOptions, arm_reads_k
from verl_maxpo.runs import command, strict_json
from verl_maxpo.runs.args import flat_ints, flat_names, flat_parsed, float_in
from verl_maxpo.runs.outputs import OutputError, check_out, publish

__all__ = ["LAWS", "Cell", "compute_map", "exact_moments", "main", "map_rows", "monte_carlo_moments"]

COMMAND = "variance"  # the name in the output folder's manifest
LAWS = {"binary": 1, "partial4": 4}  # name -> T (reward = passed / T, each of T checks passes with prob. p)
# Map-only comparison rows beside the A/B arms of the table: rloo is maxpo at K = 1 (the mean@1 baseline), maxpo_std
# the norm_by_std ablation. An arm of the same name in the table wins.
REFERENCE_ROWS = (
    ArmSpec("rloo", "rloo", {}, "verl's RLOO (mean@1)"),
    ArmSpec("maxpo_std", "maxpo", {"norm_by_std": True}, "MaxPO, max@K, advantages divided by the group std"),
)
DEFAULT_P = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_N = (4, 8, 16, 32)
DEFAULT_K = (2, 4, 8)
DEFAULT_RATIO = (0.5, 1.0, 2.0, 4.0)
DEFAULT_NOISE = 100.0
DEFAULT_OUT = "maxpo_variance"
# --quick: a few seconds, for a first look and for tests (explicit flags still win).
QUICK = {"p": "0.05,0.2,0.5", "n": "8,16", "k": "2,4", "ratio": "1,2", "laws": "binary"}
# Ranges (checked before work): p away from 0 and 1, where |E g|^2 underflows and the ratio is not a number;
# n up to 64 (the partial-credit law enumerates C(n+4, 4) count vectors), so K < n <= 64.
P_RANGE = (1e-6, 1 - 1e-6)
MAX_N = 64
GRPO_EPS = 1e-6  # verl's epsilon in (r - mean) / (std + eps)
MAX_AT_K = "max@K"  # the target the map's main comparisons share
# How an objective option of maxpo names the gradient it is unbiased for.
OBJECTIVE_TARGETS = {
    "max": lambda o: MAX_AT_K,
    "top_m": lambda o: f"the mean of the best {o.get('m')} of K draws",
    "ml": lambda o: "the truncated log-likelihood sum_{j<=K} max@j / j",
    "weights": lambda o: f"the rank-weighted mean of K draws (weights {o.get('rank_weights')})",
}


@dataclass(frozen=True)
class Cell:
    """One point of the map: the relative variance of every row."""

    law: str
    p: float
    n: int
    k: int
    ratio: float
    rel_var: dict[str, float]  # row -> trace Cov(g) / |E g|^2
    mean_grad: dict[str, float]  # row -> E g . e_0 (max@K-unbiased rows: d J_K / d theta_0)
    max_at_k_grad: float  # d J_K / d theta_0 itself; every E g is parallel to e_0 here, so only scales differ


def map_rows() -> dict[str, ArmSpec]:
    """Every row the map can show: the table's arms, then the map-only reference rows."""
    return {**ARMS, **{r.name: r for r in REFERENCE_ROWS if r.name not in ARMS}}


def _rloo(rows: torch.Tensor, k: int) -> torch.Tensor:
    n = rows.shape[1]
    return rows - (rows.sum(1, keepdim=True) - rows) / (n - 1)


def _grpo(rows: torch.Tensor, k: int) -> torch.Tensor:  # verl's grpo: unbiased std, eps added to it
    return (rows - rows.mean(1, keepdim=True)) / (rows.std(1, keepdim=True) + GRPO_EPS)


# verl's own estimators that arms train with, re-stated on dense (G, n) rows so the map needs no verl import.
VERL_BUILTINS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {"grpo": _grpo, "rloo": _rloo}


def unbiased_for(row: ArmSpec) -> str:
    """The gradient a row's estimate is unbiased for, in words (an arm's `objective` option picks maxpo's)."""
    if row.estimator == "rloo":
        return "mean@1 (the mean reward)"
    if row.estimator == "grpo" or row.options.get("norm_by_std"):
        return "no fixed objective (divides by the group std)"
    spec = ESTIMATORS[row.estimator]
    if "objective" in spec.options:
        return OBJECTIVE_TARGETS[row.options.get("objective", "max")](row.options)
    return spec.unbiased_for


def _check_row(row: ArmSpec) -> None:
    if row.estimator not in ESTIMATORS and row.estimator not in VERL_BUILTINS:
        raise ValueError(f"variance map: arm {row.name!r} trains with {row.estimator!r}, which the map cannot compute")


def _advantage_fn(row: ArmSpec) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Advantages of rows of rewards (G, n) -> (G, n) for one map row (an arm and its fixed options)."""
    _check_row(row)
    if row.estimator in VERL_BUILTINS:
        return VERL_BUILTINS[row.estimator]
    spec = ESTIMATORS[row.estimator]

    def run(rows: torch.Tensor, k: int) -> torch.Tensor:
        g, n = rows.shape
        ids = torch.arange(g).repeat_interleave(n)  # contiguous groups: the estimators' no-gather path
        options = MaxPOOptions.parse({**row.options, "k": k}, spec.name, prefix=f"arm {row.name}: ")
        return run_estimator(spec, rows.reshape(-1), ids, options).view(g, n)

    return run


def gradient_factor(row: ArmSpec, n: int, k: int) -> float:
    """The c in g = c sum_i A_i s_i: K/n for the estimators that take K (their unbiased K-sample scale), 1/n for
    the others (grpo, rloo: the mean reward's scale; maxrl: the mean over the group, as published)."""
    takes_k = arm_reads_k(row)
    return (k if takes_k else 1) / n


def min_group_size(rows: Sequence[ArmSpec], k: int) -> int:
    """The smallest n at which every row is defined for this K (verl's grpo/rloo need 2 samples)."""
    return max([2, *(ESTIMATORS[r.estimator].min_group_size(k) for r in rows if r.estimator in ESTIMATORS)])


def max_at_k_gradient(law: str, p: float, k: int) -> float:
    """d J_K / d theta_0 in closed form, J_K = E[max of K rewards] = sum_l (l/T) (F_l^K - F_{l-1}^K)."""
    t = LAWS[law]
    levels = np.arange(t + 1)
    binom = np.array([math.comb(t, j) for j in levels], dtype=np.float64)
    pmf = binom * p**levels * (1 - p) ** (t - levels)
    dpmf = pmf * (levels - t * p)  # d pmf / d theta_0 = pmf * d log pmf / d theta_0
    cdf, dcdf = np.cumsum(pmf), np.cumsum(dpmf)
    below, dbelow = np.concatenate([[0.0], cdf[:-1]]), np.concatenate([[0.0], dcdf[:-1]])
    return float((levels / t * k * (cdf ** (k - 1) * dcdf - below ** (k - 1) * dbelow)).sum())


def count_vectors(n: int, levels: int) -> np.ndarray:
    """(G, levels) int64: every way to split n samples over the reward levels (stars and bars)."""
    rows = []
    for bars in itertools.combinations(range(n + levels - 1), levels - 1):
        edges = (-1, *bars, n + levels - 1)
        rows.append([edges[j + 1] - edges[j] - 1 for j in range(levels)])
    return np.array(rows, dtype=np.int64)


def _row(name: str) -> ArmSpec:
    rows = map_rows()
    if name not in rows:
        raise ValueError(f"variance map: unknown row {name!r}; choose from {', '.join(rows)}")
    return rows[name]


def _level_sums(row: ArmSpec, counts: np.ndarray, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """S1, S2 (G, L): the sum of A and of A^2 over the samples at each level, for every count vector."""
    g, levels = counts.shape
    n = int(counts[0].sum())
    cum = np.cumsum(counts, axis=1)
    level_of = (np.arange(n)[None, :, None] >= cum[:, None, :]).sum(axis=2)  # (G, n) ascending levels
    rows = torch.from_numpy(level_of / t)
    adv = _advantage_fn(row)(rows, k).numpy()
    # rows are sorted by level, so each level is one contiguous run: sums over runs from prefix sums
    ends = cum
    starts = cum - counts
    out = []
    for values in (adv, adv**2):
        prefix = np.concatenate([np.zeros((g, 1)), np.cumsum(values, axis=1)], axis=1)
        out.append(np.take_along_axis(prefix, ends, 1) - np.take_along_axis(prefix, starts, 1))
    return out[0], out[1]


def exact_moments(
    name: str, law: str, p: float, n: int, k: int, ratio: float, noise: float = DEFAULT_NOISE
) -> tuple[float, float]:
    """(E g . e_0, trace Cov g) for one map row (an arm name) and cell, exactly (a finite sum over count vectors)."""
    row, t = _row(name), LAWS[law]
    counts = count_vectors(n, t + 1)
    s1, s2 = _level_sums(row, counts, t, k)
    mean, trace = _moments_from_sums(
        counts, s1, s2, np.array([p]), t, np.array([ratio]), noise, gradient_factor(row, n, k)
    )
    return float(mean[0, 0]), float(trace[0, 0])


def _moments_from_sums(
    counts: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    ps: np.ndarray,
    t: int,
    ratios: np.ndarray,
    noise: float,
    factor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """E g . e_0 and trace Cov g for every (p, ratio): both (P, R)."""
    n = int(counts[0].sum())
    levels = np.arange(t + 1)
    log_level_prob = np.array(
        [[math.log(math.comb(t, j)) + j * math.log(p) + (t - j) * math.log1p(-p) for j in levels] for p in ps]
    )  # (P, L)
    log_coef = math.lgamma(n + 1) - np.array([sum(math.lgamma(c + 1) for c in row) for row in counts])  # (G,)
    prob = np.exp(log_coef[None, :] + log_level_prob @ counts.T)  # (P, G): multinomial probability of c
    class_mean = levels[None, :] - t * ps[:, None]  # (P, L): d log P(level) / d theta_0
    cond_mean = factor * (class_mean @ s1.T)  # (P, G): E[g | c] . e_0
    mean = (prob * cond_mean).sum(1)  # (P,)
    between = (prob * (cond_mean - mean[:, None]) ** 2).sum(1)  # Var_c(E[g | c])
    sigma2 = noise * ratios[:, None] ** (2 * (1 - levels[None, :] / t))  # (R, L)
    within = factor**2 * prob @ (s2 @ sigma2.T)  # (P, R): E_c trace Cov(g | c)
    return np.repeat(mean[:, None], len(ratios), 1), within + between[:, None]


def compute_map(
    laws: Sequence[str] = tuple(LAWS),
    ps: Sequence[float] = DEFAULT_P,
    ns: Sequence[int] = DEFAULT_N,
    ks: Sequence[int] = DEFAULT_K,
    ratios: Sequence[float] = DEFAULT_RATIO,
    estimators: Sequence[str] | None = None,
    noise: float = DEFAULT_NOISE,
) -> list[Cell]:
    """Every cell of the grid for the named rows (default: all of `map_rows()`); an (n, K) pair is skipped where
    some row is undefined (maxpo and pkpo_loo need n >= K+1)."""
    rows = [_row(name) for name in (list(map_rows()) if estimators is None else estimators)]
    cells = []
    p_arr, r_arr = np.asarray(ps, dtype=np.float64), np.asarray(ratios, dtype=np.float64)
    for law in laws:
        t = LAWS[law]
        for n in ns:
            counts = count_vectors(n, t + 1)
            for k in (k for k in ks if n >= min_group_size(rows, k)):
                rel, mean = {}, {}
                for row in rows:
                    s1, s2 = _level_sums(row, counts, t, k)
                    m, tr = _moments_from_sums(counts, s1, s2, p_arr, t, r_arr, noise, gradient_factor(row, n, k))
                    rel[row.name], mean[row.name] = tr / m**2, m
                for i, p in enumerate(ps):
                    target = _sig(max_at_k_gradient(law, float(p), k))
                    for j, ratio in enumerate(ratios):
                        cells.append(
                            Cell(
                                law,
                                float(p),
                                n,
                                k,
                                float(ratio),
                                {r.name: _sig(rel[r.name][i, j]) for r in rows},
                                {r.name: _sig(mean[r.name][i, j]) for r in rows},
                                target,
                            )
                        )
    return cells


def _sig(x: float) -> float:
    """x to 9 significant digits: the map is exact, but its JSON need not carry float noise."""
    return float(f"{x:.9g}")


def monte_carlo_moments(
    name: str, law: str, p: float, n: int, k: int, ratio: float, groups: int, seed: int, noise: float = DEFAULT_NOISE
) -> tuple[float, float, float, float]:
    """Sample the same model: (mean of g . e_0, its standard error, mean of |g|^2, its standard error).

    eps is Gaussian in 3 dimensions with E|eps|^2 = sigma_l^2 (only its first two moments enter the exact values).
    """
    row, t = _row(name), LAWS[law]
    gen = torch.Generator().manual_seed(seed)
    level = (torch.rand(groups, n, t, generator=gen, dtype=torch.float64) < p).sum(-1).double()  # Binomial(t, p)
    sigma = math.sqrt(noise) * ratio ** (1 - level / t)  # (G, n)
    eps = torch.randn(groups, n, 3, generator=gen, dtype=torch.float64) * (sigma / math.sqrt(3)).unsqueeze(-1)
    score0 = level - t * p
    adv = _advantage_fn(row)(level / t, k)
    f = gradient_factor(row, n, k)
    g0 = f * (adv * score0).sum(1)
    g_rest = f * (adv.unsqueeze(-1) * eps).sum(1)
    sq = g0**2 + (g_rest**2).sum(1)
    root = math.sqrt(groups)
    return g0.mean().item(), g0.std().item() / root, sq.mean().item(), sq.std().item() / root


# ------------------------------------------------------------------------------------------------ outputs


def comparisons(names: Sequence[str]) -> list[tuple[str, str]]:
    """The (numerator, denominator) pairs the heatmaps and summary show, among the selected rows: maxpo over each
    other max@K-unbiased row of ours (pkpo, pkpo_loo), then each row of ours with another target over maxpo and
    over pkpo. grpo, rloo and the std-scaled rows appear in the reference table only."""
    rows = [_row(n) for n in names]
    ours = [r for r in rows if r.estimator in ESTIMATORS and not r.options.get("norm_by_std")]
    same = [("maxpo", r.name) for r in ours if r.name != "maxpo" and unbiased_for(r) == MAX_AT_K]
    other = [(r.name, base) for r in ours if unbiased_for(r) != MAX_AT_K for base in ("maxpo", "pkpo")]
    pairs = same + other
    return [(a, b) for a, b in pairs if a in names and b in names]


def _ratio_grid(cells: list[Cell], law: str, num: str, den: str, ps, ns, ks, ratios) -> np.ndarray:
    """(R, K, N, P) array of rel_var[num] / rel_var[den]; NaN where the cell is skipped."""
    index = {(c.p, c.n, c.k, c.ratio): c for c in cells if c.law == law}
    grid = np.full((len(ratios), len(ks), len(ns), len(ps)), np.nan)
    for a, ratio in enumerate(ratios):
        for b, k in enumerate(ks):
            for c, n in enumerate(ns):
                for d, p in enumerate(ps):
                    cell = index.get((float(p), n, k, float(ratio)))
                    if cell is not None:
                        grid[a, b, c, d] = cell.rel_var[num] / cell.rel_var[den]
    return grid


def write_heatmap(path: Path, grid: np.ndarray, title: str, num: str, ps, ns, ks, ratios) -> None:
    """One panel per (ratio, K): x = p, y = n, colour = log2 of the variance ratio, black line where it is 1.

    Sized for a slide: each cell is at least about 0.6 x 0.45 inch, so its number (9 pt) and the tick labels stay
    legible however small the grid, and the title is wrapped to the figure's width (never cut at its edges)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    logs = np.log2(grid)
    bound = 2.0  # colours saturate at 4x either way; the printed numbers carry the rest
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    panel_w, panel_h = max(4.0, 0.62 * len(ps) + 1.4), max(2.6, 0.45 * len(ns) + 1.5)
    width = panel_w * len(ks) + 1.2  # + the colour bar
    fig, axes = plt.subplots(
        len(ratios), len(ks), figsize=(width, panel_h * len(ratios) + 0.9), squeeze=False, constrained_layout=True
    )
    x, y = np.arange(len(ps)), np.arange(len(ns))
    for a, ratio in enumerate(ratios):
        for b, k in enumerate(ks):
            ax = axes[a, b]
            image = ax.imshow(logs[a, b], cmap="RdBu_r", norm=norm, aspect="auto", origin="lower")
            panel = logs[a, b]
            if np.isfinite(panel).sum() >= 4 and np.nanmin(panel) < 0 < np.nanmax(panel):
                ax.contour(x, y, np.where(np.isfinite(panel), panel, np.nan), levels=[0.0], colors="k", linewidths=1.5)
            for yy in y:
                for xx in x:
                    if np.isfinite(grid[a, b, yy, xx]):
                        dark = abs(logs[a, b, yy, xx]) > 0.6 * bound  # white on saturated cells
                        ax.text(
                            xx, yy, f"{grid[a, b, yy, xx]:.2f}", ha="center", va="center", fontsize=9,
                            color="white" if dark else "black",
                        )  # fmt: skip
            ax.set_xticks(x, [f"{p:g}" for p in ps], fontsize=9, rotation=90 if len(ps) > 6 else 0)
            ax.set_yticks(y, [str(n) for n in ns], fontsize=9)
            ax.set_title(f"K={k}, failure/success score norm {ratio:g}", fontsize=10)
            if b == 0:
                ax.set_ylabel("group size n", fontsize=10)
            if a == len(ratios) - 1:
                ax.set_xlabel("success rate p", fontsize=10)
    full = title + f" (red: {num} noisier; black line: ratio 1.0)"
    fig.suptitle(textwrap.fill(full, width=max(30, int(width * 8))), fontsize=12)
    fig.colorbar(image, ax=axes, shrink=0.8, label="log2 ratio")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def heatmap_name(law: str, num: str, den: str) -> str:
    return f"heatmap_{law}_{num}_over_{den}.png"


def summary_markdown(cells: list[Cell], args_line: str, seconds: float, ps, ns, ks, ratios, laws) -> str:
    """Where each compared row's relative variance is below the other's, per (law, n, K, ratio)."""
    names = list(cells[0].rel_var)
    rows = [_row(n) for n in names]
    pairs = comparisons(names)
    lines = [
        "# Exact gradient-variance map",
        "",
        f"Generated by `{args_line}` in {seconds:.1f} s. Relative variance = trace Cov(g) / |E g|^2 of the",
        "per-group gradient estimate; model and derivation in `verl_maxpo/tools/variance.py` and docs/when-to-use.md.",
        "Each table `a / b` lists the success rates p (of the grid) at which a's relative variance is **lower**",
        "than b's (ratio < 1); `none` means a is noisier at every p, `all` at none.",
        "",
        "Rows (what each one's estimate is unbiased for; the relative variance is measured against the row's own",
        "mean gradient):",
        "",
        "| row | estimator | options | unbiased for |",
        "|---|---|---|---|",
    ]
    for row in rows:
        options = ", ".join(f"{k}={v}" for k, v in row.options.items()) or "-"
        lines.append(f"| {row.name} | {row.estimator} | {options} | {unbiased_for(row)} |")
    lines.append("")
    index = {(c.law, c.p, c.n, c.k, c.ratio): c for c in cells}
    for law in laws:
        for num, den in pairs:
            lines += [
                f"## {law} rewards: {num} / {den}",
                "",
                f"Heatmap: [{heatmap_name(law, num, den)}]({heatmap_name(law, num, den)})",
                "",
                "| n | K | " + " | ".join(f"norm ratio {r:g}" for r in ratios) + " |",
                "|---|---|" + "---|" * len(ratios),
            ]
            for n in ns:
                for k in ks:
                    if (law, float(ps[0]), n, k, float(ratios[0])) not in index:
                        continue
                    row = []
                    for ratio in ratios:
                        wins = [
                            p
                            for p in ps
                            if (c := index[(law, float(p), n, k, float(ratio))]).rel_var[num] < c.rel_var[den]
                        ]
                        row.append("all" if len(wins) == len(ps) else "none" if not wins else _ranges(wins, ps))
                    lines.append(f"| {n} | {k} | " + " | ".join(row) + " |")
            lines.append("")
    n_ref, k_ref = _reference_cell(cells)
    lines += [
        f"## Reference: relative variance at n = {n_ref}, K = {k_ref}, norm ratio {_ref_ratio(cells):g}",
        "",
        "| law | p | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    ref = [c for c in cells if (c.n, c.k, c.ratio) == (n_ref, k_ref, _ref_ratio(cells))]
    for c in ref:
        lines.append(f"| {c.law} | {c.p:g} | " + " | ".join(f"{c.rel_var[e]:.3g}" for e in names) + " |")
    off = [r.name for r in rows if unbiased_for(r) != MAX_AT_K]
    if off:
        lines += [
            "",
            f"## Reference: E g / (d max@K / d theta_0) at n = {n_ref}, K = {k_ref}",
            "",
            "Rows not unbiased for max@K follow another gradient. In this one-prompt model every E g lies along the",
            "success-logit direction (cosine 1 with the max@K gradient), so the difference is a p-dependent scale:",
            "it reweights prompts of different success rates against each other. Relative variance ignores scale.",
            "",
            "| law | p | " + " | ".join(off) + " |",
            "|---|---|" + "---:|" * len(off),
        ]
        seen = set()
        for c in ref:
            if (c.law, c.p) not in seen:
                seen.add((c.law, c.p))
                lines.append(
                    f"| {c.law} | {c.p:g} | "
                    + " | ".join(f"{c.mean_grad[e] / c.max_at_k_grad:.3g}" for e in off)
                    + " |"
                )
    return "\n".join(lines) + "\n"


def _reference_cell(cells: list[Cell]) -> tuple[int, int]:
    """(n, K) of the reference tables: n = 16, K = 4 when in the grid, else the largest n and its largest K."""
    pairs = {(c.n, c.k) for c in cells}
    return (16, 4) if (16, 4) in pairs else max(pairs)


def _ref_ratio(cells: list[Cell]) -> float:
    ratios = sorted({c.ratio for c in cells})
    return 1.0 if 1.0 in ratios else ratios[0]


def _ranges(wins: list[float], ps: Sequence[float]) -> str:
    """[0.01, 0.02, 0.05, 0.5] over the grid -> '0.01-0.05, 0.5' (contiguous runs of the grid)."""
    pos = [list(ps).index(p) for p in wins]
    runs, start = [], pos[0]
    for a, b in zip(pos, [*pos[1:], None], strict=True):
        if b != a + 1:
            runs.append(f"{ps[start]:g}" if start == a else f"{ps[start]:g}-{ps[a]:g}")
            start = b
    return ", ".join(runs)


def write_outputs(folder: Path, cells: list[Cell], command: str, seconds: float, args: argparse.Namespace) -> list[str]:
    """variance.json, one heatmap per (law, comparison) and summary.md into `folder`; returns the file names."""
    payload = {
        "model": __doc__.split("\n\n")[1],
        "command": command,
        "noise": args.noise,
        "rows": {
            r.name: {"estimator": r.estimator, "options": dict(r.options), "unbiased_for": unbiased_for(r)}
            for r in map(_row, args.estimators)
        },
        "cells": [asdict(c) for c in cells],
    }
    (folder / "variance.json").write_text(strict_json.dumps(payload) + "\n")
    names = ["variance.json"]
    for law in args.laws:
        for num, den in comparisons(args.estimators):
            grid = _ratio_grid(cells, law, num, den, args.p, args.n, args.k, args.ratio)
            name = heatmap_name(law, num, den)
            title = f"{law} rewards: relative gradient variance, {num} / {den}"
            write_heatmap(folder / name, grid, title, num, args.p, args.n, args.k, args.ratio)
            names.append(name)
    (folder / "summary.md").write_text(
        summary_markdown(cells, command, seconds, args.p, args.n, args.k, args.ratio, args.laws)
    )
    return [*names, "summary.md"]


# ------------------------------------------------------------------------------------------------ CLI


def _joined(values: Sequence[object]) -> str:
    """A default list as the help shows it (and as the list options parse it)."""
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _build_parser() -> argparse.ArgumentParser:
    rows = map_rows()
    p = argparse.ArgumentParser(
        prog="verl-maxpo variance",
        description=f"Exact relative gradient variance of the map's rows ({', '.join(rows)}) for one prompt, over a "
        "grid of success rate p, group size n, K and failure/success score-norm ratio; heatmaps, JSON, markdown. "
        "Lists take `--n 4 8 16` or `--n 4,8,16`.",
    )
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"output folder, new or empty (default ./{DEFAULT_OUT}); an earlier map there needs --force",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier map in --out, or write into a non-empty folder that holds no map (its files are "
        "never removed or overwritten)",
    )
    p.add_argument("--quick", action="store_true", help=f"a small grid in seconds: {QUICK} (explicit flags win)")
    p.add_argument(
        "--p",
        nargs="+",
        default=[_joined(DEFAULT_P)],
        help=f"success rates in [{P_RANGE[0]:g}, {P_RANGE[1]:g}] (default: {_joined(DEFAULT_P)})",
    )
    p.add_argument(
        "--n", nargs="+", default=[_joined(DEFAULT_N)], help=f"group sizes, 2..{MAX_N} (default: {_joined(DEFAULT_N)})"
    )
    p.add_argument(
        "--k",
        nargs="+",
        default=[_joined(DEFAULT_K)],
        help=f"K values, 2..{MAX_N - 1}; a cell needs n large enough for every row, e.g. n >= K+1 "
        f"(default: {_joined(DEFAULT_K)})",
    )
    p.add_argument(
        "--ratio",
        nargs="+",
        default=[_joined(DEFAULT_RATIO)],
        help=f"failure/success score norms, in (0, 1000] (default: {_joined(DEFAULT_RATIO)})",
    )
    p.add_argument("--laws", nargs="+", default=list(LAWS), help=f"reward laws (default: {_joined(list(LAWS))})")
    p.add_argument(
        "--estimators",
        nargs="+",
        default=list(rows),
        help=f"map rows: arm names of the estimator table and reference rows (default: {_joined(list(rows))})",
    )
    p.add_argument(
        "--noise",
        type=float_in(0.0, 1e6),
        default=DEFAULT_NOISE,
        help=f"within-level score variance of a success, in units of the signal (default: {DEFAULT_NOISE:g})",
    )
    return p


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**{key: [value] for key, value in QUICK.items()})
        args = parser.parse_args(argv)
    try:
        args.p = flat_parsed(args.p, "--p", float_in(*P_RANGE))
        args.n = flat_ints(args.n, "--n", minimum=2, maximum=MAX_N)
        args.k = flat_ints(args.k, "--k", minimum=2, maximum=MAX_N - 1)
        args.ratio = flat_parsed(args.ratio, "--ratio", float_in(0.0, 1e3, low_open=True))
        args.laws = flat_names(args.laws, "--laws", LAWS)
        args.estimators = flat_names(args.estimators, "--estimators", map_rows())
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    for name in args.estimators:
        try:
            _check_row(_row(name))
        except ValueError as err:
            parser.error(f"--estimators: {err}")
    rows = [_row(name) for name in args.estimators]
    if not any(n >= min_group_size(rows, k) for k in args.k for n in args.n):
        parser.error("--k, --n: no cell has K < n (maxpo and pkpo_loo need n >= K+1)")
    _check_out(parser, args)
    return args


def _check_out(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    # A missing parent is refused (a mistyped path should not create folders), then the shared folder policy.
    parent = Path(os.path.abspath(args.out)).parent
    if not parent.exists():
        parser.error(f"--out {args.out}: cannot create it in {parent} (missing)")
    try:
        check_out(args.out, COMMAND, args.force)
    except OutputError as err:
        parser.error(str(err))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `verl-maxpo variance` (runs/command.py owns the exit status)."""
    return command.run(COMMAND, _main, argv)


def _main(argv: list[str]) -> int:
    args = _parse(argv)
    start = time.perf_counter()
    cells = compute_map(args.laws, args.p, args.n, args.k, args.ratio, args.estimators, args.noise)
    seconds = time.perf_counter() - start
    shown = ["verl-maxpo variance", "--out", str(args.out)]
    for flag, values in (("--p", args.p), ("--n", args.n), ("--k", args.k), ("--ratio", args.ratio)):
        shown += [flag, ",".join(f"{v:g}" for v in values)]
    shown += ["--laws", ",".join(args.laws), "--noise", f"{args.noise:g}"]
    if args.estimators != list(map_rows()):
        shown += ["--estimators", ",".join(args.estimators)]
    # An OSError while writing the stage (disk full, ...) exits 1: the stage is gone, --out as it was.
    with publish(args.out, COMMAND, args.force) as out:
        names = write_outputs(out.stage, cells, " ".join(shown), seconds, args)
    print(f"{len(cells)} cells in {seconds:.1f} s -> {out.target}/ ({len(names)} files: {', '.join(names[:2])}, ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
