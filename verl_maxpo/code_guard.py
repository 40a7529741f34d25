"""Stable import path of the code recipes' Hydra callback (`_target_: verl_maxpo.code_guard.GuardedRunClaim`).

The implementation lives in `verl_maxpo.code.guard`; configs written against this path keep working.
"""

from verl_maxpo.code.guard import OUR_SCORER, OUR_SCORERS, CodeExecGuard, GuardedRunClaim, check_config

__all__ = ["OUR_SCORER", "OUR_SCORERS", "CodeExecGuard", "GuardedRunClaim", "check_config"]
