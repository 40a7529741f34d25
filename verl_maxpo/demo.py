"""`verl-maxpo demo`: MaxPO vs GRPO vs PKPO, end to end on a CPU in minutes, with verl's own RL pieces.

What one run does, top to bottom in this file:
  1. Task: fixed-width addition ("047+385=" -> "0432</s>"), reward 1 for an exact answer, else 0. A held-out set
     of prompts is never trained on. The tokenizer is a character-level `tokenizers` WordLevel model made here.
  2. Policy: a randomly initialised 2-layer Llama (transformers), warm-started by supervised training on correct
     answers until the sampled pass@1 on fresh training prompts reaches --sft-target (sparse rewards: the setting
     max@K is for). Every RL run starts from this one checkpoint.
  3. RL: for each estimator and seed, the same prompts, samples per prompt, optimizer and seeds. Each step builds
     a `verl.DataProto`, gets advantages from verl's `compute_advantage` (estimators looked up in verl's registry,
     where `maxpo`/`pkpo` are registered by our plugin), and the loss from verl's registered policy loss
     (`vanilla`, which aggregates with `core_algos.agg_loss`). Metrics go through verl's `Tracking` file backend.
  4. Validation every --val-every steps: --val-n samples per held-out prompt, dumped exactly as verl's
     `RayPPOTrainer._write_generations` does; `verl_maxpo.report.write_report` turns the dumps into report.md and
     curves.
  5. Gradient variance (the paper's headline claim): at fixed checkpoints, many independent policy-gradient
     estimates, every estimator computed on the same samples; trace(Cov) / |E g|^2 and cosine to the mean.

Output layout (what `verl-maxpo report` reads):
  OUT/runs/<estimator>_seed<s>/{val/<step>.jsonl, train_log.jsonl, meta.json}
  OUT/report.md, OUT/*.png (write_report), OUT/summary.md and OUT/summary.json (this file: tables + grad variance)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verl_maxpo.addition_task import AdditionTask, build_policy, response_log_probs, sample
from verl_maxpo.cli_args import flat_names, float_in, int_at_least
from verl_maxpo.report_metrics import MeanSE, Metric, mean_se, step_metrics
from verl_maxpo.run_folder import RunFolder, RunMeta

QUICK = {  # --quick: a smoke run of the whole pipeline (well under a minute on 2 cores), used by the tests
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
# Estimators that read algorithm.maxpo.k (and need n >= k+1); the others ignore k.
K_ESTIMATORS = ("maxpo", "pkpo", "pkpo_loo")
# ... and those with no baseline at k = 1 (pkpo's baseline is the (k-1)-statistic of the others).
NEEDS_K2 = ("pkpo",)
LOSS_AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
MAX_DIGITS = 9  # operand pairs are drawn from 10**(2*digits) values, which must fit an int64


def _device(text: str) -> str:
    """argparse type: a torch device that exists on this machine (refuses `cuda` without a GPU)."""
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
    p = argparse.ArgumentParser(
        prog="verl-maxpo demo",
        description="End-to-end MaxPO vs GRPO vs PKPO A/B on a synthetic addition task, on CPU, with verl's pieces.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    pos = float_in(0.0, math.inf, low_open=True)
    # outputs and run control
    p.add_argument("--out", default="maxpo_demo", help="output folder (runs/, report.md, summary.md, PNGs)")
    p.add_argument("--force", action="store_true", help="replace the demo's earlier outputs in a non-empty --out")
    p.add_argument("--quick", action="store_true", help=f"smoke run under a minute; overrides {sorted(QUICK)}")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help=f"named settings: {PRESETS}")
    p.add_argument("--device", type=_device, default="cuda" if torch.cuda.is_available() else "cpu", help="device")
    p.add_argument("--threads", type=int_at_least(1), default=2, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    # the A/B
    p.add_argument(
        "--estimators", nargs="+", default=["maxpo", "grpo", "pkpo"], metavar="NAME",
        help="verl advantage estimators, e.g. --estimators maxpo grpo or --estimators maxpo,grpo,pkpo_loo",
    )  # fmt: skip
    p.add_argument("--seeds", type=int_at_least(1), default=3, help="RL seeds per estimator (seed i is --seed + i)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="base seed: model, warm start, held-out set, RL")
    p.add_argument("--k", type=int_at_least(1), default=4, help="k of max@k (algorithm.maxpo.k); needs n >= k+1")
    p.add_argument("--n", type=int_at_least(2), default=8, help="samples per training prompt (rollout.n)")
    # task
    p.add_argument("--digits", type=int_at_least(1), default=3, help=f"digits per operand (1..{MAX_DIGITS})")
    p.add_argument("--val-prompts", type=int_at_least(1), default=64, help="held-out prompts, never trained on")
    # warm start (supervised)
    p.add_argument(
        "--sft-target", type=float_in(0.0, 1.0, low_open=True), default=0.15,
        help="stop the warm start at this sampled pass@1 on training prompts, in (0, 1]",
    )  # fmt: skip
    p.add_argument("--sft-max-steps", type=int_at_least(1), default=3000, help="upper bound on warm-start steps")
    p.add_argument("--sft-lr", type=pos, default=3e-3, help="warm-start AdamW learning rate")
    p.add_argument("--sft-batch", type=int_at_least(1), default=128, help="warm-start batch of (prompt, answer)")
    # RL (verl's names in brackets)
    p.add_argument("--steps", type=int_at_least(1), default=150, help="RL steps per run (total_training_steps)")
    p.add_argument("--prompts-per-step", type=int_at_least(1), default=32, help="prompts per step (train_batch_size)")
    p.add_argument("--lr", type=pos, default=3e-4, help="RL AdamW learning rate (actor.optim.lr)")
    p.add_argument("--grad-clip", type=pos, default=1.0, help="gradient norm clip (actor.grad_clip)")
    p.add_argument("--loss-agg-mode", choices=LOSS_AGG_MODES, default="token-mean", help="actor.loss_agg_mode")
    p.add_argument("--temperature", type=pos, default=1.0, help="sampling temperature, training and validation")
    # validation
    p.add_argument("--val-every", type=int_at_least(1), default=10, help="validate every this many steps (+0, end)")
    p.add_argument("--val-n", type=int_at_least(2), default=16, help="samples per held-out prompt (needs > k)")
    # gradient variance
    p.add_argument("--gradvar-draws", type=int_at_least(2), default=64, help="gradient estimates per checkpoint")
    p.add_argument("--gradvar-prompts", type=int_at_least(1), default=16, help="prompts per gradient estimate")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check argv, all before any work; --preset then --quick replace defaults (explicit flags win)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset or args.quick:
        parser.set_defaults(**PRESETS.get(args.preset, {}), **(QUICK if args.quick else {}))
        args = parser.parse_args(argv)
    try:
        args.estimators = flat_names(args.estimators, "--estimators")
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if args.digits > MAX_DIGITS:
        parser.error(f"--digits must be at most {MAX_DIGITS}, got {args.digits}")
    if args.val_prompts > 10 ** (2 * args.digits) // 2:
        parser.error(f"--val-prompts {args.val_prompts} is too many for {args.digits}-digit operands")
    no_k1 = [e for e in args.estimators if e in NEEDS_K2]
    if no_k1 and args.k < 2:
        parser.error(f"{', '.join(no_k1)} needs --k >= 2 (at k = 1 it has no baseline; maxpo at k = 1 is RLOO)")
    if args.n < args.k + 1:
        parser.error(f"--n ({args.n}) must be at least k+1 = {args.k + 1}")
    if args.val_n < args.k + 1:
        parser.error(f"--val-n ({args.val_n}) must be at least k+1 = {args.k + 1}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        parser.error(
            f"--out {out} is not empty; choose another folder, or pass --force to replace the demo's earlier "
            "outputs there (other files are kept)"
        )
    return args


def val_ks(args: argparse.Namespace) -> list[int]:
    """The k of the validation metrics: pass@1, pass@k (the estimators' k) and pass@n (every sample)."""
    return sorted({1, args.k, args.val_n})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------------
# Warm start: supervised training until sampled pass@1 reaches the target
# ----------------------------------------------------------------------------------------------------------------


def warm_start(model: torch.nn.Module, task: AdditionTask, args: argparse.Namespace, bar: Any) -> dict[str, Any]:
    """Teacher-forced cross-entropy on correct answers. Checks the sampled pass@1 on fresh *training* prompts every
    25 steps (the held-out set never steers anything) and stops once it reaches --sft-target."""
    device = next(model.parameters()).device
    rng = np.random.default_rng([args.seed, 2])
    gen = torch.Generator(device=device).manual_seed(args.seed + 2)
    opt = torch.optim.AdamW(model.parameters(), lr=args.sft_lr, weight_decay=0.0)
    check_pairs = task.train_pairs(rng, 128)
    check_prompts, check_targets = task.encode(check_pairs, device)
    pass1, step = 0.0, 0
    while step < args.sft_max_steps:
        prompt_ids, target_ids = task.encode(task.train_pairs(rng, args.sft_batch), device)
        logp = response_log_probs(model, prompt_ids, target_ids)
        loss = -logp.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.set_postfix_str(f"warm start step {step}, pass@1 {pass1:.2f}")
        if step % 25 == 0 or step == args.sft_max_steps:
            resp = sample(model, check_prompts.repeat_interleave(4, 0), task.response_len, args.temperature, gen)
            pass1 = task.score(resp, check_targets.repeat_interleave(4, 0)).mean().item()
            if pass1 >= args.sft_target:
                break
    return {"steps": step, "train_pass@1": pass1, "loss": loss.item()}


# ----------------------------------------------------------------------------------------------------------------
# RL with verl's pieces: DataProto, compute_advantage (registry), registered policy loss (agg_loss inside)
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """One batch of sampled responses: `group_size` consecutive rows share a prompt (and a verl `uid`)."""

    prompt_ids: torch.Tensor  # (B, P)
    responses: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R) float
    scores: torch.Tensor  # (B,) 0/1
    uid: np.ndarray  # (B,) object array of group ids, as verl's trainer builds it
    group_size: int


