"""One RL run of the demo with verl's own pieces: DataProto, compute_advantage (registry), registered policy loss.

A run is a pure function of (config, warm-start weights, arm, seed): it builds its own model, optimizer and
random streams, so runs can go to separate processes in any order and give the same numbers as a serial loop.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verl_maxpo.core.table import ARMS, arm_reads_k
from verl_maxpo.runs.folder import RunFolder, RunMeta
from verl_maxpo.tasks.addition import AdditionTask, build_policy, response_log_probs, sample
from verl_maxpo.tools.demo.config import DemoConfig
from verl_maxpo.tools.report.metrics import Metric, step_metrics

# progress(steps done since the last call, a short status line)
Progress = Callable[[int, str], None]


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
    scores = task.reward(responses, target_ids.repeat_interleave(group_size, 0))
    # positional group ids (verl's trainer uses uuid4 strings): the same on every run, so nothing depends on them
    uid = np.array([f"p{i}" for i in range(len(pairs)) for _ in range(group_size)], dtype=object)
    return Rollout(prompt_ids, responses, task.response_mask(responses), scores, uid, group_size)


def verl_configs(arm: str, cfg: DemoConfig) -> tuple[Any, Any]:
    """(algorithm config, actor config) of an arm, built the way verl builds them from its YAML defaults.

    The algorithm config is a DictConfig (verl passes `config.algorithm`): adv_estimator is the arm's estimator
    and `maxpo` holds k plus the arm's fixed options. GRPO keeps verl's default norm_adv_by_std_in_grpo=True. The
    actor config is verl's FSDPActorConfig dataclass, whose clip ratios, loss_agg_mode and policy_loss.loss_mode
    the registered loss reads.
    """
    from omegaconf import OmegaConf
    from verl.workers.config import FSDPActorConfig

    spec = ARMS[arm]
    algo = OmegaConf.create(
        {
            "adv_estimator": spec.estimator,
            "gamma": 1.0,
            "lam": 1.0,
            "norm_adv_by_std_in_grpo": True,
            "maxpo": {"k": cfg.k, "norm_by_std": False, **spec.options},
        }
    )
    batch = cfg.prompts_per_step * cfg.n
    actor = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=cfg.n,
        ppo_mini_batch_size=batch,
        ppo_micro_batch_size_per_gpu=batch,
        loss_agg_mode=cfg.loss_agg_mode,
        grad_clip=cfg.grad_clip,
        use_torch_compile=False,
    )
    return algo, actor


def policy_gradient_loss(
    model: torch.nn.Module, batch: Rollout, algo_cfg: Any, actor_cfg: Any, log_prob: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float], Any]:
    """The actor loss of one batch exactly as verl computes it; returns (loss, metrics, DataProto).

    One on-policy update per batch (ppo_mini_batch_size = batch, one epoch), so old_log_prob is the current
    log-prob detached: the ratio is 1, clipping is inactive, and the loss is the plain policy gradient
    -A * log pi aggregated by `agg_loss`. `log_prob` may be passed in to reuse one forward for several arms.
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
        adv_estimator=algo_cfg.adv_estimator,
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
    # verl's trainer metric names for the same quantities (so `verl-maxpo report` plots demo and verl runs alike);
    # batch/* are the demo's own.
    metrics = {
        "critic/score/mean": batch.scores.mean().item(),
        "critic/advantages/mean": ((adv * mask).sum() / mask.sum().clamp(min=1)).item(),  # over valid tokens
        "critic/advantages/abs_mean": seq_adv.abs().mean().item(),
        "batch/solved_groups_frac": (groups.max(1).values > 0).float().mean().item(),
        "batch/mixed_groups_frac": (groups.max(1).values != groups.min(1).values).float().mean().item(),
        "actor/pg_loss": loss.item(),
        "actor/pg_clipfrac": pg_metrics["actor/pg_clipfrac"],
        "actor/ppo_kl": pg_metrics["actor/ppo_kl"],
        "response_length/mean": mask.sum(1).mean().item(),
    }
    return loss, metrics, data


