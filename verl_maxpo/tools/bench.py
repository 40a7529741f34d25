"""`verl-maxpo bench`: the cost of our estimators (one row per A/B arm of the estimator table, so one per maxpo
objective, plus a bench-only `maxpo_weights` row) against verl's built-in outcome estimators.

Every estimator is looked up in verl's registry (`core_algos.get_adv_estimator_fn`) and called the way verl's
trainer calls it: token_level_rewards (B, L), response_mask (B, L), index (B,) numpy object array of uuid strings
(each repeated n times, contiguous like verl's rollout batch), config = the algorithm section. Rewards are 0/1 with
a per-prompt success probability drawn from Beta(0.6, 1.2) (mean 1/3: many hard prompts, a few easy ones), placed
on the last response token as verl's reward managers do.

Time: median over repeated calls in this process after one warm-up call. Calls slower than `SLOW_CALL_S` get
fewer repeats (at least 3) so the default bench stays short; the table shows each row's repeat count.

Peak extra memory:
  CPU:  growth of the process's peak resident set (VmHWM) during one call, outputs included, measured in a
        separate process that tells glibc to hand freed memory back to the OS at once (mallopt) so the RSS tracks
        live allocations; the peak is reset through /proc/self/clear_refs before each call (Linux only).
        Unlike tracemalloc this sees torch and numpy buffers. Page granularity (4 KiB).
  CUDA: torch.cuda.max_memory_allocated() during the call minus the allocation before it.
  --quick measures none (its batches are below that resolution): the table drops the column and says why.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from verl_maxpo.core.table import ARMS
from verl_maxpo.core.table import ESTIMATORS as TABLE
from verl_maxpo.runs import command, strict_json
from verl_maxpo.runs.args import MAX_SEED, flat_names, int_at_least

__all__ = ["ESTIMATORS", "main", "make_inputs", "peak_rss_growth", "run_bench"]

# Rows of ours: every A/B arm of the table whose estimator is ours (one per objective for maxpo), plus one
# bench-only maxpo row with general rank weights; then verl's own outcome estimators.
BENCH_ONLY = {"maxpo_weights": ("maxpo", {"objective": "weights"})}  # rank_weights (1..k)/k, set per k
OURS = (*(name for name, arm in ARMS.items() if arm.estimator in TABLE), *BENCH_ONLY)
ESTIMATORS = (*OURS, "grpo", "grpo_vectorized", "rloo", "rloo_vectorized", "grpo_passk")
BASELINE = "grpo_vectorized"
DEFAULT_SHAPES = ((1024, 16), (256, 64), (64, 256), (16, 1024))
QUICK_SHAPES = ((16, 8), (4, 32))
SCALING_BATCH = 16384
SCALING_NS = tuple(2**e for e in range(3, 13))  # 8 .. 4096
QUICK_SCALING_BATCH = 256
QUICK_SCALING_NS = (8, 32, 128)
DEFAULT_REPEATS = 7
SLOW_CALL_S = 0.5  # a warm-up call slower than this gets fewer repeats: about SLOW_BUDGET_S per row
SLOW_BUDGET_S = 2.0
MIN_REPEATS = 3

# --quick batches hold at most 128 x 16 floats (8 KiB a tensor): below what page-granular peak-RSS growth resolves
# (every row read 0.0 MiB), and a column of zeros would claim a measurement that was never made.
QUICK_MEMORY_NOTE = (
    "not measured with --quick: its batches (8 KiB per tensor) are below the resolution of peak-RSS growth; "
    "run without --quick for the memory column"
)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
# Upper bounds of the options, checked by the parser: the largest batch is 16384 rows, so a (16384, L) float32
# tensor takes 512 MiB at the largest L.
MAX_RESPONSE_LENGTH = 8192
MAX_REPEATS = 10_000
MAX_THREADS = 1024


def _target(name: str) -> tuple[str, dict[str, Any]]:
    """(verl estimator name, fixed algorithm.maxpo options) of a bench row: an arm, a bench-only row or verl's."""
    if name in BENCH_ONLY:
        return BENCH_ONLY[name]
    arm = ARMS.get(name)
    return (arm.estimator, dict(arm.options)) if arm is not None else (name, {})


