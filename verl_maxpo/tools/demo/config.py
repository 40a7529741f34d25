"""The demo's options: one argparse parser, checked before any work, turned once into a frozen `DemoConfig`.

Nothing changes an option after parsing: every later stage reads the frozen config (and the worker processes
receive a pickled copy of it), so what a run did is exactly what its config says.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from verl_maxpo.core.table import ARMS, ESTIMATORS, MaxPOOptions
from verl_maxpo.runs.args import MAX_SEED, flat_names, flat_parts, float_in, int_at_least

QUICK = {  # --quick: a smoke run of the whole pipeline (under a minute on 2 cores), used by the tests
    "digits": 2,
    "seeds": 1,
    "steps": 4,
    "prompts_per_step": 8,
    "val_every": 2,
    "val_prompts": 16,
    "val_n": 8,
    "sft_max_steps": 400,
    "sft_target": 0.1,
    "gradvar_draws": 4,
    "gradvar_prompts": 4,
}
# Named settings: --preset NAME replaces these defaults (explicit flags still win; --quick goes on top).
PRESETS: dict[str, dict[str, Any]] = {
    # The regime max@K methods target: held-out pass@1 under 10% at the start (a shorter warm start).
    "sparse": {"sft_target": 0.05},
}
DEFAULT_ARMS = ("maxpo", "grpo", "pkpo")
LOSS_AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
MAX_DIGITS = 9  # operand pairs are drawn from 10**(2*digits) values, which must fit an int64
# Upper bounds of the numeric options (a CPU demo: beyond these a run only fills memory or never ends). Each bound is
# in the option's --help and refused by the parser before any work.
MAX_SEEDS = 100
MAX_K = 64
MAX_N = 1024
MAX_VAL_PROMPTS = 100_000
MAX_STEPS = 1_000_000
MAX_BATCH = 65_536  # prompts per step, warm-start batch, prompts per gradient estimate
MAX_WORKERS = 256
MAX_SAMPLES = 2**20  # sampled responses in one batch (prompts x n): a CPU demo's memory
MAX_LR = 10.0
MAX_TEMPERATURE = 100.0
MAX_GRAD_CLIP = 1e6


def arm_problem(arm: str, k: int) -> str | None:
    """Why `arm` cannot run at this k (its fixed options with k, validated as verl's call will validate them), or
    None. verl's own estimators (grpo) read no algorithm.maxpo options."""
    spec = ARMS[arm]
    if spec.estimator not in ESTIMATORS:
        return None
    try:
        MaxPOOptions.parse({"k": k, **spec.options}, spec.estimator)
    except ValueError as err:
        return str(err)
    return None


def gradvar_skipped(k: int) -> dict[str, str]:
    """The arms the gradient-variance section leaves out at this k (it covers every arm of the table, also those
    not in the A/B), with the reason. An A/B arm that cannot run is refused by the parser instead."""
    return {arm: problem for arm in ARMS if (problem := arm_problem(arm, k)) is not None}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or `taskset` narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class DemoConfig:
    """Every option of one demo run, fixed at parse time. `out` is absolute; `arms` are names in ARMS."""

    out: Path
    force: bool
    quick: bool
    preset: str | None
    device: str
    workers: int
    no_progress: bool
    arms: tuple[str, ...]
    seeds: int
    seed: int
    base_seeds: int
    k: int
    n: int
    digits: int
    reward: str
    val_prompts: int
    sft_target: float
    sft_max_steps: int
    sft_lr: float
    sft_batch: int
    steps: int
    prompts_per_step: int
    lr: float
    grad_clip: float
    loss_agg_mode: str
    temperature: float
    val_every: int
    val_n: int
    gradvar_draws: int
    gradvar_prompts: int
    primary_metric: str
    baseline: str
    compare: tuple[tuple[str, str], ...]

    @property
    def base_seed_list(self) -> list[int]:
        """Base seed j is --seed + j * --seeds: each base seed's RL seeds follow it, so no two runs share a seed."""
        return [self.seed + j * self.seeds for j in range(self.base_seeds)]

    @property
    def seed_list(self) -> list[int]:
        """Every RL seed, base seed by base seed (with one base seed: --seed, --seed + 1, ...)."""
        return [b + i for b in self.base_seed_list for i in range(self.seeds)]

    def base_of(self, seed: int) -> int:
        """The base seed (model init, warm start, held-out set) of an RL seed."""
        return self.seed + (seed - self.seed) // self.seeds * self.seeds

    @property
    def val_ks(self) -> list[int]:
        """The k of the validation metrics: pass@1, pass@k (the estimators' k) and pass@n (every sample)."""
        return sorted({1, self.k, self.val_n})

    def settings(self) -> dict[str, Any]:
        """The options that change results (for logs and summary.json): all but where and how to run."""
        skip = {"out", "force", "no_progress", "workers", "primary_metric", "baseline", "compare"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "out": str(self.out),
            "arms": list(self.arms),
            "compare": [list(p) for p in self.compare],
        }


def _device(text: str) -> str:
    """argparse type: a torch device that exists on this machine (refuses `cuda` without a GPU)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is visible to torch here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: the demo runs on cpu or cuda")
    return text


def build_parser() -> argparse.ArgumentParser:
    """All options of the demo, each documented and range-checked where it is declared."""
    import torch

    from verl_maxpo.tasks.addition import AdditionTask

    p = argparse.ArgumentParser(
        prog="verl-maxpo demo",
        description="End-to-end A/B of max@K advantage estimators on a synthetic addition task, on CPU, with "
        "verl's pieces.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    lr = float_in(0.0, MAX_LR, low_open=True)
    # outputs and run control
    p.add_argument("--out", default="maxpo_demo", help="output folder (runs/, report.md, summary.md, PNGs)")
    p.add_argument("--force", action="store_true", help="replace the demo's earlier outputs in a non-empty --out")
    p.add_argument("--quick", action="store_true", help=f"smoke run under a minute; overrides {sorted(QUICK)}")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help=f"named settings: {PRESETS}")
    p.add_argument("--device", type=_device, default="cuda" if torch.cuda.is_available() else "cpu", help="device")
    p.add_argument(
        "--workers", type=int_at_least(1, MAX_WORKERS), default=min(usable_cores(), MAX_WORKERS),
        help="RL runs at once, one single-threaded process each (default: the usable cores); results do not "
        "depend on it",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    # the A/B
    p.add_argument(
        "--estimators", nargs="+", default=list(DEFAULT_ARMS), metavar="ARM",
        help=f"A/B arms, space- or comma-separated; one of {', '.join(ARMS)}",
    )  # fmt: skip
    p.add_argument(
        "--seeds",
        type=int_at_least(1, MAX_SEEDS),
        default=3,
        help=f"RL seeds per arm, 1..{MAX_SEEDS} (seed i is --seed + i)",
    )
    p.add_argument(
        "--seed", type=int_at_least(0, MAX_SEED), default=0,
        help=f"base seed, 0..{MAX_SEED}: model, warm start, held-out set, RL",
    )  # fmt: skip
    p.add_argument("--k", type=int_at_least(1, MAX_K), default=4, help=f"k of max@k (algorithm.maxpo.k), 1..{MAX_K}")
    p.add_argument(
        "--n", type=int_at_least(2, MAX_N), default=8, help=f"samples per training prompt (rollout.n), 2..{MAX_N}"
    )
    # task
    p.add_argument("--digits", type=int_at_least(1), default=3, help=f"digits per operand (1..{MAX_DIGITS})")
    p.add_argument(
        "--val-prompts", type=int_at_least(1, MAX_VAL_PROMPTS), default=64,
        help=f"held-out prompts, never trained on, 1..{MAX_VAL_PROMPTS} (and at most half the operand pairs)",
    )  # fmt: skip
    p.add_argument(
        "--base-seeds", type=int_at_least(1, MAX_SEEDS), default=1,
        help=f"base seeds (model init, warm start, held-out set), 1..{MAX_SEEDS}, each with --seeds RL seeds; base "
        "seed j is --seed + j * --seeds. With 2 or more, verdicts are t-tests over base seeds (per-base-seed means)",
    )  # fmt: skip
    p.add_argument(
        "--reward", choices=AdditionTask.REWARDS, default="exact",
        help="RL reward: exact (1 for an exact answer, else 0) or partial (the fraction of answer tokens right); "
        "pass@k counts exact answers either way",
    )  # fmt: skip
    # warm start (supervised)
    p.add_argument(
        "--sft-target", type=float_in(0.0, 1.0, low_open=True), default=0.15,
        help="stop the warm start at this sampled pass@1 on training prompts, in (0, 1]",
    )  # fmt: skip
    p.add_argument(
        "--sft-max-steps", type=int_at_least(1, MAX_STEPS), default=3000,
        help=f"upper bound on warm-start steps, 1..{MAX_STEPS}",
    )  # fmt: skip
    p.add_argument("--sft-lr", type=lr, default=3e-3, help=f"warm-start AdamW learning rate, in (0, {MAX_LR:g}]")
    p.add_argument(
        "--sft-batch", type=int_at_least(1, MAX_BATCH), default=128,
        help=f"warm-start batch of (prompt, answer), 1..{MAX_BATCH}",
    )  # fmt: skip
    # RL (verl's names in brackets)
    p.add_argument(
        "--steps", type=int_at_least(1, MAX_STEPS), default=150,
        help=f"RL steps per run (total_training_steps), 1..{MAX_STEPS}",
    )  # fmt: skip
    p.add_argument(
        "--prompts-per-step", type=int_at_least(1, MAX_BATCH), default=32,
        help=f"prompts per step (train_batch_size), 1..{MAX_BATCH}",
    )  # fmt: skip
    p.add_argument("--lr", type=lr, default=3e-4, help=f"RL AdamW learning rate (actor.optim.lr), in (0, {MAX_LR:g}]")
    p.add_argument(
        "--grad-clip", type=float_in(0.0, MAX_GRAD_CLIP, low_open=True), default=1.0,
        help=f"gradient norm clip (actor.grad_clip), in (0, {MAX_GRAD_CLIP:g}]",
    )  # fmt: skip
    p.add_argument("--loss-agg-mode", choices=LOSS_AGG_MODES, default="token-mean", help="actor.loss_agg_mode")
    p.add_argument(
        "--temperature", type=float_in(0.0, MAX_TEMPERATURE, low_open=True), default=1.0,
        help=f"sampling temperature, training and validation, in (0, {MAX_TEMPERATURE:g}]",
    )  # fmt: skip
    # validation
    p.add_argument(
        "--val-every", type=int_at_least(1, MAX_STEPS), default=10,
        help=f"validate every this many steps (+0, end), 1..{MAX_STEPS}",
    )  # fmt: skip
    p.add_argument(
        "--val-n", type=int_at_least(2, MAX_N), default=16, help=f"samples per held-out prompt (needs > k), 2..{MAX_N}"
    )
    # gradient variance
    p.add_argument(
        "--gradvar-draws", type=int_at_least(2, MAX_STEPS), default=64,
        help=f"gradient estimates per checkpoint, 2..{MAX_STEPS}",
    )  # fmt: skip
    p.add_argument(
        "--gradvar-prompts", type=int_at_least(1, MAX_BATCH), default=16,
        help=f"prompts per gradient estimate, 1..{MAX_BATCH}",
    )  # fmt: skip
    # verdicts (verl_maxpo.tools.stats)
    p.add_argument(
        "--primary-metric", default=None, metavar="METRIC",
        help="the metric that gets verdicts: avg_pass@K or final_pass@K for a validation K (default avg_pass@k, "
        "the trained k); the others are shown descriptively",
    )  # fmt: skip
    p.add_argument("--baseline", default=None, metavar="ARM", help="the arm every other arm is tested against "
                   "(default maxpo, or the first arm without maxpo)")  # fmt: skip
    p.add_argument(
        "--compare", nargs="+", default=[], metavar="ARM:ARM",
        help="extra arm-against-arm tests, e.g. pkpo:grpo (same Holm family as the tests against the baseline)",
    )  # fmt: skip
    return p


def verdict_metrics(val_ks: list[int]) -> list[str]:
    """The metrics a summary can give verdicts on: avg_pass@k then final_pass@k, for every validation k."""
    return [f"avg_pass@{k}" for k in val_ks] + [f"final_pass@{k}" for k in val_ks]


def _verdict_options(parser: argparse.ArgumentParser, args: argparse.Namespace, arms: list[str]) -> dict[str, Any]:
    """--primary-metric, --baseline and --compare, checked against the arms and the validation k."""
    val_ks = sorted({1, args.k, args.val_n})
    primary = args.primary_metric if args.primary_metric is not None else f"avg_pass@{args.k}"
    if primary not in verdict_metrics(val_ks):
        parser.error(f"--primary-metric {primary!r}: choose from {', '.join(verdict_metrics(val_ks))}")
    baseline = args.baseline if args.baseline is not None else ("maxpo" if "maxpo" in arms else arms[0])
    if baseline not in arms:
        parser.error(f"--baseline {baseline!r} is not among --estimators ({', '.join(arms)})")
    pairs = []
    for part in flat_parts(args.compare):
        a, sep, b = part.partition(":")
        if not sep or a not in arms or b not in arms or a == b:
            parser.error(f"--compare {part!r}: give ARM:ARM, two different arms of --estimators ({', '.join(arms)})")
        pairs.append((a, b))
    return {"primary_metric": primary, "baseline": baseline, "compare": tuple(pairs)}


def parse_config(argv: list[str] | None) -> DemoConfig:
    """Parse and check argv, all before any work; --preset then --quick replace defaults (explicit flags win)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset or args.quick:
        parser.set_defaults(**PRESETS.get(args.preset, {}), **(QUICK if args.quick else {}))
        args = parser.parse_args(argv)
    try:
        arms = flat_names(args.estimators, "--estimators", choices=ARMS)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if args.digits > MAX_DIGITS:
        parser.error(f"--digits must be at most {MAX_DIGITS}, got {args.digits}")
    if args.val_prompts > 10 ** (2 * args.digits) // 2:
        parser.error(f"--val-prompts {args.val_prompts} is too many for {args.digits}-digit operands")
    for name in arms:
        spec = ESTIMATORS.get(ARMS[name].estimator)
        if spec is None:
            continue
        if args.k < spec.min_k:
            parser.error(f"{name} needs --k >= {spec.min_k} (at k = {args.k} {spec.name} has no baseline)")
        if args.n < spec.min_group_size(args.k):
            parser.error(f"--n ({args.n}) must be at least {spec.min_group_size(args.k)} for {name} at k = {args.k}")
        if problem := arm_problem(name, args.k):  # an arm's fixed options that do not fit k (maxpo_top2: m <= k)
            parser.error(f"--estimators {name} cannot run at --k {args.k}: {problem}")
    for option, prompts, n in (
        ("--prompts-per-step", args.prompts_per_step, args.n),
        ("--gradvar-prompts", args.gradvar_prompts, args.n),
        ("--val-prompts", args.val_prompts, args.val_n),
    ):
        if prompts * n > MAX_SAMPLES:
            parser.error(f"{option} x n = {prompts * n} samples in one batch; at most {MAX_SAMPLES} on a CPU demo")
    if args.val_n < args.k + 1:
        parser.error(f"--val-n ({args.val_n}) must be at least k+1 = {args.k + 1}")
    if not args.out.strip():
        parser.error("--out is empty; give a folder (--out . is the current folder)")
    values = {**vars(args), "out": Path(args.out).absolute(), "arms": tuple(arms)}
    values |= _verdict_options(parser, args, arms)
    del values["estimators"]
    return DemoConfig(**values)
