"""verl-maxpo: MaxPO, the leave-two-out max@K policy-gradient estimator (arXiv 2606.06080), for verl and beyond.

The math (`verl_maxpo.estimators`, `verl_maxpo.lstat`) imports no verl; `verl_maxpo.estimator_table` lists every
estimator once; `verl_maxpo.verl_adapter` registers them with verl, which happens automatically through the
`verl.plugins` entry point. Other frameworks call `compute_advantages`.
"""

from verl_maxpo import estimators as _estimators
from verl_maxpo.api import compute_advantages
from verl_maxpo.estimator_table import ESTIMATORS as _TABLE
from verl_maxpo.estimators import max_at_k

# One public function per table estimator (maxpo_advantages, ...): the names come from the table.
globals().update({spec.function_name: getattr(_estimators, spec.function_name) for spec in _TABLE.values()})

__version__ = "0.1.0"
__all__ = ["__version__", "compute_advantages", "max_at_k", *(spec.function_name for spec in _TABLE.values())]
