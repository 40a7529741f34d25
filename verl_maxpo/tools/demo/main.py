"""`verl-maxpo demo`: an A/B of max@K advantage estimators, end to end on a CPU in minutes, with verl's RL pieces.

What one run does, top to bottom (this file orchestrates; each stage lives in its own module):
  1. Options (config.py): parsed and checked before any work, then frozen into a DemoConfig.
  2. Task and policy (verl_maxpo.tasks.addition): fixed-width addition, reward 1 for an exact answer; a randomly
     initialised 2-layer Llama, warm-started by supervised training until the sampled pass@1 on fresh training
     prompts reaches --sft-target (sparse rewards: the setting max@K is for). Every RL run starts from this checkpoint.
  3. RL (rl.py): for each arm of --estimators (names from verl_maxpo.core.table.ARMS) and seed, the same prompts,
     samples, optimizer and seeds; advantages from verl's `compute_advantage`, the loss from verl's registered
     policy loss, validation dumps as verl's trainer writes them, metrics through verl's `Tracking`.
  4. Gradient variance (gradvar.py): at the warm start and after each arm's first-seed run, many independent
     gradient estimates of every arm of the table on the same samples.
  5. Report and summary: report.md and curves (verl_maxpo.tools.report.main), summary.md / summary.json (summary.py).
The RL runs and variance checkpoints are independent jobs, run by --workers single-threaded processes
(workers.py); the numbers do not depend on how many.

Output layout, published by verl_maxpo.runs.outputs (staged, then moved into place; --force never touches other files):
  OUT/runs/<arm>_seed<s>/{val/<step>.jsonl, train_log.jsonl, meta.json}
  OUT/report.md, OUT/*.png, OUT/summary.md, OUT/summary.json, OUT/demo.log (verl's warnings, worker output)
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from verl_maxpo.core.table import ARMS
from verl_maxpo.runs import command as policy
from verl_maxpo.runs import strict_json
from verl_maxpo.runs.names import run_name
from verl_maxpo.runs.outputs import OutputError, check_out, owned_files, publish, through_link
from verl_maxpo.tasks.addition import AdditionTask, build_policy, warm_start
from verl_maxpo.tools.demo.config import DemoConfig, parse_config
from verl_maxpo.tools.demo.workers import Job, Progress, run_jobs, single_threaded_torch, stderr_to

COMMAND = "demo"
LOG_NAME = "demo.log"


class DemoError(policy.UsageError):
    """A refusal found after parsing (an arm verl does not have): printed as one line, exit status 2."""


# ----------------------------------------------------------------------------------------------------------------
# The jobs: each a pure function of its arguments, run in this process or in a worker
# ----------------------------------------------------------------------------------------------------------------


def _task(cfg: DemoConfig) -> AdditionTask:
    return AdditionTask(cfg.digits, cfg.val_prompts, cfg.seed, reward=cfg.reward)


def _policy(cfg: DemoConfig, task: AdditionTask, state: dict[str, Any]) -> torch.nn.Module:
    model = build_policy(task, cfg.seed, torch.device(cfg.device))
    model.load_state_dict(state)
    return model


def rl_job(
    cfg: DemoConfig, warm_state: dict[str, Any], arm: str, seed: int, run_dir: Path, gv_arms: list[str],
    progress: Progress,
) -> tuple[list[dict[str, float]], dict[str, Any] | None]:  # fmt: skip
    """One RL run; with `gv_arms`, the checkpoint statistics (gradient variance of those arms, score norms) at its
    final parameters."""
    from verl_maxpo.tools.demo.gradvar import checkpoint_stats
    from verl_maxpo.tools.demo.rl import run_rl

    task = _task(cfg)
    history, model = run_rl(cfg, task, warm_state, arm, seed, run_dir, progress)
    return history, checkpoint_stats(model, task, cfg, gv_arms, progress) if gv_arms else None


def warm_gradvar_job(cfg: DemoConfig, warm_state: dict[str, Any], gv_arms: list[str], progress: Progress) -> Any:
    from verl_maxpo.tools.demo.gradvar import checkpoint_stats

    task = _task(cfg)
    return checkpoint_stats(_policy(cfg, task, warm_state), task, cfg, gv_arms, progress)


def make_jobs(
    cfg: DemoConfig, warm_states: dict[int, dict[str, Any]], runs: Path, gv_arms: list[str]
) -> dict[str, Job]:
    """Every job by name, longest first (an RL run that ends in a variance checkpoint) to keep the workers busy.
    `warm_states`: the warm start of each base seed; a run gets its base seed's config (task, held-out set)."""

    def run(arm: str, seed: int, with_gradvar: bool) -> Job:
        base = cfg.base_of(seed)
        job_cfg = cfg if base == cfg.seed else replace(cfg, seed=base)
        dest = runs / run_name(arm, seed)
        return rl_job, (job_cfg, warm_states[base], arm, seed, dest, gv_arms if with_gradvar else [])

    first = {run_name(arm, cfg.seed): run(arm, cfg.seed, True) for arm in cfg.arms}
    rest = {run_name(arm, s): run(arm, s, False) for arm in cfg.arms for s in cfg.seed_list[1:]}
    return {**first, **rest, "warm start": (warm_gradvar_job, (cfg, warm_states[cfg.seed], gv_arms))}