def algorithm_config(k: int, name: str = "maxpo") -> Any:
    """The algorithm section verl hands to estimators: GRPO's std switch on (verl's default) plus MaxPO's block
    with the row's own options (objective, m, rank_weights)."""
    from omegaconf import OmegaConf

    options = {"k": k, "norm_by_std": False, **_target(name)[1]}
    if options.get("objective") == "weights":
        options["rank_weights"] = [j / k for j in range(1, k + 1)]
    return OmegaConf.create({"norm_adv_by_std_in_grpo": True, "maxpo": options})


def make_inputs(groups: int, n: int, length: int, device: str | torch.device = "cpu", seed: int = 0) -> dict[str, Any]:
    """Synthetic verl batch: binary outcome rewards on the last response token.

    Returns:
        {"token_level_rewards": (B, L) float32, "response_mask": (B, L) float32, "index": (B,) object array of uuid
        strings}, B = groups * n, L = length, tensors on `device`.
    """
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 1.2, size=(groups, 1))
    scores = (rng.random((groups, n)) < p).astype(np.float32).reshape(-1)
    lengths = rng.integers(max(1, length // 4), length + 1, size=groups * n)
    positions = np.arange(length)
    mask = (positions[None, :] < lengths[:, None]).astype(np.float32)
    rewards = np.zeros((groups * n, length), dtype=np.float32)
    rewards[np.arange(groups * n), lengths - 1] = scores
    uids = np.array([str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**63, size=groups)], dtype=object)
    return {
        "token_level_rewards": torch.from_numpy(rewards).to(device),
        "response_mask": torch.from_numpy(mask).to(device),
        "index": np.repeat(uids, n),
    }


def _estimator(name: str) -> Callable[..., Any]:
    from verl.trainer.ppo import core_algos

    import verl_maxpo.integration.adapter  # noqa: F401  (registers maxpo/pkpo even without the entry point)

    return core_algos.get_adv_estimator_fn(_target(name)[0])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _check_output(name: str, out: Any, batch: dict[str, Any], device: str) -> None:
    adv = out[0] if isinstance(out, tuple) else out
    want = tuple(batch["token_level_rewards"].shape)
    if tuple(adv.shape) != want or adv.device.type != torch.device(device).type:
        raise RuntimeError(f"{name} returned shape {tuple(adv.shape)} on {adv.device}, expected {want} on {device}")
    if not bool(torch.isfinite(adv).all()):
        raise RuntimeError(f"{name} returned NaN/inf advantages")


def time_estimator(
    name: str, batch: dict[str, Any], config: Any, device: str, repeats: int
) -> tuple[float, list[float]]:
    """Median wall time (s) of `repeats` calls after one warm-up call (fewer repeats for slow calls).

    Returns:
        (median seconds, every timed call in seconds).
    """
    fn = _estimator(name)
    _sync(device)
    t0 = time.perf_counter()
    out = fn(**batch, config=config)
    _sync(device)
    first = time.perf_counter() - t0
    _check_output(name, out, batch, device)
    del out
    if first > SLOW_CALL_S:
        repeats = min(repeats, max(MIN_REPEATS, int(SLOW_BUDGET_S / first)))
    times = _time_calls(lambda: fn(**batch, config=config), device, repeats)
    return statistics.median(times), times


def _time_calls(call: Any, device: str, repeats: int) -> list[float]:
    """Wall time in seconds of each of `repeats` calls, synchronizing the device around each one."""
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _read_status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _tune_malloc() -> bool:
    """Make glibc return freed memory to the OS immediately, so that RSS follows live allocations."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 0))
    except (OSError, AttributeError):
        return False


def _proc_peak_available() -> bool:
    """Whether the peak RSS can be reset and read (Linux /proc)."""
    return os.access("/proc/self/clear_refs", os.W_OK) and os.path.exists("/proc/self/status")


def peak_rss_growth(fn: Callable[[], Any]) -> int:
    """Bytes by which this process's peak RSS rises above its current RSS while `fn()` runs (its result kept
    alive until the peak is read). Linux only: resets the peak through /proc/self/clear_refs.

    Raises:
        OSError: /proc/self/clear_refs is not available.
    """
    gc.collect()
    before = _read_status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # reset VmHWM to the current RSS
    result = fn()
    peak = _read_status_kib("VmHWM")
    del result
    return max(0, peak - before) * 1024


def _memory_worker() -> None:
    """Subprocess entry: read a spec on stdin, print {"rows": [[groups, n, name, bytes], ...]} on stdout."""
    spec = json.loads(sys.stdin.read())
    from tqdm import tqdm

    tuned = _tune_malloc()
    torch.set_num_threads(spec["threads"])
    rows = []
    jobs = [(g, n, name) for g, n in spec["shapes"] for name in spec["estimators"]]
    batch_key, batch = None, None
    for g, n, name in tqdm(jobs, desc="peak memory (subprocess)", file=sys.stderr, disable=spec["quiet"]):
        if batch_key != (g, n):
            batch, batch_key = make_inputs(g, n, spec["length"], "cpu", spec["seed"]), (g, n)
        try:
            fn, config = _estimator(name), algorithm_config(spec["k"], name)
            fn(**batch, config=config)  # warm-up: lazy imports and caches are not the call's cost
            used = peak_rss_growth(lambda fn=fn, batch=batch, config=config: fn(**batch, config=config))
        except Exception as err:  # noqa: BLE001  reported in the table, the bench goes on
            used = f"{type(err).__name__}: {err}"
        rows.append([g, n, name, used])
    print(json.dumps({"rows": rows, "malloc_tuned": tuned}))


def measure_cpu_memory(
    shapes: Sequence[tuple[int, int]], estimators: Sequence[str], length: int, k: int, seed: int, quiet: bool
) -> tuple[dict[tuple[int, int, str], int | str], str]:
    """Peak extra CPU memory of each (shape, estimator) from one fresh subprocess; (results, method or reason)."""
    if not _proc_peak_available():
        return {}, "not measured: needs Linux /proc/self/clear_refs"
    spec = {"shapes": list(shapes), "estimators": list(estimators), "length": length, "k": k, "seed": seed}
    spec.update(quiet=quiet, threads=torch.get_num_threads())
    code = "from verl_maxpo.tools.bench import _memory_worker; _memory_worker()"
    # The worker's progress bar goes straight to our stderr; when quiet its stderr is kept for the error message.
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(spec),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {}, f"not measured: the memory subprocess failed with exit status {proc.returncode}"
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    method = "peak RSS growth in a fresh process (VmHWM, glibc mallopt: freed memory returned to the OS)"
    if not payload["malloc_tuned"]:
        method += "; mallopt unavailable, so reused heap memory is not counted"
    return {(g, n, name): used for g, n, name, used in payload["rows"]}, method


def _cuda_peak(name: str, batch: dict[str, Any], config: Any) -> int:
    fn = _estimator(name)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn(**batch, config=config)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return int(peak)


def time_scaling(
    batch: int, ns: Sequence[int], k: int, repeats: int, device: str, seed: int, progress: Any
) -> list[dict[str, Any]]:
    """Median time of `maxpo_advantages` on `batch` rewards (uuid group ids) for each group size n."""
    from verl_maxpo.core.estimators import maxpo_advantages

    rows = []
    for n in (n for n in ns if n > k):  # maxpo needs n >= k+1: smaller sizes would raise
        inputs = make_inputs(batch // n, n, 1, device, seed)
        rewards = inputs["token_level_rewards"][:, 0]
        maxpo_advantages(rewards, inputs["index"], k)  # warm-up
        times = _time_calls(lambda r=rewards, i=inputs["index"]: maxpo_advantages(r, i, k), device, repeats)
        med = statistics.median(times)
        rows.append(
            {
                "device": device,
                "batch": batch,
                "n": n,
                "groups": batch // n,
                "median_s": med,
                "ns_per_sample_log2n": med / (batch * math.log2(n)) * 1e9,
                "repeats": repeats,
            }
        )
        progress.update(1)
    return rows


def run_bench(
    shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES,
    estimators: Sequence[str] = ESTIMATORS,
    devices: Sequence[str] = ("cpu",),
    repeats: int = DEFAULT_REPEATS,
    length: int = 256,
    k: int = 4,
    scaling_batch: int = SCALING_BATCH,
    scaling_ns: Sequence[int] = SCALING_NS,
    memory: bool = True,
    seed: int = 0,
    quiet: bool = False,
) -> dict[str, Any]:
    """Time (and measure memory of) every estimator on every shape and device, plus the maxpo scaling sweep.

    Returns:
        {"env": {...}, "rows": [{"device", "groups", "n", "batch", "estimator", "median_s", "ratio_to_baseline",
        "peak_extra_bytes", "repeats", "error"}], "scaling": [...], "memory_method": {device: str}}.
    """
    from tqdm import tqdm

    result: dict[str, Any] = {
        "env": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            # Other processes on the machine inflate CPU times (torch's parallel kernels suffer most): say so.
            "load_avg_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "cpu": platform.processor() or platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "response_length": length,
            "k": k,
            "repeats": repeats,
            "baseline": BASELINE,
        },
        "rows": [],
        "scaling": [],
        "memory_method": {},
    }
    mem_cpu: dict[tuple[int, int, str], int | str] = {}
    if memory and "cpu" in devices:
        mem_cpu, result["memory_method"]["cpu"] = measure_cpu_memory(shapes, estimators, length, k, seed, quiet)
    total = len(devices) * (len(shapes) * len(estimators) + len(scaling_ns))
    progress = tqdm(total=total, desc="timing", file=sys.stderr, disable=quiet)
    for device in devices:
        if device.startswith("cuda") and memory:
            result["memory_method"][device] = "torch.cuda.max_memory_allocated() minus the allocation before the call"
        for g, n in shapes:
            batch = make_inputs(g, n, length, device, seed)
            rows = []
            for name in estimators:
                progress.set_postfix_str(f"{device} {g}x{n} {name}")
                row: dict[str, Any] = {"device": device, "groups": g, "n": n, "batch": g * n, "estimator": name}
                row.update(median_s=None, repeats=0, error=None, peak_extra_bytes=None)
                try:
                    config = algorithm_config(k, name)
                    row["median_s"], times = time_estimator(name, batch, config, device, repeats)
                    row["repeats"] = len(times)
                    if memory and device.startswith("cuda"):
                        row["peak_extra_bytes"] = _cuda_peak(name, batch, config)
                except Exception as err:  # noqa: BLE001  one failing estimator must not hide the others
                    row["error"] = f"{type(err).__name__}: {err}"
                mem = mem_cpu.get((g, n, name)) if device == "cpu" else None
                if isinstance(mem, int):
                    row["peak_extra_bytes"] = mem
                elif isinstance(mem, str) and row["error"] is None:
                    row["error"] = f"memory: {mem}"
                rows.append(row)
                progress.update(1)
            base = next((r["median_s"] for r in rows if r["estimator"] == BASELINE), None)
            for r in rows:
                r["ratio_to_baseline"] = r["median_s"] / base if base and r["median_s"] is not None else None
            result["rows"] += rows
            del batch
        result["scaling"] += time_scaling(scaling_batch, scaling_ns, k, repeats, device, seed, progress)
    progress.close()
    return result


def format_tables(result: dict[str, Any]) -> str:
    """The bench result as markdown tables with a header naming the machine and the method."""
    env = result["env"]
    lines = [
        f"verl-maxpo bench: torch {env['torch']}, {env['threads']} torch thread(s) on {env['cpus']} CPU(s)"
        + (
            f" (1-min load {env['load_avg_1min_at_start']:.1f} at start)"
            if env["load_avg_1min_at_start"] is not None
            else ""
        )
        + (f", GPU {env['cuda']}" if env["cuda"] else "")
        + f"; response length {env['response_length']}, maxpo/pkpo k={env['k']}, 0/1 rewards, uuid group ids",
        f"time: median of up to {env['repeats']} calls after a warm-up (calls over {SLOW_CALL_S:g} s: fewer, "
        f"at least {MIN_REPEATS}; see `runs`)",
    ]
    for device, method in result["memory_method"].items():
        lines.append(f"peak extra memory ({device}): {method}")
    show_mem = any(r["peak_extra_bytes"] is not None for r in result["rows"])  # no column of n/a alone
    mem_head, mem_rule = (" peak extra MiB |", "---:|") if show_mem else ("", "")
    lines += [
        "",
        f"| device | groups x n | estimator | median ms | x {BASELINE} |{mem_head} runs |",
        f"|---|---|---|---:|---:|{mem_rule}---:|",
    ]
    for r in result["rows"]:
        ms = "error" if r["median_s"] is None else f"{r['median_s'] * 1e3:.2f}"
        ratio = "" if r.get("ratio_to_baseline") is None else f"{r['ratio_to_baseline']:.2f}"
        mem = "n/a" if r["peak_extra_bytes"] is None else f"{r['peak_extra_bytes'] / 2**20:.1f}"
        mem_cell = f" {mem} |" if show_mem else ""
        shape = f"{r['groups']} x {r['n']}"
        lines.append(f"| {r['device']} | {shape} | {r['estimator']} | {ms} | {ratio} |{mem_cell} {r['repeats']} |")
    errors = [r for r in result["rows"] if r["error"]]
    for r in errors:
        lines.append(f"- {r['device']} {r['groups']} x {r['n']} {r['estimator']}: {r['error']}")
    if result["scaling"]:
        batch = result["scaling"][0]["batch"]
        lines += [
            "",
            f"maxpo_advantages alone (rewards (N,), uuid ids, k={env['k']}) at N = {batch} samples, group size n "
            "growing: a constant last column means time ~ N log n",
            "",
            "| device | n | groups | median ms | ns / (N log2 n) |",
            "|---|---:|---:|---:|---:|",
        ]
        for s in result["scaling"]:
            lines.append(
                f"| {s['device']} | {s['n']} | {s['groups']} | {s['median_s'] * 1e3:.2f} | "
                f"{s['ns_per_sample_log2n']:.2f} |"
            )
        for device in dict.fromkeys(s["device"] for s in result["scaling"]):
            rows = [s for s in result["scaling"] if s["device"] == device]
            first, last = rows[0], rows[-1]
            lines.append(
                f"- {device}: time x{last['median_s'] / first['median_s']:.2f} from n={first['n']} to n={last['n']}; "
                f"pure N log n growth would be x{math.log2(last['n']) / math.log2(first['n']):.2f} (below that, "
                "per-sample work independent of n dominates)"
            )
    return "\n".join(lines)


def _known_estimators() -> list[str]:
    """Our rows first, then every other name in verl's registry (in its order)."""
    from verl.trainer.ppo import core_algos

    import verl_maxpo.integration.adapter  # noqa: F401  (registers ours)

    return list(dict.fromkeys([*ESTIMATORS, *core_algos.ADV_ESTIMATOR_REGISTRY]))


