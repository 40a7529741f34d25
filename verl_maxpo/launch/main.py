"""`verl-maxpo launch TASK [flags] [overrides...]`: A/B arms of a recipe through verl, a run folder per arm and seed.

The flags are what the launcher owns (arms, seeds, output folder, dry run); everything else is a Hydra override of
the recipe (k=8, actor_rollout_ref.rollout.n=16, data.train_files=..., reward.sandbox_fusion.url=...), passed to
verl as given. Each arm is composed once with Hydra's compose API, checked with the rules verl's run will apply
(verl_maxpo.runs.claim, the recipes' Hydra callback), and started as `python -m verl.trainer.main_ppo`.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from verl_maxpo.core.table import ARMS
from verl_maxpo.launch.console import run_verl
from verl_maxpo.runs import claim as claims
from verl_maxpo.runs import command
from verl_maxpo.runs.folder import RunFolderError
from verl_maxpo.runs.outputs import check_makeable
from verl_maxpo.runs.redact import Redactor, redact_url

PACKAGE = Path(__file__).resolve().parents[1]
# Installed: verl_maxpo/recipes; a checkout (editable or PYTHONPATH): the top-level recipes/ folder.
RECIPES = next((p for p in (PACKAGE / "recipes", PACKAGE.parent / "recipes") if (p / "shared").is_dir()), PACKAGE)
SEARCHPATH = f"hydra.searchpath=[pkg://verl.trainer.config,file://{RECIPES}/shared]"
CPU_ENV = {"VERL_PLATFORM": "cpu", "RAY_ADDRESS": "local"}
DEFAULT_ARMS = ("maxpo", "grpo")  # the estimator and its baseline
# Hydra cannot carry these unquoted in an override value (run_dir=..., the searchpath).
_PATH_OK = re.compile(r"[A-Za-z0-9._/+:@%-]+")
_SANDBOX_OK = re.compile(r"https?://([A-Za-z0-9._~%+:-]+@)?[A-Za-z0-9._-]+(:[0-9]+)?(/[A-Za-z0-9._/%+~-]*)?")
# Settings this launcher once read from the environment: named in a warning, never read.
NOT_READ = {
    "ARMS": "--arms", "ARM": "--arms", "RUN_ARMS": "--arms", "SEED": "--seeds", "SEEDS": "--seeds", "OUT_DIR": "--out",
    "OUTDIR": "--out", "DRY_RUN": "--dry-run", "DRYRUN": "--dry-run", "VERBOSE": "--verbose", "K": "k=...",
    "N": "actor_rollout_ref.rollout.n=...", "VAL_N": "actor_rollout_ref.rollout.val_kwargs.n=...",
    "NGPUS": "trainer.n_gpus_per_node=...", "NNODES": "trainer.nnodes=...",
    "MODEL_PATH": "actor_rollout_ref.model.path=...", "DATA_DIR": "data.train_files=... data.val_files=...",
    "CKPT_DIR": "trainer.default_local_dir=...", "TINY_ASSETS": "tiny_assets=...", "SMOL_ASSETS": "smol_assets=...",
    "SANDBOX_URL": "reward.sandbox_fusion.url=...",
    "ALLOW_LOCAL_CODE_EXEC": "reward.custom_reward_function.reward_kwargs.allow_local_exec=true",
}  # fmt: skip
LOCAL_EXEC_WARNING = """WARNING: allow_local_exec=true: model-written programs will run ON THE TRAINING NODES, in
new user, PID, mount and network namespaces, with an empty environment and rlimits (verl_maxpo.code.reward). This
is NOT a full sandbox: they can read every file this uid can read (keys, checkpoints, the data with its expected
outputs), and memory and CPU are bounded per program only. Use a SandboxFusion server (reward.sandbox_fusion.url)
on any machine you share or care about."""


class LaunchError(Exception):
    """Bad input: the message is printed (redacted) and the launcher exits 2."""


@dataclass(frozen=True)
class TaskSpec:
    """A recipe (recipes/<folder>/<task>.yaml); cpu: verl's trainer on a CPU, its assets built when missing."""

    folder: str
    prepare: str  # the command that makes missing data ({dir}: its folder)
    cpu: bool = False
    threads: int = 1  # OMP_NUM_THREADS of every process of a CPU run


