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
from jax.scipy.stats import norm

from ...core import response_gp
from ...core.response_gp import GRID
from ..rollout import StepView


def prior_slopes(view: StepView, z: jnp.ndarray) -> jnp.ndarray:
    """(N,) slope of standardized Y on each standardized variable: adjusted for likely parents, else marginal."""
    return response_gp.prior_slopes(view.scm, view.buffer, view.fit, z)


def posterior(view: StepView):
    """Posterior mean and standard deviation (N, GRID) of standardized E[Y | do(X_i = grid)], and the grid."""
    return response_gp.posterior(view.scm, view.buffer, view.fit, GRID)


def expected_improvement(mu: jnp.ndarray, sd: jnp.ndarray, incumbent: jnp.ndarray) -> jnp.ndarray:
    """EI of a value below ``incumbent`` (minimization)."""
    gain = incumbent - mu
    t = gain / sd
    return gain * norm.cdf(t) + sd * norm.pdf(t)


def act(_, view: StepView, key):
    scm = view.scm
    mu, sd, grid = posterior(view)
    allowed = scm.intervenable[:, None]  # padded variables are never intervenable
    incumbent = jnp.min(jnp.where(allowed, mu, jnp.inf))
    score = jnp.where(allowed, expected_improvement(mu, sd, incumbent), -jnp.inf)
    best = jnp.argmax(score.ravel())
    variable, position = best // GRID, best % GRID
    return variable, scm.lo[variable] + grid[position] * (scm.hi[variable] - scm.lo[variable])

