"""verl plugin entry point (group `verl.plugins`): `import verl` imports this module in every process.

Kept light and idempotent; it imports none of verl's heavy modules. It leaves one-shot import hooks that, right
after verl first imports the module concerned, register our estimators (`verl.trainer.ppo.core_algos`, which
holds the registry and `get_adv_estimator_fn`, so every lookup of an estimator name comes after it) and install
the session wrapper of verl's v1 advantage step (`verl_maxpo.integration.sessions`: our estimators see one sample per
agent session). It also adds the CPU backend's names (platform `cpu`, rollout `hf_cpu`); the CPU patches apply only
with VERL_PLATFORM=cpu. So `import verl` does the work it does with plugins off (docs/cpu-backend.md has the
measured cost), and a process that never imports core_algos (a rollout server, say) pays nothing for the
estimators. Without the opt-in nothing else changes: docs/cpu-backend.md lists every difference. verl logs a
plugin failing inside `import verl` only at DEBUG level, so run `verl-maxpo check` when the estimator is not found.
Every hook goes through `verl_maxpo.integration.compat`, the table of verl touch points: a renamed verl name skips
that hook with one RuntimeWarning instead of breaking verl's import.
"""

from __future__ import annotations

from types import ModuleType

from verl_maxpo.cpu import register as register_cpu_backend
from verl_maxpo.integration import compat, sessions


def register_estimators(core_algos: ModuleType) -> None:
    """Register the table's estimators in verl's registry; runs right after verl imports `core_algos`.

    Applied through `compat.on_import`: a failure here is one warning, not an error, since it runs inside verl's own
    import of core_algos, and a broken verl-maxpo must not break verl for the runs that do not use our estimators.
    The adapter registers at the end of its own import. Importing the module, not a name from it, also holds when
    the adapter's import is what imports core_algos (it is then partly initialized, and finishes later).
    """
    import verl_maxpo.integration.adapter  # noqa: F401


compat.on_import("estimator_registry", register_estimators)
sessions.install()
register_cpu_backend()