def rollout(
    model: torch.nn.Module,
    task: AdditionTask,
    pairs: np.ndarray,
    group_size: int,
    temperature: float,
    gen: torch.Generator,
) -> Rollout:
    device = next(model.parameters()).device
    prompt_ids, target_ids = task.encode(pairs, device)
    prompt_ids = prompt_ids.repeat_interleave(group_size, 0)
    responses = sample(model, prompt_ids, task.response_len, temperature, gen)
    scores = task.score(responses, target_ids.repeat_interleave(group_size, 0))
    uid = np.array([f"p{i}" for i in range(len(pairs)) for _ in range(group_size)], dtype=object)
    return Rollout(prompt_ids, responses, task.response_mask(responses), scores, uid, group_size)


def verl_configs(estimator: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """(algorithm config, actor config) built the way verl builds them from its YAML defaults.

    The algorithm config is a DictConfig (verl passes `config.algorithm`); `maxpo.k` is read by both `maxpo` and
    `pkpo`. GRPO keeps verl's default norm_adv_by_std_in_grpo=True. The actor config is verl's FSDPActorConfig
    dataclass, whose clip ratios, loss_agg_mode and policy_loss.loss_mode the registered loss reads.
    """
    from omegaconf import OmegaConf
    from verl.workers.config import FSDPActorConfig

    algo = OmegaConf.create(
        {
            "adv_estimator": estimator,
            "gamma": 1.0,
            "lam": 1.0,
            "norm_adv_by_std_in_grpo": True,
            "maxpo": {"k": args.k, "norm_by_std": False},
        }
    )
    batch = args.prompts_per_step * args.n
    actor = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=args.n,
        ppo_mini_batch_size=batch,
        ppo_micro_batch_size_per_gpu=batch,
        loss_agg_mode=args.loss_agg_mode,
        grad_clip=args.grad_clip,
        use_torch_compile=False,
    )
    return algo, actor


