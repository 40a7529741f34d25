"""Refuses a code recipe before anything starts when model-written programs would run unguarded.

recipes/code/code.yaml registers `GuardedRunClaim` as a Hydra callback (in place of the A/B base's run claim), so
`python -m verl.trainer.main_ppo` with a code recipe checks `check_config` in the driver before the run folder is
claimed, verl validates the config or Ray starts; a refusal prints one line and exits with status 2. The same rule
(code_reward.exec_mode) is applied again by the scorer itself at the first row each reward worker scores, for runs
that bypass Hydra's callbacks (the compose API, an override of hydra.callbacks).
"""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback

from verl_maxpo.code.reward import CodeExecRefused, exec_mode, local_setup
from verl_maxpo.runs.claim import RunClaim

# The recipes' scorer under its stable path, and the module that implements it: both are ours, so both are checked.
OUR_SCORER = "pkg://verl_maxpo.code_reward"
OUR_SCORERS = frozenset({OUR_SCORER, "pkg://verl_maxpo.code.reward"})


def check_config(config: Any) -> str:
    """'sandbox', 'local' or 'custom' (the user's own scorer); CodeExecRefused for everything else."""
    reward = config.reward
    url = reward.sandbox_fusion.get("url") if reward.get("sandbox_fusion") is not None else None
    custom = reward.get("custom_reward_function") or {}
    path = custom.get("path")
    if path is None:
        if url:
            return "sandbox"
        # verl's default scorer would run the programs with prime_code in the reward worker, unguarded.
        raise CodeExecRefused(
            "reward.custom_reward_function.path is null and reward.sandbox_fusion.url is not set: verl would run "
            f"model-written programs unguarded. Keep path={OUR_SCORER} (the code recipes' default) or set the URL."
        )
    if path not in OUR_SCORERS:
        return "custom"
    if custom.get("name") != "compute_score":
        raise CodeExecRefused(f"reward.custom_reward_function.name must be compute_score, got {custom.get('name')!r}")
    kwargs = custom.get("reward_kwargs") or {}
    mode = exec_mode(kwargs.get("sandbox_fusion_url"), kwargs.get("allow_local_exec", False))
    if mode == "local":
        local_setup(
            kwargs.get("memory_limit_mb", 1024),
            kwargs.get("cpu_seconds", 120),
            kwargs.get("max_file_mb", 16),
            kwargs.get("wall_seconds", 150.0),
        )
    return mode


class CodeExecGuard(Callback):
    """Hydra callback (hydra.callbacks in recipes/code/code.yaml): check_config before the job runs."""

    def on_job_start(self, config: Any, **_: Any) -> None:
        try:
            mode = check_config(config)
        except CodeExecRefused as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except Exception as error:  # an interpolation that does not resolve, a missing section
            print(f"error: cannot check where the code reward runs programs: {error}", file=sys.stderr)
            sys.exit(2)
        print(f"verl-maxpo: code reward mode: {mode}", file=sys.stderr)


class GuardedRunClaim(RunClaim):
    """The code recipe's run claim (its hydra.callbacks entry replaces the A/B base's): where programs run is
    checked first, so a refused run claims no run folder (Hydra calls callbacks in the order the configs merge)."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        CodeExecGuard().on_job_start(config)
        super().on_job_start(config, **kwargs)
