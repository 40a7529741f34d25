"""Test-only trace of the advantages verl used: VERL_MAXPO_TRACE_DIR=DIR (with VERL_PLATFORM=cpu).

Two records, each one JSON line per event, so tests can check verl's trainer against `verl_maxpo.estimators`:
  DIR/advantages.jsonl  per training step: estimator, uid, score (sum of token_level_rewards) and the advantage of
                        each sample (its first response token), as verl's v1 trainer computed them;
  DIR/weights.jsonl     per weight sync into the hf_cpu rollout: the largest absolute change of any rollout weight
                        from the weights loaded from the model path.
Never active unless the variable is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TRACE_ENV = "VERL_MAXPO_TRACE_DIR"
# verl/trainer/ppo/v1/trainer_base.py ~75 imports this name; `_compute_advantage` (~1743) calls it every step.
_TARGET_MODULE = "verl.trainer.ppo.v1.trainer_base"
_TARGET_NAME = "compute_advantage_for_multi_trajectories"


def trace_dir() -> Path | None:
    value = os.environ.get(TRACE_ENV)
    return Path(value) if value else None


def append(name: str, record: dict[str, Any]) -> None:
    """Append one JSON line to DIR/name (no-op when tracing is off)."""
    folder = trace_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _wrap(fn: Any) -> Any:
    def traced(data: Any, *args: Any, **kwargs: Any) -> Any:
        out = fn(data, *args, **kwargs)
        batch = out.batch
        mask = batch["response_mask"]
        first = mask.float().argmax(dim=1)  # first response token of each row
        rows = range(mask.shape[0])
        estimator = kwargs.get("adv_estimator")
        append(
            "advantages.jsonl",
            {
                "estimator": str(getattr(estimator, "value", estimator)),
                "uid": [str(u) for u in out.non_tensor_batch["uid"].tolist()],
                "score": batch["token_level_rewards"].sum(dim=-1).tolist(),
                "advantage": batch["advantages"][list(rows), first].tolist(),
            },
        )
        return out

    traced._verl_maxpo_trace = True  # type: ignore[attr-defined]
    return traced


def _patch(module: Any) -> None:
    fn = getattr(module, _TARGET_NAME)
    if not getattr(fn, "_verl_maxpo_trace", False):
        setattr(module, _TARGET_NAME, _wrap(fn))


def install() -> None:
    """Trace verl's advantages in this process (called from `patches.apply` when VERL_MAXPO_TRACE_DIR is set)."""
    from verl_maxpo.cpu.patches import patch_on_import

    patch_on_import(_TARGET_MODULE, _patch)
