"""``causal_bo``: a GP-based causal Bayesian optimization baseline (the CBO family), in the common interface.

Per intervenable variable ``X_i``, a Gaussian process models ``E[Y | do(X_i = v)]`` as a function of the
intervention value ``v``:

- **causal prior mean** (CBO's do-calculus prior, from the observational samples): ``m_i(v) = a_i + b_i v``,
  with ``b_i`` the slope of ``Y`` on ``X_i`` *adjusted for the other variables* (the surrogate's posterior
  coefficient) when the surrogate holds ``X_i`` to be a parent of ``Y`` (probability > 0.5), else the
  marginal slope of ``Y`` on ``X_i`` over the observational samples (exact for a variable whose effect on
  ``Y`` is not confounded); ``a_i`` puts the line through the observational means;
- **GP** of the residual ``Y - m_i(v)`` over the samples in which ``X_i`` was set, RBF kernel on ``v``
  scaled to ``[0, 1]`` over the variable's range;
- **acquisition**: expected improvement (for minimization) over ``GRID`` values spanning each range
  (both ends included), against the lowest posterior mean over all candidates; the best (variable, value)
  is chosen, ties to the first.

Everything is in units of ``Y`` standardized over the buffer. Hyperparameters are fixed (below); the method
is deterministic (it ignores its key), jittable, and uses static shapes: the buffer's padded rows and the
other variables' samples are masked out of each variable's GP, and all variables are handled at once.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.stats import norm

from ...core import linalg
from ...core.surrogate import masked_standardize
from ..rollout import StepView

GRID = 21  # candidate values per variable, evenly spaced over its range (ends included)
INTERCEPT_VAR = 0.1  # prior variance of the prior line's error at the observational mean of X_i
SLOPE_VAR = 1.0  # prior variance of the prior line's slope error (standardized Y per standardized X_i)
RBF_VAR = 0.1  # prior variance of a smooth non-linear deviation (RBF kernel)
LENGTHSCALE = 0.5  # RBF lengthscale on the range scaled to [0, 1]
NOISE_VAR = 0.1  # observation noise variance of Y (standardized)
PARENT_THRESHOLD = 0.5  # surrogate parent probability above which the adjusted slope is used
EPS = 1e-9


def kernel(u: jnp.ndarray, d: jnp.ndarray, u2: jnp.ndarray, d2: jnp.ndarray) -> jnp.ndarray:
    """Covariance of the prior's error between values at range positions ``u`` / offsets ``d`` (..., A) and
    ``u2`` / ``d2`` (..., B): intercept + slope (``d``: standardized offset from the observational mean of
    the variable) + RBF on the range position."""
    rbf = jnp.exp(-0.5 * ((u[..., :, None] - u2[..., None, :]) / LENGTHSCALE) ** 2)
    return INTERCEPT_VAR + SLOPE_VAR * d[..., :, None] * d2[..., None, :] + RBF_VAR * rbf


def prior_slopes(view: StepView, z: jnp.ndarray) -> jnp.ndarray:
    """(N,) slope of standardized Y on each standardized variable: adjusted for likely parents, else marginal."""
    buf, scm = view.buffer, view.scm
    y = z[:, scm.target]
    w = (buf.sample_mask & ~buf.intervened.any(1)).astype(z.dtype)[:, None]  # observational samples
    count = jnp.maximum(w.sum(0), 1.0)
    mx, my = (w * z).sum(0) / count, (w * y[:, None]).sum(0) / count
    marginal = (w * (z - mx) * (y[:, None] - my)).sum(0) / jnp.maximum((w * (z - mx) ** 2).sum(0), EPS)
    return jnp.where(view.fit.parent_prob > PARENT_THRESHOLD, view.fit.coef, marginal)


def posterior(view: StepView):
    """Posterior mean and standard deviation (N, GRID) of standardized E[Y | do(X_i = grid)], and the grid."""
    buf, scm = view.buffer, view.scm
    z, mean, std = masked_standardize(buf.values, buf.sample_mask)
    y = z[:, scm.target]
    observational = buf.sample_mask & ~buf.intervened.any(1)
    w_obs = observational.astype(z.dtype)[:, None]
    n_obs = jnp.maximum(w_obs.sum(), 1.0)
    slope = prior_slopes(view, z)
    # the prior line passes through the observational means of (X_i, Y)
    intercept = (w_obs[:, 0] * y).sum() / n_obs - slope * (w_obs * z).sum(0) / n_obs

    center = (w_obs * z).sum(0) / n_obs  # observational mean of each variable (standardized)
    width = jnp.where(scm.hi > scm.lo, scm.hi - scm.lo, 1.0)
    grid = jnp.linspace(0.0, 1.0, GRID)  # (G,) position in each range
    grid_u = jnp.broadcast_to(grid, (z.shape[1], GRID))
    grid_d = (scm.lo[:, None] + grid * width[:, None] - mean[:, None]) / std[:, None] - center[:, None]  # (N, G)
    prior_grid = intercept[:, None] + slope[:, None] * (grid_d + center[:, None])

    # Each intervention sets one variable, so the per-variable GPs share one system over the buffer's rows:
    # two rows covary only when they set the same variable (block diagonal up to a permutation, so its
    # Cholesky factor has no fill-in and equals the per-variable factors), and each variable's grid covaries
    # only with its own rows. One S x S factor instead of one per variable.
    n_vars = z.shape[1]
    row_in = buf.sample_mask & buf.intervened.any(1)  # (S,) rows of an intervention
    row_var = jnp.argmax(buf.intervened, 1)  # (S,) the variable set in each row
    z_set = jnp.take_along_axis(z, row_var[:, None], 1)[:, 0]  # (S,) its standardized value
    u = (jnp.take_along_axis(buf.values, row_var[:, None], 1)[:, 0] - scm.lo[row_var]) / width[row_var]
    d = z_set - center[row_var]
    resid = jnp.where(row_in, y - (intercept[row_var] + slope[row_var] * z_set), 0.0)
    same = row_in[:, None] & row_in[None, :] & (row_var[:, None] == row_var[None, :])
    eye = jnp.eye(row_in.shape[0], dtype=bool)
    noise = jnp.where(eye, jnp.where(row_in, NOISE_VAR, 1.0)[:, None], 0.0)
    gram = jnp.where(same, kernel(u, d, u, d), 0.0) + noise
    chol = linalg.cholesky(gram)  # (S, S); rows without an intervention are the identity
    own = row_in[None, :] & (row_var[None, :] == jnp.arange(n_vars)[:, None])  # (N, S)
    u_n, d_n = (jnp.broadcast_to(x, own.shape) for x in (u, d))
    cross = jnp.where(own[:, None, :], kernel(grid_u, grid_d, u_n, d_n), 0.0)  # (N, G, S)
    alpha = linalg.cho_solve(chol, resid[:, None])[:, 0]  # (S,)
    # L^-1 once (S right-hand sides), then one product for every grid point, instead of a substitution
    # loop over N * G right-hand sides
    solved = linalg.solve_lower(chol, jnp.eye(chol.shape[0])) @ cross.reshape(n_vars * GRID, -1).T  # (S, N * G)
    mu = prior_grid + cross @ alpha
    prior_var = INTERCEPT_VAR + SLOPE_VAR * grid_d**2 + RBF_VAR
    var = jnp.maximum(prior_var - (solved**2).sum(0).reshape(n_vars, GRID), EPS)
    return mu, jnp.sqrt(var), grid


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