TASKS: Mapping[str, TaskSpec] = {
    "gsm8k": TaskSpec("math", "verl-maxpo prepare gsm8k --out-dir {dir}"),
    "math": TaskSpec("math", "verl-maxpo prepare math --out-dir {dir}"),
    "code": TaskSpec("code", "verl-maxpo prepare code --out-dir {dir}"),
    "tiny": TaskSpec("tiny", "verl-maxpo tiny-assets --out {dir}", cpu=True),
    # A real 135M model: 2 BLAS threads per process use the second core.
    "smol": TaskSpec("smol", "verl-maxpo smol-assets --out {dir}", cpu=True, threads=2),
}


@dataclass
class Run:
    arm: str
    claim: claims.Claim
    argv: list[str]
    env: dict[str, str]
    cfg: dict[str, Any]


def _words(text: str, flag: str) -> list[str]:
    words = text.replace(",", " ").split()
    if not words or len(set(words)) < len(words):
        raise LaunchError(f"{flag} {text!r}: give distinct values, comma- or space-separated")
    return words


def _override(text: str) -> str:
    """`~` at the start of a value is the home folder (Hydra's lexer refuses `~` in a value)."""
    key, sep, value = text.partition("=")
    if sep and value.startswith("~"):
        value = os.path.expanduser(value)
    if sep and "~" in value:
        raise LaunchError(f"{text!r}: Hydra cannot read '~' in a value; write the path out")
    return f"{key}{sep}{value}"


def plan(task: str, arm: str, seed: str | None, args: argparse.Namespace, user: list[str]) -> Run:
    from hydra import compose, initialize_config_dir

    spec, out = TASKS[task], args.out
    overrides = [SEARCHPATH, f"estimator={arm}", *([f"seed={seed}"] if seed else [])]
    overrides += [f"run_dir={out}/${{trainer.experiment_name}}", *(["force=true"] if args.force else []), *user]
    try:
        with initialize_config_dir(config_dir=str(RECIPES / spec.folder), version_base=None):
            cfg = claims.resolved(compose(config_name=task, overrides=overrides))
    except Exception as err:  # Hydra's and OmegaConf's errors share no base class: all are bad input here
        raise LaunchError(f"{task} (arm {arm}) does not compose with these overrides: {err}") from None
    claim = claims.plan(cfg, arm, overrides)
    env = {**CPU_ENV, "OMP_NUM_THREADS": str(spec.threads)} if spec.cpu else {}
    # Ray's runtime_env carries verl's file-logger path to workers on every node (verl resolves no ${} there).
    overrides.append(f"++{claims.LOGGER_KEY}={claim.folder.train_log}")
    argv = [args.python, "-m", "verl.trainer.main_ppo", "--config-path", str(RECIPES / spec.folder)]
    argv += ["--config-name", task, *overrides]
    return Run(arm, claim, argv, env, cfg)


def check(task: str, run: Run, args: argparse.Namespace) -> None:
    """What a launch needs, also in a dry run: the sandbox (code), the data (GPU tasks), the run folder's rules."""
    cfg = run.cfg
    if task == "code":
        from verl_maxpo.code.guard import check_config
        from verl_maxpo.code.reward import CodeExecRefused

        url = cfg["reward"]["sandbox_fusion"].get("url")
        if url and not _SANDBOX_OK.fullmatch(str(url)):
            raise LaunchError(
                "reward.sandbox_fusion.url must be an http(s) URL like http://host:8080/run_code (percent-encode "
                f"other characters of a password), got {redact_url(str(url))!r}"
            )
        try:
            from omegaconf import OmegaConf

            if check_config(OmegaConf.create(cfg)) == "local" and run.arm == args.arms[0]:
                print(LOCAL_EXEC_WARNING, file=sys.stderr)
        except CodeExecRefused as err:
            raise LaunchError(str(err)) from None
    if not TASKS[task].cpu:
        for file in (cfg["data"]["train_files"], cfg["data"]["val_files"]):
            if "://" not in str(file) and not Path(str(file)).expanduser().is_file():
                folder = Path(str(file)).expanduser().parent
                raise LaunchError(f"missing {file}; make it with: {TASKS[task].prepare.format(dir=folder)}")
    validates(cfg)
    claims.check(run.claim, write=False)


