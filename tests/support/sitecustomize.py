"""Test-only: arms `verl_maxpo_trace` in every Python process of a traced run (driver, Ray workers, actors).

The slow trainer tests put this folder first on PYTHONPATH and set VERL_MAXPO_TRACE_DIR; Python imports
`sitecustomize` at start-up in each process, and Ray's workers inherit the variables. Nothing happens without it.
"""

import os

if os.environ.get("VERL_MAXPO_TRACE_DIR"):
    import verl_maxpo_trace

    verl_maxpo_trace.install()
