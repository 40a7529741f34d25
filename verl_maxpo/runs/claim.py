"""The run-folder claim of the A/B recipes, as a Hydra callback: every run through verl's entry point gets it.

recipes/shared/ab_base.yaml registers `RunClaim` under hydra.callbacks, so `python -m verl.trainer.main_ppo
--config-name gsm8k ...` (by hand or from `verl-maxpo launch`) checks the composed config in the driver before verl
starts anything, and refuses with one `error:` line and exit 2:
  - algorithm.maxpo options the estimator does not accept (core.table.MaxPOOptions.parse), and a group size
    actor_rollout_ref.rollout.n below the estimator's minimum for k (k + 1 for maxpo);
  - a run named after an arm (trainer.experiment_name = runs.names.run_name) that trains something else, e.g.
    algorithm.maxpo.objective=ml under the `maxpo` arm's name;
  - a run folder (`run_dir`) with other settings in its meta.json, one held by a live process, or one that holds
    results (validation dumps, train log, checkpoints) unless trainer.resume_mode is given or force=true.
Then it writes meta.json and holds the folder (an flock on RUN_DIR/.claim) until the process ends.
`plan` and `check` are the same rules for the launcher, which composes with Hydra's compose API (no callbacks).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from verl_maxpo.core.table import ARMS, ESTIMATORS, MaxPOOptions, arm_reads_k
from verl_maxpo.runs.folder import RunFolder, RunFolderError, RunMeta
from verl_maxpo.runs.names import run_name
from verl_maxpo.runs.redact import Redactor

LOGGER_ENV = "VERL_FILE_LOGGER_PATH"
LOGGER_KEY = f"ray_kwargs.ray_init.runtime_env.env_vars.{LOGGER_ENV}"
# Override keys already in meta.json's fields (or that only say where things go); every other override is a setting.
RECORDED = {
    "estimator", "run_dir", "force", "k", "seed", "task", "algorithm.maxpo.k", "actor_rollout_ref.rollout.n",
    "actor_rollout_ref.rollout.val_kwargs.n", "actor_rollout_ref.model.path", "data.train_files", "data.val_files",
    "trainer.resume_mode", "trainer.experiment_name", "trainer.default_local_dir", "trainer.validation_data_dir",
    "trainer.n_gpus_per_node", "trainer.nnodes", "tiny_assets", "smol_assets", "reward.sandbox_fusion.url",
    "reward.custom_reward_function.reward_kwargs.allow_local_exec", LOGGER_KEY,
}  # fmt: skip
# Where the code reward runs programs is not a result setting: moving a run between a sandbox and the local opt-in
# keeps its folder.


N_KEY, VAL_N_KEY = "actor_rollout_ref.rollout.n", "actor_rollout_ref.rollout.val_kwargs.n"


class ClaimError(ValueError):
    """A config that must not start: the message says which key and why."""


@dataclass(frozen=True)
class Claim:
    """What a run will write where: its folder, meta.json, and whether results already there may be reused."""

    folder: RunFolder
    meta: RunMeta
    reuse: bool  # trainer.resume_mode given, or force=true
    checkpoints: Path


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _get(cfg: Mapping[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ClaimError(f"the config has no {key}")
        node = node[part]
    return node


def plan(cfg: Mapping[str, Any], arm: str | None, overrides: Sequence[str]) -> Claim:
    """The claim of a resolved config (a plain dict), checked against the estimator table; ClaimError if refused."""
    estimator = _get(cfg, "algorithm.adv_estimator")
    n, val_n, seed = (_get(cfg, key) for key in (N_KEY, VAL_N_KEY, "seed"))
    for key, value in ((N_KEY, n), (VAL_N_KEY, val_n), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise ClaimError(f"{key} must be an integer >= {0 if key == 'seed' else 1}, got {value!r}")
    spec = ESTIMATORS.get(estimator)
    k = None
    if spec is not None:
        try:
            options = MaxPOOptions.parse(_get(cfg, "algorithm").get("maxpo"), estimator)
        except ValueError as err:
            raise ClaimError(str(err)) from None
        if spec.reads_k:
            k = options.k
        if n < spec.min_group_size(options.k):
            need = f"k + {spec.group_slack}" if spec.reads_k and spec.group_slack else "k" if spec.reads_k else "2"
            raise ClaimError(
                f"actor_rollout_ref.rollout.n={n} is too small for {estimator} with k={options.k}: each prompt needs "
                f"n >= {need} = {spec.min_group_size(options.k)} samples"
            )
    elif arm in ARMS and n < 2:
        raise ClaimError(f"actor_rollout_ref.rollout.n={n}: {estimator} compares samples within a group, needs n >= 2")
    task = str(cfg.get("task") or "run")
    arm_k = (_get(cfg, "algorithm").get("maxpo") or {}).get("k") if arm in ARMS and arm_reads_k(ARMS[arm]) else None
    if arm in ARMS and _get(cfg, "trainer.experiment_name") == run_name(arm, seed, task, arm_k):
        _check_arm(cfg, arm, estimator)
    redact = Redactor([o.split("=", 1)[1] for o in overrides if "://" in o])
    settings = {"arm": str(arm), "model": str(_get(cfg, "actor_rollout_ref.model.path"))}
    settings |= {name: str(_get(cfg, f"data.{name}")) for name in ("train_files", "val_files")}
    extra = [redact(o) for o in overrides if override_key(o) not in RECORDED and not o.startswith("hydra.")]
    settings |= {f"override.{i}": o for i, o in enumerate(extra)}
    meta = RunMeta(adv_estimator=estimator, k=k, n=n, seed=seed, config_name=task, val_n=val_n, settings=settings)
    run_dir = Path(str(_get(cfg, "run_dir"))).expanduser().absolute()
    reuse = bool(cfg.get("force")) or any(override_key(o) == "trainer.resume_mode" for o in overrides)
    checkpoints = Path(str(_get(cfg, "trainer.default_local_dir"))).expanduser().absolute()
    return Claim(RunFolder(run_dir), meta, reuse, checkpoints)


def _check_arm(cfg: Mapping[str, Any], arm: str, estimator: str) -> None:
    """A run named after `arm` trains exactly that arm: its estimator and the options its estimator file fixes."""
    spec = ARMS[arm]
    if estimator != spec.estimator:
        raise ClaimError(
            f"algorithm.adv_estimator={estimator} under the name of arm {arm} (which trains {spec.estimator}); "
            "pick estimator=<arm>, or name the run: trainer.experiment_name=..."
        )
    if estimator not in ESTIMATORS:
        return
    got = MaxPOOptions.parse(cfg["algorithm"].get("maxpo"), estimator)
    want = MaxPOOptions.parse({**spec.options, "k": got.k}, estimator)
    for key in ("objective", "m", "rank_weights"):
        if getattr(got, key) != getattr(want, key):
            raise ClaimError(
                f"algorithm.maxpo.{key}={getattr(got, key)!r} under the name of arm {arm}, whose estimator file fixes "
                f"{key}={getattr(want, key)!r}; pick the arm that trains it (estimator=<arm>) or name the run: "
                "trainer.experiment_name=..."
            )


def check(claim: Claim, write: bool) -> None:
    """The folder rules; write=True also writes meta.json and holds the folder for this process's lifetime."""
    folder = claim.folder
    if write:
        folder.hold()
    elif (pid := folder.holder()) is not None:
        raise RunFolderError(f"{folder.path} is in use by a running process (pid {pid})")
    folder.claim(claim.meta, write=False)  # other settings, or not a run folder: refused before anything is written
    if not claim.reuse and (found := folder.results(claim.checkpoints)):
        raise RunFolderError(
            f"{folder.path} already holds results ({found[0]}); resume with trainer.resume_mode=auto, start over "
            "into it with force=true (--force), or use another folder"
        )
    if write:
        folder.claim(claim.meta)


def resolved(config: Any) -> dict[str, Any]:
    """A composed DictConfig without its hydra node, resolved to plain containers."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(config, resolve=False)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    cfg = OmegaConf.to_container(OmegaConf.create(plain), resolve=True)
    assert isinstance(cfg, dict)
    return cfg


class RunClaim(Callback):
    """Hydra callback (hydra.callbacks in recipes/shared/ab_base.yaml): `plan` and `check` before the job runs."""

    def on_job_start(self, config: Any, **_: Any) -> None:
        try:
            arm = config.hydra.runtime.choices.get("estimator")
            overrides = [str(o) for o in config.hydra.overrides.task]
            claim = plan(resolved(config), arm, overrides)
            check(claim, write=True)
        except (ClaimError, RunFolderError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except Exception as err:  # an interpolation that does not resolve, a missing section
            print(f"error: cannot check the run's config: {err}", file=sys.stderr)
            sys.exit(2)
        # verl's file logger; Ray workers of a local cluster inherit it (the launcher also passes it via runtime_env).
        os.environ[LOGGER_ENV] = str(claim.folder.train_log)
        print(f"verl-maxpo: run folder {claim.folder.path}", file=sys.stderr)
