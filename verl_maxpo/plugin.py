"""verl plugin entry point (group `verl.plugins`): `import verl` imports this module in every process.

Kept light and idempotent. It registers our estimators (the adapter), installs the session wrapper of verl's v1
advantage step (`verl_maxpo.sessions`: our estimators see one sample per agent session; a one-shot import hook
until verl imports that module), and adds the CPU backend's names (platform `cpu`, rollout `hf_cpu`); the CPU
patches apply only with VERL_PLATFORM=cpu. Without that opt-in nothing else changes: docs/cpu-backend.md lists
every difference. verl logs a failing plugin only at DEBUG level, so run `verl-maxpo check` when the estimator is
not found.
"""

from verl_maxpo import sessions
from verl_maxpo.cpu import register as register_cpu_backend
from verl_maxpo.verl_adapter import register

register()
sessions.install()
register_cpu_backend()
