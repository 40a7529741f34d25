#!/usr/bin/env python3
"""Device check of verl-maxpo's framework-free estimators: exactness on the device, then speed.

Needs only torch and numpy: it puts this checkout on sys.path and imports `verl_maxpo.core.estimators`, `.groups` and
`.table` (none of them imports verl, Ray or pandas; group ids are integer tensors, so groups.py never
reaches for pandas). It

  (a) runs every estimator of the table, under every fixed option set of the A/B arms and every maxpo objective,
      on the device in float64 and compares with a float64 reference: brute force over K-subsets for groups of
      n <= 10, closed forms for pass/fail rewards at large n, else the same function on the CPU; mixed group sizes
      with shuffled integer labels; where the reference sums to zero per group, the device result must too;
  (b) times each against a torch group-mean baseline (torch.unique + index_add_, the same work any group
      estimator starts with) at 1024x16, 256x64 and 64x256 groups x samples: float32 rewards, synchronized,
      median of repeats;
  (c) writes cuda_check.json and cuda_check.md into --out (default: $OUT).

    python scripts/cuda_check.py --device cuda --out "$OUT"     # on the GPU machine
    python scripts/cuda_check.py --device cpu --out /tmp/check   # here (tests/cli/estimators/test_cuda_check_on_cpu.py)

Exit status: 0 all exact, 1 an exactness check failed, 2 bad arguments or no such device.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import verl_maxpo  # noqa: E402  (after the sys.path line above)
from verl_maxpo.core.api import compute_advantages  # noqa: E402
from verl_maxpo.core.table import ARMS, ESTIMATORS  # noqa: E402
from verl_maxpo.core.table import KERNELS as TABLE_KERNELS  # noqa: E402

TOLERANCE = 1e-9  # float64 on any device: the estimators sum ~1e-12 relative even at n in the thousands
SHAPES = ((1024, 16), (256, 64), (64, 256))  # groups x samples for the timing
EPS = 1e-6  # the estimators' default eps (norm_by_std, maxrl)

KERNELS = tuple(k for k in TABLE_KERNELS if k != "auto")  # the two code paths (same values): check both
Case = tuple[str, dict[str, Any]]  # (estimator, keyword options)


# ------------------------------------------------------------------------------------------------ references


def _objective(options: dict[str, Any], k: int) -> Callable[[np.ndarray], float]:
    """f(S) of one K-subset (ascending rewards) for a maxpo objective: an L-statistic sum_j w_j s_(j)."""
    name = options.get("objective", "max")
    if name == "max":
        w = np.eye(k)[-1]
    elif name == "top_m":
        m = int(options["m"])
        w = np.where(np.arange(k) >= k - m, 1.0 / m, 0.0)
    elif name == "ml":  # sum_{j<=K} max@j / j, max@j an L-statistic with w_l = C(l-1, j-1) / C(K, j)
        w = np.array(
            [sum(math.comb(lv - 1, j - 1) / math.comb(k, j) / j for j in range(1, k + 1)) for lv in range(1, k + 1)]
        )
    elif name == "weights":
        w = np.asarray(options["rank_weights"], dtype=np.float64)
    else:
        raise ValueError(f"no reference for objective {name!r}")
    return lambda s: float(np.sort(s) @ w)


def _subset_mean(values: np.ndarray, size: int, f: Callable[[np.ndarray], float]) -> float:
    return float(np.mean([f(values[list(s)]) for s in itertools.combinations(range(len(values)), size)]))


def brute_force(estimator: str, options: dict[str, Any], r: np.ndarray, k: int) -> np.ndarray | None:
    """Advantages of one group by enumerating subsets (the definitions, not the fast formulas); None: no reference."""
    n = len(r)
    if estimator == "maxrl":
        mean = r.mean()
        a = (r - mean) / (mean + EPS) if mean != 0 else np.zeros(n)
    elif estimator in ("maxpo", "pkpo", "pkpo_loo"):
        f = _objective(options, k) if estimator == "maxpo" else (lambda s: float(s.max()))
        a = np.empty(n)
        for i in range(n):
            others = np.delete(r, i)
            q = float(
                np.mean([f(np.array([r[i], *others[list(s)]])) for s in itertools.combinations(range(n - 1), k - 1)])
            )
            if estimator == "maxpo":
                base = _subset_mean(others, k, f)
            elif estimator == "pkpo":
                base = _subset_mean(others, k - 1, f)
            else:
                base = n / (n - 1) * _subset_mean(others, k, f)
            a[i] = q - base
    else:
        return None
    if options.get("norm_by_std"):
        a = a / (r.std(ddof=1) + EPS)
    return a


def closed_form_binary(estimator: str, options: dict[str, Any], r: np.ndarray, k: int) -> np.ndarray | None:
    """Pass/fail closed forms of max@K maxpo and pkpo (docs/algorithm.md), exact big-integer binomials."""
    if options or estimator not in ("maxpo", "pkpo") or not np.isin(r, (0.0, 1.0)).all():
        return None
    n, c = len(r), int(r.sum())

    def ratio(a: int, b: int, x: int, y: int) -> float:  # C(a, b) / C(x, y), C = 0 off its range
        return math.comb(a, b) / math.comb(x, y) if 0 <= b <= a else 0.0

    if estimator == "maxpo":
        good = ratio(n - c, k, n - 1, k)
        bad = ratio(n - c - 1, k, n - 1, k) - ratio(n - c - 1, k - 1, n - 1, k - 1)
    else:
        good, bad = ratio(n - c, k - 1, n - 1, k - 1), 0.0
    return np.where(r == 1.0, good, bad)


# ------------------------------------------------------------------------------------------------ cases


def cases() -> list[Case]:
    """Every estimator of the table bare, with each arm's fixed options, each kernel, and maxpo under every
    objective (rank_weights "ramp": w_j proportional to j, resolved per k by `resolve`)."""
    objectives = [
        {"objective": "max"},
        {"objective": "top_m", "m": 2},
        {"objective": "ml"},
        {"objective": "weights", "rank_weights": "ramp"},
    ]
    found = [(name, {}) for name in ESTIMATORS]
    found += [(arm.estimator, dict(arm.options)) for arm in ARMS.values() if arm.estimator in ESTIMATORS]
    found += [(name, {"norm_by_std": True}) for name, spec in ESTIMATORS.items() if "norm_by_std" in spec.options]
    found += [(n, {"kernel": kern}) for n, spec in ESTIMATORS.items() if "kernel" in spec.options for kern in KERNELS]
    found += [(name, o) for name, spec in ESTIMATORS.items() if "objective" in spec.options for o in objectives]
    unique: dict[str, Case] = {}
    for name, options in found:
        unique.setdefault(label((name, options)), (name, options))
    return list(unique.values())


def label(case: Case) -> str:
    name, options = case
    return name + "".join(f" {key}={value}" for key, value in sorted(options.items()))


def resolve(case: Case, k: int) -> Case | str:
    """The case's options for this k, or why it does not apply (an option this checkout lacks, k or m too small)."""
    name, options = case
    parameters = inspect.signature(compute_advantages).parameters
    missing = [key for key in options if key not in parameters]
    if missing:
        return f"compute_advantages takes no {', '.join(missing)} in this checkout"
    if ESTIMATORS[name].min_k > k:
        return f"needs k >= {ESTIMATORS[name].min_k}"
    if int(options.get("m", 0)) > k:
        return "m > k"
    if options.get("rank_weights") == "ramp":
        options = {**options, "rank_weights": [2.0 * (j + 1) / (k * (k + 1)) for j in range(k)]}
    return name, options