NO_VALIDATION = "validation is off (trainer.test_freq <= 0 and trainer.val_before_train=false)"


def validates(cfg: dict) -> bool:
    """Whether verl validates during the run, so that the report has dumps to read; LaunchError for a setting of
    either key that verl could not read."""
    trainer = cfg["trainer"]
    before, freq = trainer.get("val_before_train", True), trainer.get("test_freq", -1)
    if not isinstance(before, bool):
        raise LaunchError(f"trainer.val_before_train must be true or false, got {before!r}")
    if freq is not None and (isinstance(freq, bool) or not isinstance(freq, int)):
        raise LaunchError(f"trainer.test_freq must be an integer (-1: never), got {freq!r}")
    return before or (freq or 0) > 0


def shown(run: Run, redact: Redactor) -> str:
    return redact(" ".join([*(f"{k}={v}" for k, v in run.env.items()), shlex.join(run.argv)]))


def summary(run: Run) -> str:
    cfg, meta = run.cfg, run.claim.meta
    trainer, actor = cfg["trainer"], cfg["actor_rollout_ref"]
    k = f"  k {meta.k}" if meta.k is not None else ""
    return (
        f"# {trainer['nnodes']} node(s) x {trainer['n_gpus_per_node']} GPU(s)  model {meta.settings['model']}  "
        f"n {meta.n}  val n {meta.val_n}  batch {cfg['data']['train_batch_size']}  "
        f"mini-batch {actor['actor']['ppo_mini_batch_size']}{k}"
    )


def build_assets(task: str, run: Run, args: argparse.Namespace, dry: bool) -> None:
    """The CPU tasks' model, data and reward (built when missing), and Ray's placement check."""
    assets = str(run.cfg[f"{task}_assets"])
    if dry:
        missing = not Path(assets, "manifest.json").is_file()
        print(f"# assets: {assets}" + (f" (missing: built at launch by verl-maxpo {task}-assets)" if missing else ""))
        return
    for argv in (
        ["-m", "verl_maxpo", f"{task}-assets", "--out", assets],  # reuses a folder built with these options
        ["-m", "verl_maxpo.cpu.preflight", "--assets", assets],
    ):
        if subprocess.run([args.python, *argv], stdin=subprocess.DEVNULL).returncode != 0:
            raise LaunchError(f"`{shlex.join(['python', *argv])}` failed (its message is above)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verl-maxpo launch",
        description="Run A/B arms of a recipe through verl's trainer, one run folder per arm and seed, then the "
        "`verl-maxpo report` over them. The flags below are the launcher's; everything else is a Hydra override of "
        "the recipe, passed to verl as given (k=8 actor_rollout_ref.rollout.n=16 trainer.n_gpus_per_node=4 ...).",
        epilog=f"arms: {' '.join(ARMS)}. Example: verl-maxpo launch gsm8k --arms maxpo,grpo --seeds 1,2 k=8 "
        "data.train_files=/data/gsm8k/train.parquet data.val_files=/data/gsm8k/test.parquet --dry-run",
    )
    p.add_argument("task", choices=list(TASKS), help="the recipe")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the recipe, for every arm (key=value)")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS), help="arms to compare, in order (default %(default)s)")
    p.add_argument("--seeds", default=None, help="one run per arm and seed, e.g. 1,2,3 (default: the recipe's seed)")
    p.add_argument("--out", default="outputs/verl-maxpo", help="one folder per run, DIR/<run name> (%(default)s)")
    p.add_argument("--dry-run", action="store_true", help="check everything and print each command; run nothing")
    p.add_argument("--print-config", action="store_true", help="print each arm's composed config (resolved)")
    p.add_argument("--force", action="store_true", help="train into run folders that already hold results")
    p.add_argument("--verbose", action="store_true", help="show verl's whole output (console.log always has it)")
    p.add_argument("--python", default=sys.executable, help="the interpreter that runs verl (default: this one)")
    return p


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """`verl-maxpo launch`: runs under the one command policy (runs/command.py): a refusal exits 2 before anything is
    launched, Ctrl-C 130 and SIGTERM 143 once verl has stopped; otherwise the trainer's own status."""
    return command.run("launch", lambda args: _main(args, env), argv)


