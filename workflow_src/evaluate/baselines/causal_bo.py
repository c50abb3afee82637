"""``causal_bo``: a GP-based causal Bayesian optimization baseline (the CBO family), in the common interface.

The posterior of ``E[Y | do(X_i = v)]`` per intervenable variable ``X_i`` is the response-curve GP of
``core.response_gp`` (a causal prior mean from the observational samples, a GP of the residual over the
samples in which ``X_i`` was set, hyperparameters per variable by type-II maximum likelihood over a grid),
evaluated at ``GRID`` values spanning each range (both ends included). **Acquisition**: expected improvement
(for minimization) over those values, against the lowest posterior mean over all candidates; the best
(variable, value) is chosen, ties to the first.

It sees only the problem view (ranges, masks, target, the buffer's samples and the surrogate fitted on them).
Everything is in units of ``Y`` standardized over the buffer. The method is deterministic (it ignores its
key), jittable, and uses static shapes.
"""

from __future__ import annotations

import jax.numpy as jnp

from ...core import response_gp
from ...core.response_gp import GRID
from ..rollout import StepView


def prior_slopes(view: StepView, z: jnp.ndarray) -> jnp.ndarray:
    """(N,) slope of standardized Y on each standardized variable: adjusted for likely parents, else marginal."""
    return response_gp.prior_slopes(view.scm, view.buffer, view.fit, z)


def posterior(view: StepView):
    """Posterior mean and standard deviation (N, GRID) of standardized E[Y | do(X_i = grid)], and the grid."""
    return response_gp.posterior(view.scm, view.buffer, view.fit, GRID)


def act(_, view: StepView, key):
    scm = view.scm
    mu, sd, grid = posterior(view)
    score = response_gp.acquisition(scm, mu, sd)
    best = jnp.argmax(score.ravel())
    variable, position = best // GRID, best % GRID
    return variable, scm.lo[variable] + grid[position] * (scm.hi[variable] - scm.lo[variable])