def call(case: Case, rewards: torch.Tensor, ids: torch.Tensor, k: int) -> torch.Tensor:
    """The estimator through the public entry point (options validated by the table's parser, as every caller's)."""
    return compute_advantages(rewards, ids, estimator=case[0], k=k, **case[1])


def mixed_batch(sizes: Sequence[int], seed: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Groups of the given sizes, each with binary, 4-level or continuous rewards (ties included), shuffled
    together under random distinct integer labels. Returns rewards (N,), labels (N,), member positions per group."""
    rng = np.random.default_rng(seed)
    parts = []
    for g, n in enumerate(sizes):
        kind = g % 3
        if kind == 0:
            r = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(np.float64)
        elif kind == 1:
            r = rng.binomial(4, rng.uniform(0.1, 0.9), n) / 4.0
        else:
            r = np.round(rng.random(n), 2)  # two decimals: ties among continuous rewards too
        parts.append(r)
    labels = rng.choice(10 * len(sizes) + 100, size=len(sizes), replace=False) + 7
    rewards = np.concatenate(parts)
    group_of = np.repeat(labels, sizes)
    order = rng.permutation(len(rewards))
    rewards, group_of = rewards[order], group_of[order]
    members = [np.flatnonzero(group_of == lab) for lab in labels]
    return rewards, group_of.astype(np.int64), members


def exactness(device: torch.device, case_list: list[Case]) -> list[dict[str, Any]]:
    """(a): one record per (case, batch, k)."""
    batches = [
        ("small mixed n=4..10", [4, 5, 6, 7, 8, 9, 10, 5, 6, 8, 4, 7], (2, 3), "brute force"),
        ("large mixed n=300..2048", [300, 1024, 2048, 513, 1024, 777], (4, 64), "closed form / cpu"),
    ]
    records = []
    for batch, sizes, ks, kind in batches:
        rewards, group_of, members = mixed_batch(sizes, seed=len(sizes))
        r_dev = torch.from_numpy(rewards).to(device)
        ids_dev = torch.from_numpy(group_of).to(device)
        for case, k in itertools.product(case_list, ks):
            record: dict[str, Any] = {"case": label(case), "batch": batch, "k": k}
            case = resolve(case, k)
            if isinstance(case, str):
                records.append({**record, "status": "skipped", "reason": case})
                continue
            try:
                got = call(case, r_dev, ids_dev, k).double().cpu().numpy()
            except Exception as err:  # noqa: BLE001 - the record says what failed; the check goes on
                records.append({**record, "status": "error", "reason": f"{type(err).__name__}: {err}"})
                continue
            want = np.empty_like(rewards)
            references = set()
            cpu = None
            for pos in members:
                ref = None
                if kind == "brute force":
                    ref, name = brute_force(*case, rewards[pos], k), "brute force"
                else:
                    ref, name = closed_form_binary(*case, rewards[pos], k), "closed form"
                if ref is None:
                    if cpu is None:
                        cpu = call(case, torch.from_numpy(rewards), torch.from_numpy(group_of), k).double().numpy()
                    ref, name = cpu[pos], "cpu float64"
                want[pos] = ref
                references.add(name)
            scale = max(1.0, float(np.abs(want).max()))
            error = float(np.abs(got - want).max()) / scale
            sums_ref = max(abs(float(want[pos].sum())) for pos in members) / scale
            sums_got = max(abs(float(got[pos].sum())) for pos in members) / scale
            centered = sums_ref < 1e-10  # the reference itself sums to zero per group
            ok = error < TOLERANCE and (not centered or sums_got < TOLERANCE)
            records.append(
                {
                    **record,
                    "status": "ok" if ok else "FAIL",
                    "reference": " + ".join(sorted(references)),
                    "max_error": error,
                    "centered": centered,
                    "max_group_sum": sums_got,
                }
            )
    return records


# ------------------------------------------------------------------------------------------------ timing


def group_mean_baseline(rewards: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """r - mean of its group, with the group lookup every estimator pays for (torch.unique on the labels)."""
    _, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.shape, dtype=rewards.dtype, device=rewards.device).index_add_(0, inverse, rewards)
    return rewards - (sums / counts)[inverse]


def _median_ms(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):  # warm-up: kernels, caches of the weight tables
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def timing(device: torch.device, case_list: list[Case], k: int, repeats: int) -> list[dict[str, Any]]:
    """(b): median milliseconds per call of each case and of the baseline, per shape."""
    records = []
    gen = torch.Generator().manual_seed(0)
    for groups, n in SHAPES:
        rewards = (torch.randint(0, 5, (groups * n,), generator=gen).float() / 4).to(device)
        ids = torch.arange(groups).repeat_interleave(n).to(device)  # verl's layout: each prompt's samples together
        base = _median_ms(lambda r=rewards, i=ids: group_mean_baseline(r, i), device, repeats)
        for case in case_list:
            resolved = resolve(case, k)
            if isinstance(resolved, str):
                continue
            ms = _median_ms(lambda c=resolved, r=rewards, i=ids: call(c, r, i, k), device, repeats)
            records.append(
                {
                    "case": label(case),
                    "groups": groups,
                    "n": n,
                    "k": k,
                    "median_ms": ms,
                    "baseline_ms": base,
                    "ratio": ms / base,
                }
            )
    return records


# ------------------------------------------------------------------------------------------------ main


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Estimator check on {report['device_name']}",
        "",
        f"torch {report['torch']}, device `{report['device']}`; all exact: **{report['ok']}**"
        f" (tolerance {TOLERANCE:g}).",
        "",
        "## Exactness (float64)",
        "",
        "| case | batch | k | status | reference | max error | max group sum |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for r in report["exactness"]:
        if r["status"] in ("ok", "FAIL"):
            group_sum = f"{r['max_group_sum']:.1e}" if r["centered"] else "(not centered)"
            lines.append(
                f"| {r['case']} | {r['batch']} | {r['k']} | {r['status']} | {r['reference']} "
                f"| {r['max_error']:.1e} | {group_sum} |"
            )
        else:
            lines.append(f"| {r['case']} | {r['batch']} | {r['k']} | {r['status']}: {r['reason']} | | | |")
    lines += [
        "",
        f"## Time per call (float32 rewards, median of {report['repeats']}; baseline: torch group mean)",
        "",
        "| case | groups x n | k | ms | baseline ms | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in report["timing"]:
        lines.append(
            f"| {r['case']} | {r['groups']}x{r['n']} | {r['k']} | {r['median_ms']:.3f} "
            f"| {r['baseline_ms']:.3f} | {r['ratio']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Exactness and speed of verl-maxpo's estimators on a device (torch and numpy only).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", default="cuda", help="torch device: cuda, cuda:1, cpu")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="output folder (default: $OUT)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per (case, shape); the median is kept")
    parser.add_argument("--k", type=int, default=4, help="k of the timing runs (exactness uses k = 2, 3, 4, 64)")
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("--out is required when $OUT is not set")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if not 2 <= args.k < SHAPES[0][1]:
        parser.error(
            f"--k must be in [2, {SHAPES[0][1] - 1}] (every timing group has n >= {SHAPES[0][1]}), got {args.k}"
        )
    try:
        args.device = torch.device(args.device)
    except RuntimeError as err:
        parser.error(f"--device: {err}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device (use --device cpu)")
    if args.device.type == "cuda" and (args.device.index or 0) >= torch.cuda.device_count():
        parser.error(f"--device {args.device}: only {torch.cuda.device_count()} CUDA device(s)")
    if args.device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: only cpu and cuda are checked")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: exists and is not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    case_list = cases()
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "cpu"
    report: dict[str, Any] = {
        "device": str(args.device),
        "device_name": name,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "package": str(Path(verl_maxpo.__file__).resolve().parent),  # which checkout was measured
        "repeats": args.repeats,
        "exactness": exactness(args.device, case_list),
        "timing": timing(args.device, case_list, args.k, args.repeats),
    }
    report["ok"] = all(r["status"] in ("ok", "skipped") for r in report["exactness"])
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cuda_check.json").write_text(json.dumps(report, indent=1) + "\n")
        (args.out / "cuda_check.md").write_text(markdown(report))
    except OSError as err:
        print(f"cuda_check: could not write {args.out}: {err}", file=sys.stderr)
        return 2
    bad = [
        f"{r['case']} ({r['batch']}, k={r['k']}): {r.get('reason', r.get('max_error'))}"
        for r in report["exactness"]
        if r["status"] not in ("ok", "skipped")
    ]
    print(f"cuda_check on {name}: {len(report['exactness']) - len(bad)} exactness records fine, {len(bad)} not")
    for line in bad:
        print("  " + line, file=sys.stderr)
    print(f"-> {args.out}/cuda_check.json, cuda_check.md")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