def validate(
    model: torch.nn.Module, task: AdditionTask, cfg: DemoConfig, run_dir: Path, step: int, seed: int
) -> dict[str, float]:
    """--val-n samples per held-out prompt, dumped as verl's trainer dumps them. The generator depends on
    (seed, step) only, so all arms at the same seed and step draw the same random numbers (common random numbers
    make the A/B less noisy)."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(1_000_003 * (seed + 1) + step)
    batch = rollout(model, task, task.val_pairs, cfg.val_n, cfg.temperature, gen)
    prompts = np.repeat(task.prompt_texts(task.val_pairs), cfg.val_n).tolist()
    gts = np.repeat(task.answer_texts(task.val_pairs), cfg.val_n).tolist()
    outputs = task.decode(batch.responses, batch.response_mask)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints one line per dump; keep the progress bar clean
        RayPPOTrainer._write_generations(prompts, outputs, gts, batch.scores.tolist(), {}, str(run_dir / "val"), step)
    prompt_ids = np.repeat(np.arange(len(task.val_pairs)), cfg.val_n)  # rollout keeps a prompt's samples together
    computed = step_metrics(prompt_ids, batch.scores.cpu().numpy(), cfg.val_ks, step=step)
    metrics = {"val/reward_mean": batch.scores.mean().item()}
    for k in cfg.val_ks:
        metrics[f"val/pass@{k}"] = computed.values[Metric(k, "pass")]
    return metrics


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


def run_meta(arm: str, seed: int, cfg: DemoConfig) -> RunMeta:
    """meta.json of a run: the arm's estimator, k where it reads k, and the arm's fixed options as settings."""
    spec = ARMS[arm]
    return RunMeta(
        adv_estimator=spec.estimator,
        k=cfg.k if arm_reads_k(spec) else None,
        n=cfg.n,
        seed=seed,
        config_name=arm,
        val_n=cfg.val_n,
        settings={key: str(value) for key, value in spec.options.items()}
        | ({"base_seed": str(cfg.seed)} if cfg.base_seeds > 1 else {}),  # the report tests over base seeds too
    )


def run_rl(
    cfg: DemoConfig,
    task: AdditionTask,
    warm_state: dict[str, torch.Tensor],
    arm: str,
    seed: int,
    run_dir: Path,
    progress: Progress,
) -> tuple[list[dict[str, float]], torch.nn.Module]:
    """Train a fresh copy of the warm start with one arm; returns (validation metrics with their step, model)."""
    model = build_policy(task, cfg.seed, torch.device(cfg.device))
    model.load_state_dict(warm_state)
    algo_cfg, actor_cfg = verl_configs(arm, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    folder = RunFolder(run_dir)
    meta = run_meta(arm, seed, cfg)
    folder.claim(meta)  # creates the folder, val/ and meta.json
    tracker = make_tracker(folder.train_log, run_dir.name, {**cfg.settings(), **meta.to_dict()})
    # the same prompt order and sampling stream for every arm at this seed
    prompt_rng = np.random.default_rng([seed, 3])
    gen = torch.Generator(device=cfg.device).manual_seed(seed + 3)
    history = []
    try:
        for step in range(cfg.steps + 1):
            if step > 0:
                pairs = task.train_pairs(prompt_rng, cfg.prompts_per_step)
                batch = rollout(model, task, pairs, cfg.n, cfg.temperature, gen)
                loss, metrics, _ = policy_gradient_loss(model, batch, algo_cfg, actor_cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                metrics["actor/grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip).item()
                opt.step()
                tracker.log(metrics, step=step)
            if step % cfg.val_every == 0 or step == cfg.steps:
                val = validate(model, task, cfg, run_dir, step, seed)
                tracker.log(val, step=step)
                history.append({"step": step, **val})
            if step > 0:
                progress(1, f"{run_dir.name} step {step} pass@1 {history[-1]['val/pass@1']:.2f}")
    finally:
        tracker.finish()
    return history, model
