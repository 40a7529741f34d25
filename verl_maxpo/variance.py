"""`verl-maxpo variance`: the exact relative gradient variance of max@K advantage estimators, one prompt at a time.

The model (docs/when-to-use.md has the derivation): one prompt, n i.i.d. samples. A sample's reward is
r = l/T where l ~ Binomial(T, p) (T = 1: pass/fail; T = 4: "fraction of 4 unit tests passed"). The policy is a
hierarchical softmax: a logit theta_0 sets p, and within each reward level a softmax picks the completion. The
score of a sample at level l is then
    s = m_l e_0 + eps,   m_l = l - T p   (d log P(l) / d theta_0),   E[eps | l] = 0,   E|eps|^2 = sigma_l^2,
with eps independent across samples. The within-level part eps is the completion-specific part of grad log pi;
its size is set per level: sigma_l^2 = noise * ratio^(2 (1 - l/T)), so `ratio` is the failure/success ratio of
score norms (the mechanism the demo measured: failing completions have larger score vectors).

The per-group estimate is g = (k/n) sum_i A_i s_i (k = K for the max@K estimators, 1 for grpo/rloo). Given the
count vector c of the levels in the group the advantages are fixed (tied rewards share one advantage), so
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
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from verl_maxpo.cli_args import flat_ints, flat_names, flat_parsed, float_in
from verl_maxpo.estimators import maxpo_advantages, pkpo_advantages, pkpo_loo_advantages

__all__ = ["LAWS", "Cell", "compute_map", "exact_moments", "main", "monte_carlo_moments"]

LAWS = {"binary": 1, "partial4": 4}  # name -> T (reward = passed / T, each of T checks passes with prob. p)
ESTIMATORS = ("maxpo", "pkpo", "pkpo_loo", "grpo", "rloo", "maxpo_std")
DEFAULT_P = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_N = (4, 8, 16, 32)
DEFAULT_K = (2, 4, 8)
DEFAULT_RATIO = (0.5, 1.0, 2.0, 4.0)
DEFAULT_NOISE = 100.0
GRPO_EPS = 1e-6  # verl's epsilon in (r - mean) / (std + eps)
OUTPUT_NAMES = ("variance.json", "summary.md")  # plus heatmap_*.png


@dataclass(frozen=True)
class Cell:
    """One point of the map: the relative variance of every estimator."""

    law: str
    p: float
    n: int
    k: int
    ratio: float
    rel_var: dict[str, float]  # estimator -> trace Cov(g) / |E g|^2
    mean_grad: dict[str, float]  # estimator -> E g . e_0 (max@K estimators: d J_K / d theta_0)


def _advantage_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    """Advantages of rows of rewards (G, n) -> (G, n) for one estimator."""

    def ours(fn, **kw):
        def run(rows: torch.Tensor, k: int) -> torch.Tensor:
            g, n = rows.shape
            ids = np.repeat(np.arange(g), n)  # contiguous groups: the estimators' no-gather path
            return fn(rows.reshape(-1), ids, k, **kw).view(g, n)

        return run

    def rloo(rows: torch.Tensor, k: int) -> torch.Tensor:
        n = rows.shape[1]
        return rows - (rows.sum(1, keepdim=True) - rows) / (n - 1)

    def grpo(rows: torch.Tensor, k: int) -> torch.Tensor:  # verl's grpo: unbiased std, eps added to it
        return (rows - rows.mean(1, keepdim=True)) / (rows.std(1, keepdim=True) + GRPO_EPS)

    table = {
        "maxpo": ours(maxpo_advantages),
        "pkpo": ours(pkpo_advantages),
        "pkpo_loo": ours(pkpo_loo_advantages),
        "maxpo_std": ours(maxpo_advantages, norm_by_std=True),
        "grpo": grpo,
        "rloo": rloo,
    }
    return table[name]


def gradient_factor(name: str, n: int, k: int) -> float:
    """The k/n in g = (k/n) sum_i A_i s_i: k = K for the max@K estimators, 1 for grpo and rloo (mean reward)."""
    return (1 if name in ("grpo", "rloo") else k) / n


def count_vectors(n: int, levels: int) -> np.ndarray:
    """(G, levels) int64: every way to split n samples over the reward levels (stars and bars)."""
    rows = []
    for bars in itertools.combinations(range(n + levels - 1), levels - 1):
        edges = (-1, *bars, n + levels - 1)
        rows.append([edges[j + 1] - edges[j] - 1 for j in range(levels)])
    return np.array(rows, dtype=np.int64)


def _level_sums(name: str, counts: np.ndarray, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """S1, S2 (G, L): the sum of A and of A^2 over the samples at each level, for every count vector."""
    g, levels = counts.shape
    n = int(counts[0].sum())
    cum = np.cumsum(counts, axis=1)
    level_of = (np.arange(n)[None, :, None] >= cum[:, None, :]).sum(axis=2)  # (G, n) ascending levels
    rows = torch.from_numpy(level_of / t)
    adv = _advantage_fn(name)(rows, k).numpy()
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
    """(E g . e_0, trace Cov g) for one estimator and cell, exactly (a finite sum over count vectors)."""
    t = LAWS[law]
    counts = count_vectors(n, t + 1)
    s1, s2 = _level_sums(name, counts, t, k)
    mean, trace = _moments_from_sums(
        counts, s1, s2, np.array([p]), t, np.array([ratio]), noise, gradient_factor(name, n, k)
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
    estimators: Sequence[str] = ESTIMATORS,
    noise: float = DEFAULT_NOISE,
) -> list[Cell]:
    """Every cell of the grid (pairs with k >= n are skipped: maxpo and pkpo_loo need n >= k+1)."""
    cells = []
    p_arr, r_arr = np.asarray(ps, dtype=np.float64), np.asarray(ratios, dtype=np.float64)
    for law in laws:
        t = LAWS[law]
        for n in ns:
            counts = count_vectors(n, t + 1)
            for k in (k for k in ks if k < n):
                rel, mean = {}, {}
                for name in estimators:
                    s1, s2 = _level_sums(name, counts, t, k)
                    m, tr = _moments_from_sums(counts, s1, s2, p_arr, t, r_arr, noise, gradient_factor(name, n, k))
                    rel[name], mean[name] = tr / m**2, m
                for i, p in enumerate(ps):
                    for j, ratio in enumerate(ratios):
                        cells.append(
                            Cell(
                                law,
                                float(p),
                                n,
                                k,
                                float(ratio),
                                {e: _sig(rel[e][i, j]) for e in estimators},
                                {e: _sig(mean[e][i, j]) for e in estimators},
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
    t = LAWS[law]
    gen = torch.Generator().manual_seed(seed)
    level = (torch.rand(groups, n, t, generator=gen, dtype=torch.float64) < p).sum(-1).double()  # Binomial(t, p)
    sigma = math.sqrt(noise) * ratio ** (1 - level / t)  # (G, n)
    eps = torch.randn(groups, n, 3, generator=gen, dtype=torch.float64) * (sigma / math.sqrt(3)).unsqueeze(-1)
    score0 = level - t * p
    adv = _advantage_fn(name)(level / t, k)
    f = gradient_factor(name, n, k)
    g0 = f * (adv * score0).sum(1)
    g_rest = f * (adv.unsqueeze(-1) * eps).sum(1)
    sq = g0**2 + (g_rest**2).sum(1)
    root = math.sqrt(groups)
    return g0.mean().item(), g0.std().item() / root, sq.mean().item(), sq.std().item() / root


# ------------------------------------------------------------------------------------------------ outputs


def _ratio_grid(cells: list[Cell], law: str, num: str, den: str, ps, ns, ks, ratios) -> np.ndarray:
    """(R, K, N, P) array of rel_var[num] / rel_var[den]; NaN where k >= n."""
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


def write_heatmap(path: Path, grid: np.ndarray, title: str, ps, ns, ks, ratios) -> None:
    """One panel per (ratio, K): x = p, y = n, colour = log2 of the variance ratio, black line where it is 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    logs = np.log2(grid)
    bound = 2.0  # colours saturate at 4x either way; the printed numbers carry the rest
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    fig, axes = plt.subplots(
        len(ratios), len(ks), figsize=(5.0 * len(ks), 2.4 * len(ratios)), squeeze=False, constrained_layout=True
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
                        ax.text(xx, yy, f"{grid[a, b, yy, xx]:.2f}", ha="center", va="center", fontsize=4)
            ax.set_xticks(x, [f"{p:g}" for p in ps], fontsize=5, rotation=90)
            ax.set_yticks(y, [str(n) for n in ns], fontsize=6)
            ax.set_title(f"K={k}, failure/success score norm {ratio:g}", fontsize=7)
            if b == 0:
                ax.set_ylabel("n", fontsize=7)
            if a == len(ratios) - 1:
                ax.set_xlabel("success rate p", fontsize=7)
    fig.suptitle(title + " (red: maxpo noisier; black line: ratio 1.0)", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.6, label="log2 ratio")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summary_markdown(cells: list[Cell], args_line: str, seconds: float, ps, ns, ks, ratios, laws) -> str:
    """Where maxpo's relative variance is below pkpo's / pkpo_loo's, per (law, n, K, ratio)."""
    lines = [
        "# Exact gradient-variance map",
        "",
        f"Generated by `{args_line}` in {seconds:.1f} s. Relative variance = trace Cov(g) / |E g|^2 of the",
        "per-group gradient estimate; model and derivation in `verl_maxpo/variance.py` and docs/when-to-use.md.",
        "Each entry lists the success rates p (of the grid) at which maxpo's relative variance is **lower**",
        "(ratio < 1); `none` means maxpo is noisier at every p, `all` at none.",
        "",
    ]
    index = {(c.law, c.p, c.n, c.k, c.ratio): c for c in cells}
    for law in laws:
        for other in ("pkpo", "pkpo_loo"):
            lines += [
                f"## {law} rewards: maxpo / {other}",
                "",
                "| n | K | " + " | ".join(f"norm ratio {r:g}" for r in ratios) + " |",
                "|---|---|" + "---|" * len(ratios),
            ]
            for n in ns:
                for k in (k for k in ks if k < n):
                    row = []
                    for ratio in ratios:
                        wins = [
                            p
                            for p in ps
                            if (c := index.get((law, float(p), n, k, float(ratio)))) is not None
                            and c.rel_var["maxpo"] < c.rel_var[other]
                        ]
                        row.append("all" if len(wins) == len(ps) else "none" if not wins else _ranges(wins, ps))
                    lines.append(f"| {n} | {k} | " + " | ".join(row) + " |")
            lines.append("")
    lines += [
        "## Reference: relative variance at n = 16, K = 4, norm ratio 1",
        "",
        "| law | p | " + " | ".join(ESTIMATORS) + " |",
        "|---|---|" + "---:|" * len(ESTIMATORS),
    ]
    for law in laws:
        for p in ps:
            c = index.get((law, float(p), 16, 4, 1.0))
            if c is not None:
                lines.append(
                    f"| {law} | {p:g} | "
                    + " | ".join(f"{c.rel_var[e]:.3g}" for e in ESTIMATORS if e in c.rel_var)
                    + " |"
                )
    return "\n".join(lines) + "\n"


def _ranges(wins: list[float], ps: Sequence[float]) -> str:
    """[0.01, 0.02, 0.05, 0.5] over the grid -> '0.01-0.05, 0.5' (contiguous runs of the grid)."""
    pos = [list(ps).index(p) for p in wins]
    runs, start = [], pos[0]
    for a, b in zip(pos, [*pos[1:], None], strict=True):
        if b != a + 1:
            runs.append(f"{ps[start]:g}" if start == a else f"{ps[start]:g}-{ps[a]:g}")
            start = b
    return ", ".join(runs)


# ------------------------------------------------------------------------------------------------ CLI


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verl-maxpo variance",
        description="Exact relative gradient variance of maxpo, pkpo, pkpo_loo (and grpo, rloo) for one prompt, "
        "over a grid of success rate p, group size n, K and failure/success score-norm ratio; heatmaps, JSON, "
        "markdown. Lists take `--n 4 8 16` or `--n 4,8,16`.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (new, empty, or an earlier map)")
    p.add_argument("--p", nargs="+", default=[str(x) for x in DEFAULT_P], help="success rates in (0, 1)")
    p.add_argument("--n", nargs="+", default=[str(x) for x in DEFAULT_N], help="group sizes (2..64)")
    p.add_argument("--k", nargs="+", default=[str(x) for x in DEFAULT_K], help="K values (>= 2; cells need K < n)")
    p.add_argument("--ratio", nargs="+", default=[str(x) for x in DEFAULT_RATIO], help="failure/success score norms")
    p.add_argument("--laws", nargs="+", default=list(LAWS), help=f"reward laws: {', '.join(LAWS)}")
    p.add_argument(
        "--noise",
        type=float_in(0.0, 1e6),
        default=DEFAULT_NOISE,
        help=f"within-level score variance of a success, in units of the signal (default {DEFAULT_NOISE:g})",
    )
    return p


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        args.p = flat_parsed(args.p, "--p", float_in(0.0, 1.0, low_open=True, high_open=True))
        args.n = flat_ints(args.n, "--n", minimum=2)
        args.k = flat_ints(args.k, "--k", minimum=2)
        args.ratio = flat_parsed(args.ratio, "--ratio", float_in(0.0, 1e3, low_open=True))
        args.laws = flat_names(args.laws, "--laws", LAWS)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if max(args.n) > 64:
        parser.error(f"--n: at most 64 (the partial-credit law enumerates C(n+4, 4) count vectors), got {max(args.n)}")
    if not any(k < n for k in args.k for n in args.n):
        parser.error("no cell has K < n: maxpo and pkpo_loo need n >= K+1")
    _check_out(parser, args.out)
    return args


