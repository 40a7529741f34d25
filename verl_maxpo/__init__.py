"""verl-maxpo: MaxPO, the leave-two-out max@K policy-gradient estimator (arXiv 2606.06080), for verl.

The math (`verl_maxpo.estimators`) imports no verl; `verl_maxpo.verl_adapter` registers the estimators
`maxpo`, `pkpo` and `pkpo_loo` with verl, which happens automatically through the `verl.plugins` entry point.
"""

from verl_maxpo.estimators import max_at_k, maxpo_advantages, pkpo_advantages, pkpo_loo_advantages

__version__ = "0.1.0"
__all__ = ["__version__", "max_at_k", "maxpo_advantages", "pkpo_advantages", "pkpo_loo_advantages"]