def policy_gradient_loss(
    model: torch.nn.Module, batch: Rollout, estimator: str, algo_cfg: Any, actor_cfg: Any, log_prob=None
) -> tuple[torch.Tensor, dict[str, float], Any]:
    """The actor loss of one batch exactly as verl computes it; returns (loss, metrics, DataProto).

    One on-policy update per batch (ppo_mini_batch_size = batch, one epoch), so old_log_prob is the current
    log-prob detached: the ratio is 1, clipping is inactive, and the loss is the plain policy gradient
    -A * log pi aggregated by `agg_loss`. `log_prob` may be passed in to reuse one forward for several estimators.
    """
    from verl import DataProto
    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.trainer.ppo.ray_trainer import compute_advantage

    if log_prob is None:
        log_prob = response_log_probs(model, batch.prompt_ids, batch.responses)
    mask = batch.response_mask
    # verl puts the sequence reward on the last response token
    last = (mask.sum(1).long() - 1).clamp(min=0)
    token_level_rewards = torch.zeros_like(mask).scatter_(1, last.unsqueeze(1), batch.scores.unsqueeze(1))
    data = DataProto.from_dict(
        tensors={
            "responses": batch.responses,
            "response_mask": mask,
            "token_level_rewards": token_level_rewards,
            "old_log_probs": log_prob.detach(),
        },
        non_tensors={"uid": batch.uid},
    )
    data = compute_advantage(
        data,
        adv_estimator=estimator,
        norm_adv_by_std_in_grpo=algo_cfg.norm_adv_by_std_in_grpo,
        config=algo_cfg,
    )
    loss_fn = get_policy_loss_fn(actor_cfg.policy_loss.loss_mode)
    loss, pg_metrics = loss_fn(
        old_log_prob=data.batch["old_log_probs"],
        log_prob=log_prob,
        advantages=data.batch["advantages"],
        response_mask=mask,
        loss_agg_mode=actor_cfg.loss_agg_mode,
        config=actor_cfg,
    )
    adv = data.batch["advantages"]
    seq_adv = adv.sum(1) / mask.sum(1).clamp(min=1)
    groups = batch.scores.view(-1, batch.group_size)
    metrics = {
        "train/reward_mean": batch.scores.mean().item(),
        "train/solved_groups_frac": (groups.max(1).values > 0).float().mean().item(),
        "train/mixed_groups_frac": (groups.max(1).values != groups.min(1).values).float().mean().item(),
        "train/adv_mean": seq_adv.mean().item(),
        "train/adv_abs_mean": seq_adv.abs().mean().item(),
        "train/pg_loss": loss.item(),
        "train/pg_clipfrac": pg_metrics["actor/pg_clipfrac"],
        "train/ppo_kl": pg_metrics["actor/ppo_kl"],
        "train/response_length": mask.sum(1).mean().item(),
    }
    return loss, metrics, data