def _k_problem(names: Sequence[str], k: int, shapes: Sequence[tuple[int, int]]) -> str | None:
    """Why a row of ours cannot run at this k on every shape (checked before any timing, so no row fails after the
    others ran), or None."""
    from verl_maxpo.core.table import MaxPOOptions

    n_min = min(n for _, n in shapes)
    for name in names:
        estimator, _ = _target(name)
        spec = TABLE.get(estimator)
        if spec is None:  # verl's own: reads no algorithm.maxpo
            continue
        if spec.min_group_size(k) > n_min:  # first: it bounds k, so the options below are built for a small k
            return (
                f"--k {k}: the {name} row needs groups of n >= {spec.min_group_size(k)}, and the smallest group "
                f"size of the bench is n = {n_min}; use a smaller --k or leave {name} out of --estimators"
            )
        try:
            MaxPOOptions.parse(dict(algorithm_config(k, name).maxpo), estimator)
        except ValueError as err:
            return f"--k {k}: the {name} row cannot run ({err}); use another --k or leave {name} out of --estimators"
    return None


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verl-maxpo bench",
        description=f"Time {', '.join(OURS)} against verl's grpo, grpo_vectorized, rloo, rloo_vectorized, "
        "grpo_passk through verl's estimator registry, with peak extra memory, on CPU and CUDA when present.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds; for tests and smoke checks)")
    p.add_argument(
        "--repeats", type=int_at_least(1, MAX_REPEATS), default=None,
        help=f"timed calls per row, 1..{MAX_REPEATS} (default {DEFAULT_REPEATS})",
    )  # fmt: skip
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CPU, plus CUDA if present")
    p.add_argument(
        "--estimators",
        nargs="+",
        default=list(ESTIMATORS),
        metavar="NAME",
        help="subset to time, space- or comma-separated (any name in verl's registry)",
    )
    p.add_argument(
        "--k", type=int_at_least(1), default=4,
        help="algorithm.maxpo.k of our rows (default 4); every row of ours must run on the smallest group size",
    )  # fmt: skip
    p.add_argument(
        "--response-length", type=int_at_least(1, MAX_RESPONSE_LENGTH), default=None,
        help=f"L of the (B, L) tensors, 1..{MAX_RESPONSE_LENGTH} (default 256)",
    )  # fmt: skip
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument(
        "--threads", type=int_at_least(1, MAX_THREADS), default=None,
        help=f"torch.set_num_threads, 1..{MAX_THREADS} (default: torch's own)",
    )  # fmt: skip
    p.add_argument("--seed", type=int_at_least(0, MAX_SEED), default=0, help=f"0..{MAX_SEED}")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `verl-maxpo bench` (runs/command.py owns the exit status)."""
    return command.run("bench", _main, argv)


def _main(argv: list[str]) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        args.estimators = flat_names(args.estimators, "--estimators", _known_estimators())
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device (use --device cpu or auto)")
    if problem := _k_problem(args.estimators, args.k, QUICK_SHAPES if args.quick else DEFAULT_SHAPES):
        parser.error(problem)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else ["cpu"]
    if args.device == "auto" and torch.cuda.is_available():
        devices.append("cuda")
    if BASELINE not in args.estimators:
        args.estimators = [*args.estimators, BASELINE]  # ratios need it
    quick = args.quick
    memory = not args.no_memory and not quick
    result = run_bench(
        shapes=QUICK_SHAPES if quick else DEFAULT_SHAPES,
        estimators=args.estimators,
        devices=devices,
        repeats=args.repeats or (2 if quick else DEFAULT_REPEATS),
        length=args.response_length or (16 if quick else 256),
        k=args.k,
        scaling_batch=QUICK_SCALING_BATCH if quick else SCALING_BATCH,
        scaling_ns=QUICK_SCALING_NS if quick else SCALING_NS,
        memory=memory,
        seed=args.seed,
    )
    if quick and not args.no_memory:
        result["memory_method"]["all"] = QUICK_MEMORY_NOTE
    if args.json:
        print(strict_json.dumps(result, indent=1))
    else:
        print(format_tables(result))
    return 1 if any(r["error"] for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