def _main(argv: list[str], env: Mapping[str, str] | None) -> int:
    args = parser().parse_intermixed_args(argv)
    for name in sorted(set(env if env is not None else os.environ) & set(NOT_READ)):
        print(f"warning: the launcher does not read ${name}; use {NOT_READ[name]}", file=sys.stderr)
    redact = Redactor([o.split("=", 1)[1] for o in args.overrides if "://" in o])
    try:
        return launch(args, redact)
    except (LaunchError, claims.ClaimError, RunFolderError, OSError) as err:
        raise command.UsageError(redact(str(err))) from None


def launch(args: argparse.Namespace, redact: Redactor) -> int:
    args.arms = _words(args.arms, "--arms")
    if unknown := [a for a in args.arms if a not in ARMS]:
        raise LaunchError(f"--arms: unknown arm {unknown[0]!r}; arms: {' '.join(ARMS)}")
    seeds = _words(args.seeds, "--seeds") if args.seeds is not None else [None]
    if any(s is not None and not s.isdecimal() for s in seeds):
        raise LaunchError(f"--seeds {args.seeds!r}: give non-negative integers")
    if not args.python.strip():
        raise LaunchError("--python is empty; give an interpreter (default: this one)")
    args.out = os.path.abspath(os.path.expanduser(args.out)) if args.out.strip() else ""
    if not _PATH_OK.fullmatch(args.out):
        raise LaunchError(f"--out {args.out!r}: give a folder without spaces, quotes, = , [ ] {{ }} or ~ inside")
    user = [_override(o) for o in args.overrides]
    for o in user:
        key = claims.override_key(o)
        if key in ("estimator", "run_dir") or (key == "seed" and args.seeds is not None):
            raise LaunchError(f"{o!r}: the launcher sets {key} (--arms, --out, --seeds)")
    runs = [plan(args.task, arm, seed, args, user) for seed in seeds for arm in args.arms]
    folders = [run.claim.folder.path for run in runs]
    if len(set(folders)) < len(folders):
        raise LaunchError(f"two runs would share one run folder ({folders}): keep each arm's trainer.experiment_name")
    for run in runs:  # every run checked before any starts: a bad setting fails now, not hours later
        check(args.task, run, args)
        check_makeable(run.claim.folder.path, "--out")  # a dry run refuses what a launch could not make
    cpu, status = TASKS[args.task].cpu, 0
    if cpu:
        build_assets(args.task, runs[0], args, args.dry_run)
    for run in runs:
        print(f"=== {run.claim.folder.path.name} ===\n{summary(run)}", flush=True)
        if args.print_config:
            from omegaconf import OmegaConf

            print(redact(OmegaConf.to_yaml(OmegaConf.create(run.cfg))))
        if args.dry_run:
            print(f"# run dir: {run.claim.folder.path}\n{shown(run, redact)}")
            continue
        folder = run.claim.folder
        folder.path.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = run_verl(
            run.argv, run.env, folder.console_log, f"=== {stamp} launch ===\n{shown(run, redact)}", redact, args.verbose
        )
        if status != 0:
            return status
    if not any(validates(run.cfg) for run in runs):  # the report reads validation dumps: there will be none
        print(f"\n# no report: {NO_VALIDATION}; each run's train_log.jsonl holds verl's metrics", flush=True)
        return 0
    report = ["verl-maxpo", "report", *(str(r.claim.folder.path) for r in runs), "--out", f"{args.out}/report"]
    if cpu and not args.dry_run:  # the CPU tasks ran here: report right away
        from verl_maxpo.tools.report.main import main as report_main

        print(f"\n# the report over every run:\n{shlex.join(report)}", flush=True)
        return report_main(report[2:])
    print(f"\n# compare the arms (once all have finished):\n{shlex.join(report)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
