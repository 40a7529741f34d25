"""verl plugin entry point (group `verl.plugins`): `import verl` imports this module in every process.

Kept light and idempotent: it only imports the adapter, which registers `maxpo` and `pkpo` once.
verl logs a failing plugin only at DEBUG level, so run `verl-maxpo check` when the estimator is not found.
"""

from verl_maxpo.verl_adapter import register

register()
