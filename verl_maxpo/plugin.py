"""verl plugin entry point (group `verl.plugins`): `import verl` imports this module in every process.

Kept light and idempotent: it imports the adapter, which registers `maxpo` and `pkpo` once, and adds the CPU
backend's names (platform `cpu`, rollout `hf_cpu`); the CPU patches apply only with VERL_PLATFORM=cpu.
verl logs a failing plugin only at DEBUG level, so run `verl-maxpo check` when the estimator is not found.
"""

from verl_maxpo.cpu import register as register_cpu_backend
from verl_maxpo.verl_adapter import register

register()
register_cpu_backend()
