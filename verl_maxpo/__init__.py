"""verl-maxpo: MaxPO, the leave-two-out max@K policy-gradient estimator (arXiv 2606.06080), for verl and beyond.

The math (`verl_maxpo.core.estimators`, `verl_maxpo.core.lstat`) imports no verl; `verl_maxpo.core.table` lists every
estimator once; `verl_maxpo.integration.adapter` registers them with verl, which happens automatically through the
`verl.plugins` entry point. Other frameworks call `compute_advantages`.
"""

from verl_maxpo.core import estimators as _estimators
from verl_maxpo.core.api import compute_advantages
from verl_maxpo.core.estimators import max_at_k
from verl_maxpo.core.table import ESTIMATORS as _TABLE

# One public function per table estimator (maxpo_advantages, ...): the names come from the table.
globals().update({spec.function_name: getattr(_estimators, spec.function_name) for spec in _TABLE.values()})

__version__ = "0.1.0"
__all__ = ["__version__", "compute_advantages", "max_at_k", *(spec.function_name for spec in _TABLE.values())]
