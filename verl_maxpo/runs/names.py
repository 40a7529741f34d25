"""The one definition of a run's name: `<task>_<arm>[_k<K>]_seed<seed>` (the demo leaves out the task).

The launcher names its run folders with it, the demo its `runs/<arm>_seed<s>` folders, and the run-folder claim
(verl_maxpo.runs.claim) checks that a run carrying an arm's name trains that arm. The recipes' estimator files
(recipes/shared/estimator/<arm>.yaml) spell the same pattern as an interpolation for trainer.experiment_name,
and a test composes every arm to keep the two equal.
"""

from __future__ import annotations


def run_name(arm: str, seed: int, task: str | None = None, k: int | None = None) -> str:
    """`gsm8k_maxpo_k4_seed1` for run_name("maxpo", 1, "gsm8k", 4); k=None for arms that read no K."""
    parts = [part for part in (task, arm, None if k is None else f"k{k}") if part]
    return "_".join([*parts, f"seed{seed}"])
