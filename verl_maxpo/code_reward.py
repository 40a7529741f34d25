"""Stable import path of the code task's reward (`custom_reward_function.path: pkg://verl_maxpo.code_reward`).

The implementation lives in `verl_maxpo.code.reward`; configs written against this path keep working.
"""

from verl_maxpo.code.reward import *  # noqa: F403
from verl_maxpo.code.reward import __all__  # noqa: F401
