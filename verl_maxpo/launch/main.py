"""`verl-maxpo launch TASK [hydra overrides...]`: run A/B arms of one recipe through verl, one run folder per arm.

    verl-maxpo launch gsm8k                          # every arm of ARMS (default "maxpo grpo"), one after another
    ARMS="maxpo pkpo_loo grpo" K=8 verl-maxpo launch math trainer.total_epochs=1
    verl-maxpo launch --one gsm8k estimator=pkpo     # one run; the arm is the recipe's estimator group choice
    DRY_RUN=1 verl-maxpo launch code                 # print every command; run nothing

scripts/ab_launch.sh and recipes/<dir>/run.sh (--one) are thin wrappers of `python -m verl_maxpo.launch.main`.
For each arm the recipe is composed with Hydra's compose API twice, with the launcher's settings alone and with
the user's overrides added; every key the launcher owns (the arm's estimator and options, K, N, VAL_N, SEED, model,
data, names and paths) must be the same in both, whatever the override's form (a parent key, a deletion), so the
run folder and meta.json always say what verl trains. Settings come from the environment (see ENVIRONMENT); a
setting left unset takes the recipe's value. Bad input: a message and exit 2, before any folder is made.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from verl_maxpo.core.table import ARMS, ESTIMATORS, ArmSpec, arm_reads_k
from verl_maxpo.runs.folder import RunFolder, RunFolderError, RunMeta
from verl_maxpo.runs.redact import Redactor, redact_url

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
EXIT_USAGE = 2

ENVIRONMENT = """environment (unset: the recipe's value; set but empty: refused):
  ARMS           arms to compare, any whitespace between (default "maxpo grpo"); arms: {arms}
  RUN_ARMS       the part of ARMS this invocation runs (default ARMS); the report command names all of ARMS
  K N VAL_N SEED K of max@K, samples per training / validation prompt, the seed of every RNG
  NGPUS NNODES   GPUs per node, nodes (not for tiny and smol: one CPU rank)
  MODEL_PATH     hub id or local checkpoint (tiny and smol: instead of the assets' model)
  DATA_DIR       holds <task>/train.parquet and <task>/test.parquet (not for tiny and smol)
  OUT_DIR        one folder per run (default ./outputs/verl-maxpo); CKPT_DIR checkpoints (default OUT_DIR/checkpoints)
  TINY_ASSETS    tiny: model, data and reward (default OUT_DIR/tiny_assets, built when missing)
  SMOL_ASSETS    smol: SmolLM2-135M-Instruct, data and reward (default ./smol_assets, built when missing)
  SANDBOX_URL    code: SandboxFusion run_code endpoint; ALLOW_LOCAL_CODE_EXEC=1 runs programs locally (guarded)
  DRY_RUN        1/true/yes: print the commands, run nothing; 0/false/no/empty: run
  VERBOSE        1: show verl's whole output (console.log always has it)
  PYTHON         the interpreter that runs verl (default: this one)"""


class LaunchError(Exception):
    """Bad input: the message is printed (redacted) and the launcher exits 2."""


@dataclass(frozen=True)
class TaskSpec:
    """One task: its recipe (recipes/<folder>/<name>.yaml) and how its data is made.

    Attributes:
        folder: the recipe's folder under recipes/ (its run.sh runs this folder's tasks).
        prepare: the command that makes missing data, {dir} = the data folder.
        cpu: verl's trainer on a CPU with locally built assets (<ASSETS> instead of DATA_DIR).
        assets: the recipe's key for the assets folder (its upper-case form is the environment variable).
        assets_default: where the assets go when that variable is unset ({out_dir} = OUT_DIR; relative: the cwd).
        threads: OMP_NUM_THREADS of every process of a CPU run.
        code: the reward executes model-written programs (SANDBOX_URL or ALLOW_LOCAL_CODE_EXEC=1).
    """

    folder: str
    prepare: str
    cpu: bool = False
    code: bool = False
    assets: str = ""
    assets_default: str = ""
    threads: int = 1


# A new task is one line here plus its recipe.
TASKS: Mapping[str, TaskSpec] = {
    "gsm8k": TaskSpec("math", "verl-maxpo prepare gsm8k --out-dir {dir}"),
    "math": TaskSpec("math", "verl-maxpo prepare math --out-dir {dir}"),
    "code": TaskSpec("code", "verl-maxpo prepare code --out-dir {dir}", code=True),
    "tiny": TaskSpec("tiny", "verl-maxpo tiny-assets --out {dir}", cpu=True, assets="tiny_assets",
                     assets_default="{out_dir}/tiny_assets"),
    # A real 135M model: 2 BLAS threads per process use the second core (the tiny model gains nothing from it).
    "smol": TaskSpec("smol", "verl-maxpo smol-assets --out {dir}", cpu=True, assets="smol_assets",
                     assets_default="smol_assets", threads=2),
}  # fmt: skip
DEFAULT_ARMS = "maxpo grpo"
# The CPU platform, the task's BLAS threads per process (~17 processes share the cores), a private Ray cluster.
CPU_ENV = {"VERL_PLATFORM": "cpu", "OMP_NUM_THREADS": "1", "RAY_ADDRESS": "local"}
LOGGER_ENV = "VERL_FILE_LOGGER_PATH"
# The recipes list recipes/shared relative to the repository root; the launcher passes it absolute (any cwd).
SEARCHPATH = f"hydra.searchpath=['pkg://verl.trainer.config','file://{RECIPES}/shared']"
# The code recipe always scores through verl_maxpo.code.reward; ALLOW_LOCAL_CODE_EXEC=1 is its explicit opt-in.
LOCAL_SCORER = {"reward.custom_reward_function.reward_kwargs.allow_local_exec": "true"}
GUARDED_SCORER_KEYS = ("reward.custom_reward_function.path", "reward.custom_reward_function.name", *LOCAL_SCORER)
# Hydra parses override values: paths must avoid its special characters (and spaces).
_PATH_OK = re.compile(r"[A-Za-z0-9._/~+:@%-]+")
# Plain decimal: no sign, no leading zero (bash and Hydra read those differently), 9 digits at most.
_INT_OK = re.compile(r"0|[1-9][0-9]{0,8}")
# Carried unquoted by Hydra: user:password may hold letters, digits and . _ ~ % + - (percent-encode the rest).
_SANDBOX_OK = re.compile(r"https?://([A-Za-z0-9._~%+:-]+@)?[A-Za-z0-9._-]+(:[0-9]+)?(/[A-Za-z0-9._/%+~-]*)?")
_RAY_PREFIX = re.compile(r"^\([^)]*\)\s+")
_NUMBER = re.compile(r"(?:np\.\w+\()?(-?[0-9][0-9.eE+-]*|nan|-?inf)\)?")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")

LOCAL_EXEC_WARNING = """\
############################################################################################################
WARNING: ALLOW_LOCAL_CODE_EXEC=1: model-written programs will run ON THE TRAINING NODES.
verl_maxpo.code.reward runs each one in new user, PID, mount and network namespaces (a fresh /proc, no network,
no capabilities), with an empty environment (no WANDB_API_KEY, HF_TOKEN, AWS_*, ...), rlimits (memory 1 GiB
address space, CPU time, file size, no core dumps), and scores its outputs in a second process that runs no
model code. This is NOT a full sandbox. Still exposed to the programs:
  - filesystem: every file the uid it runs as can read (keys, checkpoints, the training data with the expected
    outputs), and writes where that uid can write;
  - memory and CPU: bounded per program, but many run in parallel (reward workers).
Use a SandboxFusion server (SANDBOX_URL) on any machine you share or care about.
############################################################################################################"""
NO_SANDBOX = """\
the code reward executes model-written programs, and SANDBOX_URL is not set. Nothing was started.
  Run them in a sandbox: start a SandboxFusion server, e.g.
      docker run -d --rm -p 8080:8080 volcengine/sandbox-fusion:server-20241202   (newer tags: its README)
  (https://github.com/bytedance/SandboxFusion), then
      SANDBOX_URL=http://<host>:8080/run_code bash scripts/ab_launch.sh code
  Or, on a machine you can throw away, run them locally with limits (not a sandbox; see recipes/code/README.md,
  "Security"):
      ALLOW_LOCAL_CODE_EXEC=1 bash scripts/ab_launch.sh code"""


# ---- settings from the environment -------------------------------------------------------------------------


def env_flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise LaunchError(f"{name} must be one of 1, true, yes (on) or 0, false, no, empty (off), got {env[name]!r}")


def env_int(env: Mapping[str, str], name: str, minimum: int) -> int | None:
    if name not in env:
        return None
    value = env[name]
    if not _INT_OK.fullmatch(value):
        raise LaunchError(
            f"{name} must be a plain decimal integer (digits only, no sign, no leading zero, at most 9 digits), "
            f"got {value!r}"
        )
    if int(value) < minimum:
        raise LaunchError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def env_path(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name, default)
    if value is None:
        return None
    if not value:
        raise LaunchError(f"{name} is empty (unset it for the default)")
    if not _PATH_OK.fullmatch(value):
        raise LaunchError(
            f"{name}={value!r} has characters a Hydra override cannot carry unquoted (spaces, = , [ ] {{ }} quotes)"
        )
    return value


def absolute(path: str, cwd: Path) -> str:
    return path if path.startswith("/") or "://" in path else str(cwd / path)


@dataclass(frozen=True)
class Settings:
    """What the environment asks for; None: the recipe's value."""

    k: int | None
    n: int | None
    val_n: int | None
    seed: int | None
    ngpus: int | None
    nnodes: int | None
    model: str | None
    data_dir: str | None
    out_dir: str
    ckpt_dir: str
    assets: str | None  # the CPU task's assets folder
    sandbox_url: str | None
    local_exec: bool
    dry_run: bool
    verbose: bool
    python: str
    # The environment verl runs in (the launcher's own, or the one main() was given).
    environ: Mapping[str, str]

    @classmethod
    def read(cls, env: Mapping[str, str], task: TaskSpec, cwd: Path) -> Settings:
        ints = {name: env_int(env, name.upper(), 0 if name == "seed" else 1) for name in ("k", "n", "val_n", "seed")}
        if task.cpu:
            for name in ("DATA_DIR", "NGPUS", "NNODES"):
                if name in env:
                    raise LaunchError(
                        f"the {task.folder} task does not read {name} (it runs {task.assets.upper()} on one CPU rank)"
                    )
        out_dir = absolute(env_path(env, "OUT_DIR", "outputs/verl-maxpo") or "", cwd)
        assets = env_path(env, task.assets.upper(), task.assets_default.format(out_dir=out_dir)) if task.cpu else None
        sandbox_url = env.get("SANDBOX_URL") or None
        local_exec = env.get("ALLOW_LOCAL_CODE_EXEC", "0") or "0"
        if task.code and local_exec not in ("0", "1"):
            raise LaunchError(f"ALLOW_LOCAL_CODE_EXEC must be 0 or 1, got {local_exec!r}")
        data_dir = env_path(env, "DATA_DIR")
        return cls(
            **ints,
            ngpus=env_int(env, "NGPUS", 1),
            nnodes=env_int(env, "NNODES", 1),
            model=env_path(env, "MODEL_PATH"),
            data_dir=absolute(data_dir, cwd) if data_dir else None,
            out_dir=out_dir,
            ckpt_dir=absolute(env_path(env, "CKPT_DIR", f"{out_dir}/checkpoints") or "", cwd),
            assets=absolute(assets, cwd) if assets else None,
            sandbox_url=sandbox_url,
            local_exec=task.code and local_exec == "1",
            dry_run=env_flag(env, "DRY_RUN"),
            verbose=env_flag(env, "VERBOSE"),
            python=env.get("PYTHON") or sys.executable,
            environ=env,
        )


def parse_arms(env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """ARMS and RUN_ARMS, split on any whitespace (a newline included), checked against the estimator table."""
    arms = env.get("ARMS", DEFAULT_ARMS).split()
    run_arms = env["RUN_ARMS"].split() if "RUN_ARMS" in env else arms
    known = " ".join(ARMS)
    if not arms:
        raise LaunchError(f"ARMS is empty; give one or more of: {known}")
    for arm in arms:
        if arm not in ARMS:
            raise LaunchError(f"unknown arm {arm!r} in ARMS; arms: {known}")
        if arms.count(arm) > 1:
            raise LaunchError(f"arm {arm!r} appears twice in ARMS (two arms would share one run folder)")
    if not run_arms:
        raise LaunchError(f"RUN_ARMS is empty; give one or more of ARMS ({' '.join(arms)})")
    for arm in run_arms:
        if arm not in arms:
            raise LaunchError(f"RUN_ARMS holds {arm!r}, which is not in ARMS ({' '.join(arms)})")
    return arms, run_arms


def check_group_size(arm_name: str, arm: ArmSpec, k: int | None, n: int) -> None:
    """The estimator table's rules: K >= min_k and N >= min_group_size(K); verl's own and K-free arms need N >= 2."""
    spec = ESTIMATORS.get(arm.estimator)
    if spec is not None and spec.reads_k and k is not None:
        slack = f"K + {spec.group_slack}" if spec.group_slack else "K"
        if k < spec.min_k or n < spec.min_group_size(k):
            raise LaunchError(
                f"{arm_name} needs K >= {spec.min_k} and N >= {slack} samples per prompt, got N={n} K={k}"
                if k < spec.min_k
                else f"{arm_name} needs N >= {slack} samples per prompt, got N={n} K={k}"
            )
    elif n < (need := spec.min_n if spec is not None else 2):
        raise LaunchError(f"{arm_name} compares samples within a group: N must be at least {need}, got N={n}")


# ---- overrides ---------------------------------------------------------------------------------------------


def override_key(override: str) -> str:
    key = override.split("=", 1)[0]
    return key.lstrip("+~")


def managed_keys(task: TaskSpec) -> dict[str, str]:
    """Config key -> the setting that owns it (the run's name and meta.json follow these)."""
    data = task.assets.upper() if task.cpu else "DATA_DIR"
    keys = {
        "data.train_files": data,
        "data.val_files": data,
        "actor_rollout_ref.model.path": "MODEL_PATH",
        "actor_rollout_ref.rollout.n": "N",
        "actor_rollout_ref.rollout.val_kwargs.n": "VAL_N",
        "algorithm.maxpo.k": "K",
        "k": "K",
        "seed": "SEED",
        "trainer.n_gpus_per_node": "NGPUS",
        "trainer.nnodes": "NNODES",
        "trainer.experiment_name": "OUT_DIR",
        "trainer.validation_data_dir": "OUT_DIR",
        f"ray_kwargs.ray_init.runtime_env.env_vars.{LOGGER_ENV}": "OUT_DIR",
        "trainer.default_local_dir": "CKPT_DIR",
        "reward.sandbox_fusion.url": "SANDBOX_URL",
    }
    if task.cpu:
        keys[task.assets] = task.assets.upper()
    if task.code:  # the code recipe's guarded scorer stays; where it runs programs is SANDBOX_URL's choice
        keys |= dict.fromkeys(GUARDED_SCORER_KEYS, "SANDBOX_URL (or ALLOW_LOCAL_CODE_EXEC=1)")
    return keys


def check_override_keys(overrides: Sequence[str], task: TaskSpec, one: bool) -> str | None:
    """Refuse overrides of the keys the launcher owns, or of a parent of one; the `estimator=ARM` choice (--one)."""
    owners = managed_keys(task)
    arm_keys = ("estimator", "algorithm.adv_estimator", "algorithm.maxpo")
    chosen = None
    for override in overrides:
        key = override_key(override)
        if key == "hydra.searchpath":
            raise LaunchError(f"the launcher sets hydra.searchpath (recipes/shared must stay on it); drop {override!r}")
        if one and key == "estimator" and override.startswith("estimator="):
            chosen = override.split("=", 1)[1]
            if chosen not in ARMS:
                raise LaunchError(f"unknown arm {chosen!r} in {override!r}; arms: {' '.join(ARMS)}")
            continue
        hit = [k for k in owners if k == key or k.startswith(f"{key}.")]
        if hit:
            raise LaunchError(
                f"set {owners[hit[0]]} in the environment instead of overriding {key!r} "
                "(it names the run and its meta.json)"
            )
        arm_hit = [k for k in arm_keys if k == key or k.startswith(f"{key}.") or key.startswith(f"{k}.")]
        if arm_hit and (not one or key != "algorithm.maxpo" and not key.startswith("algorithm.maxpo.")):
            how = "estimator=<arm>" if one else 'ARMS (e.g. ARMS="maxpo pkpo_loo")'
            raise LaunchError(f"{override!r}: the estimator of each arm comes from {how}, not from an override")
    return chosen


# ---- composing a recipe ------------------------------------------------------------------------------------


def compose(config_dir: Path, name: str, overrides: Sequence[str]) -> tuple[dict[str, Any], str]:
    """The recipe composed as verl's entry point would (resolved), and the estimator group's choice."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    if SEARCHPATH not in overrides:  # the recipes' own entry is relative to the repository root, not to the cwd
        overrides = [SEARCHPATH, *overrides]
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = hydra_compose(config_name=name, overrides=list(overrides), return_hydra_config=True)
        choice = str(cfg.hydra.runtime.choices.get("estimator"))
        with open_dict(cfg):
            del cfg["hydra"]
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # Hydra's and OmegaConf's errors share no base class; all are bad input here
        raise LaunchError(f"{name}.yaml does not compose with these overrides: {err}") from None
    assert isinstance(resolved, dict)
    return resolved, choice


def select(cfg: Mapping[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return "<absent>"
        node = node[part]
    return node


@dataclass
class Run:
    """One arm, ready to start: its folder, verl's argv and environment, its meta.json."""

    arm: str
    name: str
    folder: RunFolder
    argv: list[str]
    env: dict[str, str]
    meta: RunMeta
    data_files: tuple[str, str]
    data_hint: str


def plan_run(task_name: str, arm_name: str, s: Settings, user: Sequence[str]) -> Run:
    task, arm = TASKS[task_name], ARMS[arm_name]
    config_dir = RECIPES / task.folder
    base = [SEARCHPATH, f"estimator={arm_name}"]
    if task.cpu:
        base.append(f"{task.assets}={s.assets}")
    if s.data_dir:
        base += [f"data.train_files={s.data_dir}/{task_name}/train.parquet",
                 f"data.val_files={s.data_dir}/{task_name}/test.parquet"]  # fmt: skip
    for key, value in (
        ("actor_rollout_ref.model.path", s.model),
        ("trainer.n_gpus_per_node", s.ngpus),
        ("trainer.nnodes", s.nnodes),
        ("actor_rollout_ref.rollout.n", s.n),
        ("actor_rollout_ref.rollout.val_kwargs.n", s.val_n),
        ("seed", s.seed),
        ("k", s.k if arm_reads_k(arm) else None),
    ):
        if value is not None:
            base.append(f"{key}={value}")
    if task.code and s.sandbox_url:
        base.append(f"reward.sandbox_fusion.url={s.sandbox_url}")
    if task.code and s.local_exec:
        base += [f"{key}={value}" for key, value in LOCAL_SCORER.items()]

    intended, _ = compose(config_dir, task_name, base)
    if select(intended, "algorithm.adv_estimator") != arm.estimator:
        raise LaunchError(f"recipes/shared/estimator/{arm_name}.yaml does not train {arm.estimator} (the table's arm)")
    k = select(intended, "algorithm.maxpo.k") if arm_reads_k(arm) else None
    n, val_n, seed = (select(intended, key) for key in ("actor_rollout_ref.rollout.n",
                                                         "actor_rollout_ref.rollout.val_kwargs.n", "seed"))  # fmt: skip
    check_group_size(arm_name, arm, k, n)
    name = f"{task_name}_{arm_name}" + (f"_k{k}" if k is not None else "") + f"_seed{seed}"
    folder = RunFolder(Path(s.out_dir) / name)
    naming = {
        "trainer.experiment_name": name,
        "trainer.validation_data_dir": str(folder.val_dir),
        "trainer.default_local_dir": f"{s.ckpt_dir}/{name}",
    }
    logger = f"ray_kwargs.ray_init.runtime_env.env_vars.{LOGGER_ENV}"
    # Ray workers on other nodes do not inherit this environment; the job's runtime_env reaches them all.
    overrides = [*base, *(f"{k_}={v}" for k_, v in naming.items()), f"++{logger}={folder.train_log}", *user]
    actual, _ = compose(config_dir, task_name, overrides)
    expected = {**{key: select(intended, key) for key in managed_keys(task)}, **naming, logger: str(folder.train_log)}
    expected["algorithm.adv_estimator"] = arm.estimator
    expected |= {f"algorithm.maxpo.{opt}": value for opt, value in arm.options.items()}
    owners = (
        managed_keys(task)
        | {"algorithm.adv_estimator": "ARMS"}
        | dict.fromkeys((f"algorithm.maxpo.{o}" for o in arm.options), "ARMS")
    )
    for key, want in expected.items():
        got = select(actual, key)
        if got != want:
            raise LaunchError(
                f"the overrides change {key} ({want!r} -> {got!r}), which {owners[key]} sets: "
                f"set {owners[key]} in the environment instead (the run folder and meta.json follow it)"
            )
    train, val = select(actual, "data.train_files"), select(actual, "data.val_files")
    model = select(actual, "actor_rollout_ref.model.path")
    settings = {"arm": arm_name, "model": str(model), "train_files": str(train), "val_files": str(val)}
    if task.code:
        settings["code_exec"] = "sandbox" if s.sandbox_url else "local-guarded"
    settings |= {f"override.{i}": o for i, o in enumerate(user)}
    meta = RunMeta(adv_estimator=arm.estimator, k=k, n=n, seed=seed, config_name=task_name, val_n=val_n,
                   settings=settings)  # fmt: skip
    argv = [s.python, "-m", "verl.trainer.main_ppo", "--config-path", str(config_dir), "--config-name", task_name]
    cpu_env = {**CPU_ENV, "OMP_NUM_THREADS": str(task.threads)} if task.cpu else {}
    env = {**cpu_env, LOGGER_ENV: str(folder.train_log)}
    data_dir = str(Path(os.path.expanduser(str(train))).parent)
    hint = "build it with: " if task.cpu else "prepare it with: "
    return Run(arm_name, name, folder, [*argv, *overrides], env, meta, (str(train), str(val)),
               hint + task.prepare.format(dir=s.assets if task.cpu else data_dir))  # fmt: skip


# ---- running verl ------------------------------------------------------------------------------------------


def shown(run: Run, redact: Redactor) -> str:
    return redact(" ".join(f"{k}={shlex.quote(v)}" for k, v in run.env.items()) + " " + shlex.join(run.argv))


def headline(line: str) -> str | None:
    """verl's per-step console metrics, cut to what a person reads: step, score, validation, step time."""
    line = _RAY_PREFIX.sub("", line)  # "(TaskRunner pid=123) " when the line comes from a Ray actor
    if not line.startswith("step:"):
        return None
    fields = {key: _number(value) for key, _, value in (p.partition(":") for p in line.split(" - "))}
    parts = [f"step {line.split(' - ', 1)[0].removeprefix('step:')}"]
    for key, label, unit in (("critic/score/mean", "score mean", ""), ("timing_s/step", "step time", " s")):
        if fields.get(key) is not None:
            parts.append(f"{label} {fields[key]:.3g}{unit}")
    val = [(k.split("/", 1)[1], v) for k, v in fields.items() if k.startswith("val-") and "/reward/mean@" in k]
    parts += [f"{key} {value:.3g}" for key, value in val[:2] if value is not None]
    return "  ".join(parts)


def _number(text: str) -> float | None:
    """1.5, or np.float64(1.5) as verl prints numpy scalars; None for anything else."""
    match = _NUMBER.fullmatch(text.strip())
    return float(match.group(1)) if match else None


def run_verl(run: Run, s: Settings, redact: Redactor, out: TextIO) -> int:
    """Start verl; console.log gets its whole output (no ANSI codes, secrets masked), the console the headlines."""
    tail: list[str] = []
    with run.folder.console_log.open("a", encoding="utf-8") as log:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.write(f"=== {stamp} launch ===\n{shown(run, redact)}\n")
        log.flush()
        proc = subprocess.Popen(
            run.argv, env={**s.environ, **run.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace",
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                line = redact(_ANSI.sub("", raw.rstrip("\n")))
                log.write(line + "\n")
                tail = [*tail[-39:], line]
                summary = line if s.verbose else headline(line)
                if summary:
                    print(summary, file=out, flush=True)
            status = proc.wait()
        except KeyboardInterrupt:
            proc.wait()  # the terminal's Ctrl-C reached verl too; let it stop
            status = 130
    if status != 0 and not s.verbose:
        print("\n".join(["--- the last lines of verl's output ---", *tail]), file=sys.stderr)
    print(f"full output: {run.folder.console_log} (exit {status})", file=out)
    return status


def prepare_assets(task: TaskSpec, s: Settings) -> None:
    """Build the task's assets (idempotent) and check that Ray can place verl's workers, before any folder."""
    assert s.assets is not None
    command = task.prepare.split()[1]  # "tiny-assets", "smol-assets"
    for argv in (["-m", "verl_maxpo", command, "--out", s.assets],
                 ["-m", "verl_maxpo.cpu.preflight", "--assets", s.assets]):  # fmt: skip
        if subprocess.run([s.python, *argv], env=dict(s.environ), stdin=subprocess.DEVNULL).returncode != 0:
            raise LaunchError(f"`{shlex.join(['python', *argv])}` failed (its message is above)")


# ---- command line ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verl-maxpo launch",
        description="Run A/B arms of a recipe through verl's trainer, one run folder per arm (`verl-maxpo report` "
        "reads them).",
        epilog=ENVIRONMENT.format(arms=" ".join(ARMS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", help=f"the recipe: {', '.join(TASKS)}")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every arm (key=value)")
    p.add_argument(
        "--one", action="store_true", help="one run, of the arm the recipe picks (estimator=<arm>); ARMS unused"
    )
    p.add_argument("--folder", choices=sorted({t.folder for t in TASKS.values()}),
                   help="only the tasks of recipes/FOLDER (what recipes/FOLDER/run.sh passes)")  # fmt: skip
    return p


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    redact = Redactor([env.get("SANDBOX_URL", ""), *(o for o in args.overrides if "://" in o)])
    try:
        return _launch(args, env, cwd or Path.cwd(), redact)
    except (LaunchError, RunFolderError, OSError) as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return EXIT_USAGE


def _launch(args: argparse.Namespace, env: Mapping[str, str], cwd: Path, redact: Redactor) -> int:
    tasks = [name for name, t in TASKS.items() if args.folder in (None, t.folder)]
    if args.task not in tasks:
        raise LaunchError(f"unknown task {args.task!r}; tasks: {'|'.join(sorted(tasks))} (the arm: estimator=<arm>)")
    task = TASKS[args.task]
    if re.search(r"['\\]", str(ROOT)):  # it goes inside a quoted hydra.searchpath override
        raise LaunchError(f"the repository path {ROOT} contains a quote or backslash; move it")
    if task.code:
        _check_code_exec(env)
    s = Settings.read(env, task, cwd)
    chosen = check_override_keys(args.overrides, task, args.one)
    user = [o for o in args.overrides if not (args.one and o.startswith("estimator="))]
    if args.one:
        default = compose(RECIPES / task.folder, args.task, [])[1] if chosen is None else chosen
        arms, run_arms = [default], [default]
    else:
        arms, run_arms = parse_arms(env)
    if task.code and s.local_exec:
        print(LOCAL_EXEC_WARNING, file=sys.stderr)
    # Every arm is named and checked before any starts: a bad setting fails now, not after hours of training.
    runs = {arm: plan_run(args.task, arm, s, user) for arm in arms}
    if not s.dry_run and task.cpu:
        prepare_assets(task, s)
    status = 0
    for arm in run_arms:
        run = runs[arm]
        if len(arms) > 1 or not args.one:
            print(f"=== {args.task}_{arm} ===")
        if s.dry_run:
            print(f"# run dir: {run.folder.path}")
            if redact.active:
                print("# SANDBOX_URL credentials shown as ***; the real run passes them to verl")
            print(shown(run, redact))
            continue
        for file in run.data_files:
            if "://" not in file and not Path(os.path.expanduser(file)).is_file():
                raise LaunchError(f"missing {file}; {run.data_hint}")
        meta = RunMeta(**{**run.meta.to_dict(), "settings": {k: redact(v) for k, v in run.meta.settings.items()}})
        run.folder.claim(meta)
        print(f"run dir: {run.folder.path}", flush=True)
        status = run_verl(run, s, redact, sys.stdout)
        if status != 0:
            return status
    if not args.one:
        _report(args.task, [runs[a] for a in arms], s, everything_ran=run_arms == arms)
    return status


def _check_code_exec(env: Mapping[str, str]) -> None:
    url = env.get("SANDBOX_URL", "")
    if url and not _SANDBOX_OK.fullmatch(url):
        raise LaunchError(
            "SANDBOX_URL must be an http(s) URL like http://host:8080/run_code, without a query (percent-encode "
            f"other characters of a user:password part), got {redact_url(url)!r}"
        )
    if not url and (env.get("ALLOW_LOCAL_CODE_EXEC") or "0") == "0":
        raise LaunchError(NO_SANDBOX)


def _report(task: str, runs: list[Run], s: Settings, everything_ran: bool) -> None:
    report = ["verl-maxpo", "report", *(str(r.folder.path) for r in runs), "--out", f"{s.out_dir}/report"]
    print()
    if TASKS[task].cpu and not s.dry_run and everything_ran:  # the CPU tasks run here: report right away
        print(f"# the report over every arm:\n{shlex.join(report)}", flush=True)
        from verl_maxpo.cli.main import main as cli_main

        cli_main(report[1:])
    else:
        print(f"# compare the arms (run once all have finished):\n{shlex.join(report)}")


if __name__ == "__main__":
    sys.exit(main())