# ----------------------------------------------------------------------------------------------------------------
# Validation: verl-style dumps and unbiased pass@k
# ----------------------------------------------------------------------------------------------------------------


def validate(
    model: torch.nn.Module, task: AdditionTask, args: argparse.Namespace, run_dir: Path, step: int, seed: int
) -> dict[str, float]:
    """--val-n samples per held-out prompt. The generator depends on (seed, step) only, so all estimators at the
    same seed and step draw the same random numbers (common random numbers make the A/B less noisy)."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(1_000_003 * (seed + 1) + step)
    batch = rollout(model, task, task.val_pairs, args.val_n, args.temperature, gen)
    prompts = np.repeat(task.prompt_texts(task.val_pairs), args.val_n).tolist()
    gts = np.repeat(task.answer_texts(task.val_pairs), args.val_n).tolist()
    outputs = task.decode(batch.responses, batch.response_mask)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints one line per dump; keep the progress bar clean
        RayPPOTrainer._write_generations(prompts, outputs, gts, batch.scores.tolist(), {}, str(run_dir / "val"), step)
    prompt_ids = np.repeat(np.arange(len(task.val_pairs)), args.val_n)  # rollout keeps a prompt's samples together
    computed = step_metrics(prompt_ids, batch.scores.cpu().numpy(), val_ks(args), step=step)
    metrics = {"val/reward_mean": batch.scores.mean().item()}
    for k in val_ks(args):
        metrics[f"val/pass@{k}"] = computed.values[Metric(k, "pass")]
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# One RL run
# ----------------------------------------------------------------------------------------------------------------


def make_tracker(path: Path, run_name: str, config: dict[str, Any]) -> Any:
    """verl's Tracking with only the `file` backend, pointed at `path` (the env var is read once, in __init__)."""
    from verl.utils.tracking import Tracking

    previous = os.environ.get("VERL_FILE_LOGGER_PATH")
    os.environ["VERL_FILE_LOGGER_PATH"] = str(path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return Tracking("verl_maxpo_demo", run_name, default_backend=["file"], config=config)
    finally:
        if previous is None:
            os.environ.pop("VERL_FILE_LOGGER_PATH", None)
        else:
            os.environ["VERL_FILE_LOGGER_PATH"] = previous


def run_rl(
    model: torch.nn.Module,
    task: AdditionTask,
    warm_state: dict[str, torch.Tensor],
    estimator: str,
    seed: int,
    args: argparse.Namespace,
    run_dir: Path,
    bar: Any,
) -> list[dict[str, float]]:
    """Train from the warm start with one estimator; returns the validation metrics (with their step)."""
    model.load_state_dict(warm_state)
    algo_cfg, actor_cfg = verl_configs(estimator, args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    folder = RunFolder(run_dir)
    meta = RunMeta(
        adv_estimator=estimator,
        k=args.k if estimator in K_ESTIMATORS else None,
        n=args.n,
        seed=seed,
        config_name=estimator,
        val_n=args.val_n,
    )
    folder.claim(meta)  # creates the folder, val/ and meta.json
    config = {**{k: v for k, v in vars(args).items() if k != "out"}, **meta.to_dict()}
    tracker = make_tracker(folder.train_log, run_dir.name, config)
    # the same prompt order and sampling stream for every estimator at this seed
    prompt_rng = np.random.default_rng([seed, 3])
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed + 3)
    history = []
    try:
        for step in range(args.steps + 1):
            if step > 0:
                batch = rollout(
                    model, task, task.train_pairs(prompt_rng, args.prompts_per_step), args.n, args.temperature, gen
                )
                loss, metrics, _ = policy_gradient_loss(model, batch, estimator, algo_cfg, actor_cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                metrics["train/grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip).item()
                opt.step()
                tracker.log(metrics, step=step)
                bar.update(1)
            if step % args.val_every == 0 or step == args.steps:
                val = validate(model, task, args, run_dir, step, seed)
                tracker.log(val, step=step)
                history.append({"step": step, **val})
                bar.set_postfix_str(f"{run_dir.name} step {step} pass@1 {val['val/pass@1']:.2f}")
    finally:
        tracker.finish()
    return history


# ----------------------------------------------------------------------------------------------------------------
# Gradient variance at fixed parameters
# ----------------------------------------------------------------------------------------------------------------


def gradient_variance(
    model: torch.nn.Module, task: AdditionTask, args: argparse.Namespace, seed: int, bar: Any
) -> dict[str, dict[str, float]]:
    """Many independent gradient estimates at the model's current parameters, each from a fresh batch of
    --gradvar-prompts prompts x n samples. Every estimator is computed on the *same* samples of a draw (one forward,
    one backward per estimator), so the differences come from the advantages alone.

    Per estimator, with g_j the M draws and g_bar their mean:
      rel_var  = trace(Cov) / |E g|^2, with |E g|^2 estimated without bias as |g_bar|^2 - trace(Cov)/M
      cos_mean = mean_j cos(g_j, mean of the other draws)  (leave-one-out, so a draw is not compared with itself)
    """
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    rng = np.random.default_rng([seed, 4])
    gen = torch.Generator(device=device).manual_seed(seed + 4)
    estimators = getattr(args, "gradvar_estimators", args.estimators)
    configs = {est: verl_configs(est, args) for est in estimators}
    grads: dict[str, list[torch.Tensor]] = {est: [] for est in estimators}
    for _ in range(args.gradvar_draws):
        batch = rollout(model, task, task.train_pairs(rng, args.gradvar_prompts), args.n, args.temperature, gen)
        log_prob = response_log_probs(model, batch.prompt_ids, batch.responses)
        for i, est in enumerate(estimators):
            loss, _, _ = policy_gradient_loss(model, batch, est, *configs[est], log_prob=log_prob)
            last = i == len(estimators) - 1
            g = torch.autograd.grad(-loss, params, retain_graph=not last, allow_unused=True)
            grads[est].append(
                torch.cat(
                    [
                        (x if x is not None else torch.zeros_like(p)).reshape(-1).double()
                        for x, p in zip(g, params, strict=True)
                    ]
                ).cpu()
            )
        bar.update(1)
    out = {}
    for est, gs in grads.items():
        G = torch.stack(gs)  # (M, P)
        m = G.shape[0]
        mean = G.mean(0)
        trace_cov = ((G - mean) ** 2).sum().item() / (m - 1)
        signal = mean.square().sum().item() - trace_cov / m
        loo_means = (G.sum(0, keepdim=True) - G) / (m - 1)
        cos = torch.nn.functional.cosine_similarity(G, loo_means, dim=1)
        out[est] = {
            "rel_var": trace_cov / signal if signal > 0 else math.inf,
            "cos_mean": float(torch.nan_to_num(cos).mean()),
            "mean_norm": mean.norm().item(),
            "zero_frac": float((G.abs().sum(1) == 0).double().mean()),
        }
    if "maxpo" in grads and "pkpo" in grads:  # same expectation (grad max@k); their means should agree
        a, b = torch.stack(grads["maxpo"]).mean(0), torch.stack(grads["pkpo"]).mean(0)
        out["maxpo"]["cos_to_pkpo_mean"] = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------------------------------


def fmt(mean: float, se: float | None, scale: float = 100.0) -> str:
    if se is None:
        return f"{scale * mean:.1f}"
    return f"{scale * mean:.1f} ± {scale * se:.1f}"


def _pair(value: MeanSE) -> tuple[float, float | None]:
    return value.mean, value.se


def summarize(
    args: argparse.Namespace,
    histories: dict[str, dict[int, list[dict[str, float]]]],
    gradvar: dict[str, dict[str, dict[str, float]]],
    warm: dict[str, Any],
    timings: dict[str, float],
    command: str,
) -> tuple[str, dict[str, Any]]:
    """Markdown summary (final and mean-over-training pass@k per estimator, gradient variance) and its data."""
    ks = val_ks(args)
    lines = [
        "# MaxPO demo summary",
        "",
        f"Command: `{command}`",
        "",
        f"Task: {args.digits}-digit addition, exact-match reward. Policy: 2-layer Llama (random init), warm start "
        f"{warm['steps']} supervised steps (sampled pass@1 on training prompts {warm['train_pass@1']:.2f}). "
        f"RL: {args.steps} steps x {args.prompts_per_step} prompts x n={args.n}, AdamW lr={args.lr}, "
        f"loss_agg_mode={args.loss_agg_mode}, k={args.k}, {args.seeds} seed(s). Validation: {args.val_prompts} "
        f"held-out prompts x {args.val_n} samples.",
        "",
        "## Held-out pass@k in % (mean ± standard error over seeds)",
        "",
    ]
    head = ["estimator", "step 0"] + [f"final pass@{k}" for k in ks] + [f"avg pass@{k} (steps > 0)" for k in ks]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table: dict[str, Any] = {}
    for est, by_seed in histories.items():
        row = {}
        runs = list(by_seed.values())
        row["step0_pass@1"] = _pair(mean_se([h[0]["val/pass@1"] for h in runs]))
        for k in ks:
            row[f"final_pass@{k}"] = _pair(mean_se([h[-1][f"val/pass@{k}"] for h in runs]))
            row[f"avg_pass@{k}"] = _pair(mean_se([float(np.mean([e[f"val/pass@{k}"] for e in h[1:]])) for h in runs]))
        table[est] = row
        cells = [est, fmt(*row["step0_pass@1"])]
        cells += [fmt(*row[f"final_pass@{k}"]) for k in ks] + [fmt(*row[f"avg_pass@{k}"]) for k in ks]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        '"avg" is the mean over all validations after step 0 (area under the curve), less noisy than the final '
        "point. Curves: report.md and the PNGs next to it.",
        "",
        "## Gradient variance at fixed parameters",
        "",
        f"{args.gradvar_draws} independent gradient estimates per checkpoint, each from {args.gradvar_prompts} "
        f"prompts x n={args.n}; every estimator on the same samples. rel. variance = trace(Cov)/|E g|^2 "
        "(lower is better), cos = mean cosine of a draw to the mean of the other draws (higher is better).",
        "",
        "| checkpoint | estimator | rel. variance | cos to mean | zero-gradient draws |",
        "|---|---|---|---|---|",
    ]
    for ckpt, per_est in gradvar.items():
        for est, s in per_est.items():
            rel = "inf" if math.isinf(s["rel_var"]) else f"{s['rel_var']:.2f}"
            lines.append(f"| {ckpt} | {est} | {rel} | {s['cos_mean']:.3f} | {100 * s['zero_frac']:.0f}% |")
    agree = [
        f"{c}: {s['maxpo']['cos_to_pkpo_mean']:.3f}"
        for c, s in gradvar.items()
        if "maxpo" in s and "cos_to_pkpo_mean" in s["maxpo"]
    ]
    if agree:
        lines += [
            "",
            "Sanity: cosine between the mean MaxPO and mean PKPO gradients (same expectation, grad "
            "max@k): " + ", ".join(agree) + ".",
        ]
    lines += ["", "Wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()), ""]
    data = {"table": table, "gradvar": gradvar, "warm_start": warm, "timings_s": timings, "command": command}
    return "\n".join(lines), data


def write_curves_report(out: Path, run_dirs: list[Path], args: argparse.Namespace) -> Path:
    """report.md + PNG curves through the `report` command's logic (mean ± s.e. over seed<N> runs)."""
    from verl_maxpo.report import write_report

    write_report(run_dirs, out, ks=val_ks(args), relative_to=out)
    return out / "report.md"


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------


# The demo's own top-level outputs (its manifest lists those of one run); --force removes these and nothing else.
MANIFEST_NAME = ".verl_maxpo_demo.json"
_OWN_OUTPUTS = re.compile(r"^(runs|report\.md|summary\.md|summary\.json|\.verl_maxpo_report\.json|"
                          r"((max|pass)_at_\d+|training)\.png)$")  # fmt: skip


class _Stop(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the partial folder is removed on the way out."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Stop(f"signal {signum}")


def _partial_dir(out: Path) -> Path:
    """A fresh folder beside OUT that the run writes into; renamed into place only when everything is written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))


def _publish(partial: Path, out: Path) -> None:
    """Move a finished run from `partial` to `out`. An empty or absent OUT is replaced by one rename. A non-empty OUT
    (allowed by --force) loses the demo's earlier outputs (its manifest, or the names the demo writes) and gets the
    new ones; unrelated files stay. Signals are held off meanwhile so OUT never holds half of each run."""
    main_thread = threading.current_thread() is threading.main_thread()
    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if not out.exists():
            os.replace(partial, out)
            return
        for entry in out.iterdir():
            if _OWN_OUTPUTS.match(entry.name) or entry.name == MANIFEST_NAME:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        for entry in partial.iterdir():
            os.replace(entry, out / entry.name)
        partial.rmdir()
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def gradvar_estimators(estimators: list[str], k: int, registry: Any) -> list[str]:
    """The estimators of the gradient-variance section: the A/B's, plus both PKPO baselines (`pkpo`, `pkpo_loo`)
    when verl has them registered and they are defined at this k. The section is cheap: every estimator is
    computed on the same samples."""
    extra = [e for e in ("pkpo", "pkpo_loo") if e not in estimators and e in registry and (k >= 2 or e not in NEEDS_K2)]
    return list(estimators) + extra


def main(argv: list[str] | None = None) -> int:
    """Run the whole A/B; returns 0 on success, 2 for a bad option (refused before any work)."""
    args = parse_args(argv)
    command = "verl-maxpo demo " + " ".join(sys.argv[1:] if argv is None else argv)
    import verl  # noqa: F401  (loads the verl.plugins entry point, which registers maxpo and pkpo)
    from verl.trainer.ppo import core_algos

    missing = [e for e in args.estimators if e not in core_algos.ADV_ESTIMATOR_REGISTRY]
    if missing:
        known = ", ".join(sorted(map(str, core_algos.ADV_ESTIMATOR_REGISTRY)))
        print(
            f"verl-maxpo demo: error: --estimators: {', '.join(missing)} not registered in verl (known: {known}); "
            "run `verl-maxpo check`",
            file=sys.stderr,
        )
        return 2
    # The variance section is cheap (every estimator on the same samples): add the PKPO baselines when registered.
    args.gradvar_estimators = gradvar_estimators(args.estimators, args.k, core_algos.ADV_ESTIMATOR_REGISTRY)
    out = Path(args.out)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    partial = _partial_dir(out.resolve())  # beside OUT, also for `--out .`
    try:
        text = run_demo(args, partial, command)
        _publish(partial, out)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: a message, not a traceback; OUT is as it was
        print(f"\nverl-maxpo demo: interrupted ({stop or 'Ctrl-C'}); {out} left as it was", file=sys.stderr)
        return 143 if isinstance(stop, _Stop) else 130
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    (out / MANIFEST_NAME).write_text(json.dumps(sorted(p.name for p in out.iterdir() if _OWN_OUTPUTS.match(p.name))))
    print(text)
    print(f"\nruns (verl file logs + validation dumps): {out / 'runs'}")
    print(f"curves report: {out / 'report.md'}")
    print(f"summary: {out / 'summary.md'}")
    return 0


def run_demo(args: argparse.Namespace, out: Path, command: str) -> str:
    """Every stage, written into `out`; returns the summary markdown."""
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device(args.device)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    seeds = [args.seed + i for i in range(args.seeds)]
    checkpoints = 1 + len(args.estimators)
    total = len(args.estimators) * len(seeds) * args.steps + checkpoints * args.gradvar_draws
    timings: dict[str, float] = {}
    try:
        with tqdm(
            total=total, desc="verl-maxpo demo", unit="step", disable=args.no_progress, dynamic_ncols=True
        ) as bar:
            seed_everything(args.seed)
            task = AdditionTask(args.digits, args.val_prompts, args.seed)
            model = build_policy(task, args.seed, device)
            t0 = time.perf_counter()
            warm = warm_start(model, task, args, bar)
            timings["warm start"] = time.perf_counter() - t0
            warm_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            t0 = time.perf_counter()
            gradvar = {"warm start": gradient_variance(model, task, args, args.seed, bar)}
            histories: dict[str, dict[int, list[dict[str, float]]]] = {est: {} for est in args.estimators}
            run_dirs = []
            t_rl = 0.0
            for est in args.estimators:
                for seed in seeds:
                    run_dir = out / "runs" / f"{est}_seed{seed}"
                    t1 = time.perf_counter()
                    histories[est][seed] = run_rl(model, task, warm_state, est, seed, args, run_dir, bar)
                    t_rl += time.perf_counter() - t1
                    run_dirs.append(run_dir)
                    if seed == seeds[0]:  # the end of each estimator's first run is a gradient-variance checkpoint
                        gradvar[f"after {args.steps} {est} steps"] = gradient_variance(model, task, args, seed, bar)
            timings["RL"] = t_rl
            timings["gradient variance"] = time.perf_counter() - t0 - t_rl
        t0 = time.perf_counter()
        write_curves_report(out, run_dirs, args)
        timings["report"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        text, data = summarize(args, histories, gradvar, warm, timings, command)
        (out / "summary.md").write_text(text)
        (out / "summary.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    finally:
        torch.use_deterministic_algorithms(deterministic)
    return text


if __name__ == "__main__":
    sys.exit(main())