def _check_out(parser: argparse.ArgumentParser, out: Path) -> None:
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out}: exists and is not a folder")
    if out.is_dir():
        foreign = [f.name for f in out.iterdir() if f.name not in OUTPUT_NAMES and not f.name.startswith("heatmap_")]
        if foreign:
            parser.error(
                f"--out {out}: holds files this command did not write ({', '.join(sorted(foreign)[:3])}); "
                "choose a new or empty folder"
            )
    parent = out.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        parser.error(f"--out {out}: cannot create it in {parent} (missing or not writable)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `verl-maxpo variance`."""
    args = _parse(argv)
    start = time.perf_counter()
    cells = compute_map(args.laws, args.p, args.n, args.k, args.ratio, ESTIMATORS, args.noise)
    seconds = time.perf_counter() - start
    shown = ["verl-maxpo variance", "--out", str(args.out)]
    for flag, values in (("--p", args.p), ("--n", args.n), ("--k", args.k), ("--ratio", args.ratio)):
        shown += [flag, ",".join(f"{v:g}" for v in values)]
    shown += ["--laws", ",".join(args.laws), "--noise", f"{args.noise:g}"]
    out = args.out
    # Write everything into a fresh folder beside --out, then swap: an interrupted run leaves --out as it was.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.resolve().parent))
    try:
        payload = {
            "model": __doc__.split("\n\n")[1],
            "command": " ".join(shown),
            "noise": args.noise,
            "cells": [asdict(c) for c in cells],
        }
        (tmp / "variance.json").write_text(json.dumps(payload) + "\n")
        for law in args.laws:
            for other in ("pkpo", "pkpo_loo"):
                grid = _ratio_grid(cells, law, "maxpo", other, args.p, args.n, args.k, args.ratio)
                write_heatmap(
                    tmp / f"heatmap_{law}_maxpo_over_{other}.png",
                    grid,
                    f"{law} rewards: relative gradient variance, maxpo / {other}",
                    args.p,
                    args.n,
                    args.k,
                    args.ratio,
                )
        (tmp / "summary.md").write_text(
            summary_markdown(cells, " ".join(shown), seconds, args.p, args.n, args.k, args.ratio, args.laws)
        )
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the map is an ordinary folder
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.resolve().parent))
            out.rename(old / "previous")
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"verl-maxpo variance: could not write {out}: {err}", file=sys.stderr)
        return 1
    print(f"{len(cells)} cells in {seconds:.1f} s -> {out}/ (variance.json, summary.md, heatmap_*.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