# ----------------------------------------------------------------------------------------------------------------
# One demo run, written into a stage folder
# ----------------------------------------------------------------------------------------------------------------


class DemoBar:
    """The demo's progress bar, honest from its first line: the warm start shows its elapsed time and status only
    (its steps cost nothing like an RL step, so an ETA from them would be far off; pass@1 is measured only every
    few steps, so it is shown when measured, never as `nan`). The bar's clock starts with the RL and variance steps,
    and the ETA appears once `2 * workers + 1` of them are timed (each worker's first step includes its start-up).
    """

    WARM = "{desc}: {elapsed}{postfix}"
    UNTIMED = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA once timed{postfix}]"

    def __init__(self, total: int, workers: int, file: Any, disable: bool = False) -> None:
        from tqdm.auto import tqdm

        self.total, self.timed = total, min(total, 2 * workers + 1)
        self.bar = tqdm(
            total=total, desc="verl-maxpo demo", unit="step", disable=disable, file=file, bar_format=self.WARM
        )

    def __enter__(self) -> DemoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def warm_step(self, step: int, pass1: float) -> None:
        measured = f", pass@1 on training prompts {pass1:.2f}" if math.isfinite(pass1) else ""
        self.bar.set_postfix_str(f"warm start step {step}{measured}")

    def start_steps(self) -> None:
        """The warm start is done: the bar (and its clock) start from 0 of `total` steps."""
        self.bar.bar_format = self.UNTIMED
        self.bar.set_postfix_str("RL runs and gradient variance", refresh=False)
        self.bar.reset(total=self.total)

    def step(self, steps: int, status: str) -> None:
        """`steps` more RL or variance steps done (the Progress callback of every job)."""
        self.bar.update(steps)
        if self.bar.n >= self.timed and self.bar.bar_format is not None:
            self.bar.bar_format = None  # tqdm's full bar, with the ETA from the steps timed so far
        self.bar.set_postfix_str(status)


