"""Test-only trace of a CPU training run, VERL_MAXPO_TRACE_DIR=DIR (loaded by this folder's sitecustomize).

Two records, each one JSON line per event, so tests can check verl's trainer against `verl_maxpo.core.estimators`:
  DIR/advantages.jsonl  per training step: estimator, batch keys, uid, score (sum of token_level_rewards) and the
                        advantage of each row (its first response token), as verl's v1 trainer computed them;
  DIR/compute_advantage.jsonl  per call of verl's `ray_trainer.compute_advantage` (the legacy trainer calls it
                        once per step; the v1 path above calls it on each session's final outputs): the same fields;
  DIR/weights.jsonl     per weight sync into the hf_cpu rollout: the largest absolute change of any rollout weight
                        from the weights loaded from the model path.
Import hooks patch each module right after its first import; nothing heavy is imported at start-up.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRACE_ENV = "VERL_MAXPO_TRACE_DIR"
# verl.trainer.ppo.v1.trainer_base imports this name; its `_compute_advantage` calls it every step.
TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"
ADVANTAGE_FN = "compute_advantage_for_multi_trajectories"
ROLLOUT_MODULE = "verl_maxpo.cpu.rollout"
# Both trainers reach verl's compute_advantage through this module (the legacy one calls it directly).
RAY_TRAINER_MODULE = "verl.trainer.ppo.ray_trainer"


def append(name: str, record: dict[str, Any]) -> None:
    folder = Path(os.environ[TRACE_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _tracer(module: Any, name: str, record: str) -> None:
    fn = getattr(module, name)

    @functools.wraps(fn)
    def traced(data: Any, *args: Any, **kwargs: Any) -> Any:
        out = fn(data, *args, **kwargs)
        batch = out.batch
        first = batch["response_mask"].float().argmax(dim=1)  # first response token of each row
        estimator = kwargs.get("adv_estimator", args[0] if args else None)
        append(
            record,
            {
                "estimator": str(getattr(estimator, "value", estimator)),
                "batch_keys": [str(k) for k in kwargs.get("batch_keys", [])],
                "uid": [str(u) for u in out.non_tensor_batch["uid"].tolist()],
                "score": batch["token_level_rewards"].sum(dim=-1).tolist(),
                "advantage": batch["advantages"][list(range(len(first))), first].tolist(),
            },
        )
        return out

    setattr(module, name, traced)


def _trace_advantages(module: Any) -> None:
    _tracer(module, ADVANTAGE_FN, "advantages.jsonl")


def _trace_compute_advantage(module: Any) -> None:
    _tracer(module, "compute_advantage", "compute_advantage.jsonl")


def _trace_weights(module: Any) -> None:
    server = module.HFCPUServer
    init, load = server.__init__, server.load_weights

    @functools.wraps(init)
    def traced_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._trace_initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @functools.wraps(load)
    def traced_load(self: Any, *args: Any, **kwargs: Any) -> int:
        loaded = load(self, *args, **kwargs)
        now = self.model.state_dict()
        change = max(float((now[k] - v).abs().max()) for k, v in self._trace_initial.items())
        append("weights.jsonl", {"sync": self.syncs, "global_steps": self.global_steps, "max_abs_change": change})
        return loaded

    server.__init__, server.load_weights = traced_init, traced_load


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs `patch(module)` right after module `name` is first imported, then leaves sys.meta_path."""

    def __init__(self, name: str, patch: Callable[[Any], None]) -> None:
        self.name, self.patch, self.inner = name, patch, None

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        self.inner, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        self.patch(module)


def install() -> None:
    hooks = (
        (TRAINER_MODULE, _trace_advantages),
        (RAY_TRAINER_MODULE, _trace_compute_advantage),
        (ROLLOUT_MODULE, _trace_weights),
    )
    for name, patch in hooks:
        if name in sys.modules:
            patch(sys.modules[name])
        else:
            sys.meta_path.insert(0, _AfterImport(name, patch))
