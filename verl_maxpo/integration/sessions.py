"""One sample per agent session for our estimators in verl's v1 trainer.

A multi-output agent loop writes several rows per session: batch keys `{uid}_{session}_{index}`, the session's final
reward copied to every row. verl's `compute_advantage_for_multi_trajectories` (in verl.trainer.ppo.v1.utils, called
by name from the v1 trainer_base's advantage step) scores only each session's final output for GRPO and hands every
other estimator all the rows, so a group-based estimator would count one session as several samples. Our estimators
never see `batch_keys`, so the selection happens here: a wrapper of that verl function that, for our estimator names
only, runs verl's own GRPO path (final output of each session, advantage broadcast to the session's rows) with our
estimator, and hands every other estimator to verl's original function with the caller's arguments untouched.

`install()` (from the plugin, in every process that imports verl) patches verl's module if it is already imported,
else leaves one import hook that patches it right after its first import and then removes itself: importing the v1
trainer inside `import verl` would pull in Ray and the whole trainer. Both go through
`verl_maxpo.integration.compat`'s guarded
step (touch points `v1_sessions`, `v1_sessions_trainer`): if verl renames either name the wrapper is skipped with one
warning, and verl's module imports and runs unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

UTILS_MODULE = "verl.trainer.ppo.v1.utils"
TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"  # binds the name at its import: patched too if already loaded
FUNCTION_NAME = "compute_advantage_for_multi_trajectories"
_MARK = "_verl_maxpo_sessions"


def _our_names() -> frozenset[str]:
    from verl_maxpo.core.table import ESTIMATORS

    return frozenset(ESTIMATORS)


def estimator_name(adv_estimator: Any) -> str:
    """verl passes the config string or an `AdvantageEstimator` member; both compare by their value."""
    return str(getattr(adv_estimator, "value", adv_estimator))


def final_rows(batch_keys: list[str]) -> tuple[list[int], list[int]]:
    """(row of each session's final output, in first-seen session order; each row's position in that list).

    The same parsing as verl's GRPO path: `{uid}_{session}_{index}` split from the right, the largest index wins.
    """
    final: dict[str, tuple[int, int]] = {}
    row_sessions = []
    for row, key in enumerate(batch_keys):
        fields = key.rsplit("_", 2)
        if len(fields) != 3:
            raise ValueError(f"unexpected batch key {key!r}: verl's v1 trainer writes '{{uid}}_{{session}}_{{index}}'")
        try:
            index = int(fields[2])
        except ValueError:
            raise ValueError(
                f"batch key {key!r}: its last field {fields[2]!r} is not an integer output index "
                "(verl's v1 trainer writes '{uid}_{session}_{index}')"
            ) from None
        session = f"{fields[0]}_{fields[1]}"
        row_sessions.append(session)
        if session not in final or final[session][0] < index:
            final[session] = (index, row)
    position = {session: i for i, session in enumerate(final)}
    return [row for _, row in final.values()], [position[s] for s in row_sessions]


def session_advantages(original: Callable[..., Any], data: Any, batch_keys: list[str], **kwargs: Any) -> Any:
    """Our estimator on each session's final output, broadcast to the session's rows (as verl's GRPO path in
    `compute_advantage_for_multi_trajectories` does)."""
    compute_advantage = original.__globals__["compute_advantage"]  # the one verl's function calls
    if len(batch_keys) != len(data):
        raise ValueError(
            f"got {len(batch_keys)} batch keys for {len(data)} rows: verl's v1 trainer passes one "
            "'{uid}_{session}_{index}' key per row"
        )
    finals, row_to_final = final_rows(batch_keys)
    final_data = compute_advantage(data.select_idxs(finals), **kwargs)
    first = final_data.batch["response_mask"].argmax(dim=1)
    per_session = final_data.batch["advantages"][torch.arange(len(final_data)), first]
    scores = per_session[row_to_final].unsqueeze(-1) * data.batch["response_mask"]
    data.batch["advantages"] = scores
    data.batch["returns"] = scores
    return data


def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    """verl's function with session handling for our estimators; every other estimator reaches `original` as is."""
    if getattr(original, _MARK, False):
        return original
    signature = inspect.signature(original)
    ours = _our_names()

    @functools.wraps(original)
    def compute_advantage_for_multi_trajectories(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        if estimator_name(bound.arguments.get("adv_estimator")) not in ours:
            return original(*args, **kwargs)
        bound.apply_defaults()
        options = dict(bound.arguments)
        data, batch_keys = options.pop("data"), options.pop("batch_keys")
        return session_advantages(original, data, list(batch_keys), **options)

    setattr(compute_advantage_for_multi_trajectories, _MARK, True)
    return compute_advantage_for_multi_trajectories


def _patch(utils: Any) -> None:
    import sys

    from verl_maxpo.integration import compat

    wrapped = wrap(getattr(utils, FUNCTION_NAME))
    setattr(utils, FUNCTION_NAME, wrapped)
    trainer = sys.modules.get(TRAINER_MODULE)
    # A trainer_base without the name is mid-import (it is what imports utils): it binds the wrapped name itself.
    if trainer is not None and hasattr(trainer, FUNCTION_NAME):

        def rebind(module: Any) -> None:
            if getattr(module, FUNCTION_NAME) is wrapped.__wrapped__:
                setattr(module, FUNCTION_NAME, wrapped)

        compat.apply("v1_sessions_trainer", trainer, rebind)


def install() -> None:
    """Wrap verl's function now if its module is imported, else right after its first import (one-shot hook)."""
    from verl_maxpo.integration import compat

    compat.on_import("v1_sessions", _patch)