@contextmanager
def _torch_settings() -> Any:
    """One thread and deterministic kernels for this process while the demo runs; the caller's afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    single_threaded_torch()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def run_demo(cfg: DemoConfig, stage: Path, command: str) -> str:
    """Every stage, written into `stage`; returns the summary markdown."""
    from verl_maxpo.tools.demo.gradvar import gradvar_arms
    from verl_maxpo.tools.demo.summary import provenance, summarize
    from verl_maxpo.tools.report.main import write_report_files

    t_start = time.perf_counter()
    log = stage / LOG_NAME
    with stderr_to(log) as terminal, _torch_settings():
        import verl  # noqa: F401  (loads our plugin; importing core_algos below registers the estimators)
        from verl.trainer.ppo import core_algos

        registry = core_algos.ADV_ESTIMATOR_REGISTRY
        missing = [f"{a} ({ARMS[a].estimator})" for a in cfg.arms if ARMS[a].estimator not in registry]
        if missing:
            raise DemoError(f"--estimators: {', '.join(missing)} not registered in verl; run `verl-maxpo check`")
        gv_arms = gradvar_arms(cfg.k, registry)
        jobs = len(cfg.arms) * len(cfg.seed_list) + 1
        workers = min(cfg.workers, jobs)
        total = len(cfg.arms) * len(cfg.seed_list) * cfg.steps + (1 + len(cfg.arms)) * cfg.gradvar_draws
        timings: dict[str, float] = {}
        with DemoBar(total, workers, terminal, disable=cfg.no_progress) as bar:

            def prepare() -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
                t0 = time.perf_counter()
                states, infos = {}, {}
                for base in cfg.base_seed_list:  # one warm start per base seed, each on its own task and init
                    base_cfg = cfg if base == cfg.seed else replace(cfg, seed=base)
                    task = _task(base_cfg)
                    model = build_policy(task, base, torch.device(cfg.device))
                    done = warm_start(
                        model, task, steps=cfg.sft_max_steps, seed=base, lr=cfg.sft_lr, batch=cfg.sft_batch,
                        target=cfg.sft_target, temperature=cfg.temperature, on_step=bar.warm_step,
                    )  # fmt: skip
                    states[base] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    infos[base] = {"steps": done.steps, "train_pass@1": done.train_pass1, "loss": done.loss}
                timings["warm start"] = time.perf_counter() - t0
                bar.start_steps()
                return states, infos

            t0 = time.perf_counter()
            (_, warm_by_base), results = run_jobs(
                prepare, lambda p: make_jobs(cfg, p[0], stage / "runs", gv_arms), workers, log, bar.step
            )
            warm = {**warm_by_base[cfg.seed], "by_base_seed": {str(b): w for b, w in warm_by_base.items()}}
            timings["runs and gradient variance"] = time.perf_counter() - t0 - timings["warm start"]
        histories = {arm: {s: results[run_name(arm, s)][0] for s in cfg.seed_list} for arm in cfg.arms}
        checkpoints = {"warm start": results["warm start"]}
        checkpoints |= {f"after {cfg.steps} {arm} steps": results[run_name(arm, cfg.seed)][1] for arm in cfg.arms}
        gradvar = {name: c["gradvar"] for name, c in checkpoints.items() if c is not None}
        score_norms = {name: c["score_norms"] for name, c in checkpoints.items() if c is not None}
        t0 = time.perf_counter()
        run_dirs = [stage / "runs" / run_name(arm, s) for arm in cfg.arms for s in cfg.seed_list]
        setting = (
            f"{cfg.digits}-digit addition, n={cfg.n}, K={cfg.k}, {len(cfg.seed_list)} seed"
            f"{'s' if len(cfg.seed_list) > 1 else ''}{f' ({cfg.base_seeds} base)' if cfg.base_seeds > 1 else ''}, "
            f"{cfg.val_prompts} held-out prompts x {cfg.val_n} samples"
        )
        write_report_files(run_dirs, stage, ks=cfg.val_ks, relative_to=stage, setting=setting)
        timings["report"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start
        text, data = summarize(
            cfg, histories, gradvar, warm, timings, provenance(cfg, command, workers), score_norms=score_norms
        )
    (stage / "summary.md").write_text(text)
    (stage / "summary.json").write_text(strict_json.dumps(data, indent=2) + "\n")
    return text


# ----------------------------------------------------------------------------------------------------------------
# main: check the output folder, run into a stage, publish
# ----------------------------------------------------------------------------------------------------------------


def _check_planned(cfg: DemoConfig) -> None:
    """Refuse, before any work, to write a path of OUT that holds something the demo did not write there."""
    if not cfg.out.is_dir():
        return
    owned = set(owned_files(cfg.out, COMMAND))
    planned = [f"runs/{run_name(arm, s)}" for arm in cfg.arms for s in cfg.seed_list]
    planned += ["report.md", "summary.md", "summary.json", LOG_NAME]
    linked = [p for p in planned if through_link(cfg.out, p + "/x")]
    if linked:  # publishing would refuse it after the whole run: say it now
        raise OutputError(
            f"--out {cfg.out}: {linked[0].split('/')[0]} is a symlink; the demo writes nothing through a link (it may "
            "lead to a folder of yours): remove it or choose another --out"
        )
    clashes = [p for p in planned if (cfg.out / p).exists() and not any(o == p or o.startswith(p + "/") for o in owned)]
    if clashes:
        raise OutputError(
            f"--out {cfg.out}: would overwrite {', '.join(clashes[:3])}, which the demo did not write; move it away "
            "or choose another folder"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the whole A/B under the command policy (runs/command.py): 0 on success, 2 for a bad option or output
    folder (refused before any work), 1 when the folder changed while it ran, 130/143 on Ctrl-C/SIGTERM (the
    output folder is left as it was)."""
    return policy.run(COMMAND, _main, argv)


def _main(argv: list[str]) -> int:
    cfg = parse_config(argv)
    command = shlex.join(["verl-maxpo", "demo", *argv])
    check_out(cfg.out, COMMAND, cfg.force)
    _check_planned(cfg)
    with publish(cfg.out, COMMAND, cfg.force) as out:
        text = run_demo(cfg, out.stage, command)
    print(text)
    print(f"\nruns (verl file logs + validation dumps): {out.target / 'runs'}")
    print(f"curves report: {out.target / 'report.md'}")
    print(f"summary: {out.target / 'summary.md'}, log: {out.target / LOG_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
