"""``causal_bo``: causal Bayesian optimization (CBO, Aglietti et al. 2020) in the common interface.

Per intervenable variable ``X_i``, the GP posterior of ``E[Y | do(X_i = v)]`` of ``core.response_gp`` with
its causal prior (``core.observational_prior``: a regression of Y on ``X_i`` and its adjustment set over the
observational samples, averaged over the adjustment values, its uncertainty in the kernel), hyperparameters
by marginal likelihood, and expected improvement against the best outcome observed (CBO's incumbent), over
65 values per range refined around each variable's best; the best (variable, value) is chosen.
``gp_ei`` is the same method without the causal prior.

It sees only the problem view (ranges, masks, target, the buffer's samples and the surrogate fitted on them).
The method is deterministic (it ignores its key), jittable, and uses static shapes.
"""

from __future__ import annotations

from ...core import response_gp
from ..rollout import StepView


def act(_, view: StepView, key):
    return response_gp.choose(view.scm, view.buffer, view.fit, causal=True)
