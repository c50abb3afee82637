"""The response-curve GP: per variable ``X_i``, a Gaussian process posterior of ``E[Y | do(X_i = v)]`` over
the intervention value ``v``, from the buffer alone (one implementation, read by the ``causal_bo`` baseline's
acquisition and by the policy's curve inputs and ``response_gp`` prior):

- **causal prior mean** (CBO's do-calculus prior, from the observational samples): ``m_i(v) = a_i + b_i v``,
  with ``b_i`` the slope of ``Y`` on ``X_i`` *adjusted for the other variables* (the surrogate's posterior
  coefficient) when the surrogate holds ``X_i`` to be a parent of ``Y`` (probability > 0.5), else the
  marginal slope of ``Y`` on ``X_i`` over the observational samples (exact for a variable whose effect on
  ``Y`` is not confounded); ``a_i`` puts the line through the observational means;
- **GP** of the residual ``Y - m_i(v)`` over the samples in which ``X_i`` was set. Kernel: intercept + slope
  (the prior line's errors: an affine ``E[Y | do]``, as in linear SCMs) + an RBF on ``v`` scaled to ``[0, 1]``
  over the variable's range (curves with optima inside the range, as in nonlinear SCMs);
- **acquisition**: expected improvement (for minimization) at every grid value, against the lowest posterior
  mean over all variables' candidates (``expected_improvement``);
- **hyperparameters per variable by type-II maximum likelihood**: the RBF's variance and lengthscale and the
  noise variance are chosen from a fixed grid (``HYPERPARAMETERS``, every combination of ``RBF_VARS``,
  ``LENGTHSCALES``, ``NOISE_VARS``) as the combination with the highest log marginal likelihood of that
  variable's interventional samples (ties, e.g. a variable never set, to ``DEFAULT``).

It reads only the problem (ranges, target), the buffer's samples and the surrogate fitted on them, in units
of ``Y`` standardized over the buffer; jittable with static shapes: the buffer's padded rows and the other
variables' samples are masked out of each variable's GP, and all variables (and all hyperparameter
candidates) are handled at once.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from . import linalg
from .buffer import Buffer
from .problem import Problem
from .surrogate import Surrogate, masked_standardize

GRID = 65  # causal_bo's values per variable, evenly spaced over each range (ends included)
INTERCEPT_VAR = 0.1  # prior variance of the prior line's error at the observational mean of X_i
SLOPE_VAR = 1.0  # prior variance of the prior line's slope error (standardized Y per standardized X_i)
# the grid the marginal likelihood chooses from, per variable (standardized Y; lengthscales on the range
# scaled to [0, 1]): from nearly affine curves (small variance, long lengthscale) to a few wiggles per range
RBF_VARS = (0.1, 0.5, 2.0)
LENGTHSCALES = (0.06, 0.12, 0.25, 0.5)
NOISE_VARS = (0.05, 0.2, 0.8)
HYPERPARAMETERS = np.array(list(itertools.product(RBF_VARS, LENGTHSCALES, NOISE_VARS)))  # (H, 3)
DEFAULT = int(np.flatnonzero((HYPERPARAMETERS == (0.5, 0.25, 0.2)).all(1))[0])  # a variable without data
PARENT_THRESHOLD = 0.5  # surrogate parent probability above which the adjusted slope is used
EPS = 1e-9


def kernel(u, d, u2, d2, rbf_var, lengthscale):
    """Covariance of the prior's error between values at range positions ``u`` / offsets ``d`` (..., A) and
    ``u2`` / ``d2`` (..., B): intercept + slope (``d``: standardized offset from the observational mean of
    the variable) + RBF on the range position, with ``rbf_var`` and ``lengthscale`` broadcast against the
    (..., A, B) result."""
    rbf = jnp.exp(-0.5 * ((u[..., :, None] - u2[..., None, :]) / lengthscale) ** 2)
    return INTERCEPT_VAR + SLOPE_VAR * d[..., :, None] * d2[..., None, :] + rbf_var * rbf


def prior_slopes(problem: Problem, buffer: Buffer, fit: Surrogate, z: jnp.ndarray) -> jnp.ndarray:
    """(N,) slope of standardized Y on each standardized variable: adjusted for likely parents, else marginal."""
    buf, scm = buffer, problem
    y = z[:, scm.target]
    w = (buf.sample_mask & ~buf.intervened.any(1)).astype(z.dtype)[:, None]  # observational samples
    count = jnp.maximum(w.sum(0), 1.0)
    mx, my = (w * z).sum(0) / count, (w * y[:, None]).sum(0) / count
    marginal = (w * (z - mx) * (y[:, None] - my)).sum(0) / jnp.maximum((w * (z - mx) ** 2).sum(0), EPS)
    return jnp.where(fit.parent_prob > PARENT_THRESHOLD, fit.coef, marginal)


class Rows(NamedTuple):
    """The buffer's interventional rows as GP data: each row's variable, range position, offset and residual."""

    row_in: jnp.ndarray  # (S,) rows of an intervention
    row_var: jnp.ndarray  # (S,) the variable set in each row
    u: jnp.ndarray  # (S,) its value's position in the range
    d: jnp.ndarray  # (S,) its standardized offset from the variable's observational mean
    resid: jnp.ndarray  # (S,) Y minus the prior line (0 on other rows)


def _gram(rows: Rows, hyper_rows: jnp.ndarray) -> jnp.ndarray:
    """(..., S, S) covariance of the rows' residuals, with ``hyper_rows`` (..., S, 3) each row's (RBF variance,
    lengthscale, noise variance). Each intervention sets one variable, so two rows covary only when they set
    the same variable (block diagonal up to a permutation: its Cholesky factor has no fill-in and equals the
    per-variable factors); rows without an intervention are the identity."""
    same = rows.row_in[:, None] & rows.row_in[None, :] & (rows.row_var[:, None] == rows.row_var[None, :])
    k = kernel(rows.u, rows.d, rows.u, rows.d, hyper_rows[..., :, None, 0], hyper_rows[..., :, None, 1])
    eye = jnp.eye(rows.row_in.shape[0], dtype=bool)
    noise = jnp.where(eye, jnp.where(rows.row_in, hyper_rows[..., 2], 1.0)[..., :, None], 0.0)
    return jnp.where(same, k, 0.0) + noise


def select_hyperparameters(rows: Rows, n_vars: int) -> jnp.ndarray:
    """(N, 3) per variable the (RBF variance, lengthscale, noise variance) of ``HYPERPARAMETERS`` with the
    highest log marginal likelihood of its interventional residuals. One Cholesky factor per candidate serves
    every variable: the factor is block diagonal, so the forward-solved residuals and the log-diagonal of the
    rows of variable ``i`` give ``r_i' K_i^-1 r_i`` and ``log |K_i|`` of that variable's own GP."""
    hyper = jnp.asarray(HYPERPARAMETERS, jnp.float32)  # (H, 3)
    hyper_rows = jnp.broadcast_to(hyper[:, None, :], (hyper.shape[0], rows.row_in.shape[0], 3))
    chol = linalg.cholesky(_gram(rows, hyper_rows))  # (H, S, S)
    white = linalg.solve_lower(chol, jnp.broadcast_to(rows.resid[:, None], chol.shape[:-1] + (1,)))[..., 0]
    per_row = -0.5 * white**2 - jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))  # (H, S); other rows: 0
    own = rows.row_in[None, :] & (rows.row_var[None, :] == jnp.arange(n_vars)[:, None])  # (N, S)
    lml = jnp.where(own[None], per_row[:, None, :], 0.0).sum(-1)  # (H, N); constants dropped
    lml = lml + jnp.where(jnp.arange(hyper.shape[0]) == DEFAULT, 1e-6, 0.0)[:, None]  # ties to DEFAULT
    return hyper[jnp.argmax(lml, 0)]


def posterior(problem: Problem, buffer: Buffer, fit: Surrogate, points: int = GRID):
    """Posterior mean and standard deviation (N, points) of standardized E[Y | do(X_i = grid)], and the grid
    (``points`` positions evenly spaced over each range, ends included: ``linspace(0, 1, points)``)."""
    buf, scm = buffer, problem
    z, mean, std = masked_standardize(buf.values, buf.sample_mask)
    y = z[:, scm.target]
    observational = buf.sample_mask & ~buf.intervened.any(1)
    w_obs = observational.astype(z.dtype)[:, None]
    n_obs = jnp.maximum(w_obs.sum(), 1.0)
    slope = prior_slopes(problem, buffer, fit, z)
    # the prior line passes through the observational means of (X_i, Y)
    intercept = (w_obs[:, 0] * y).sum() / n_obs - slope * (w_obs * z).sum(0) / n_obs

    center = (w_obs * z).sum(0) / n_obs  # observational mean of each variable (standardized)
    width = jnp.where(scm.hi > scm.lo, scm.hi - scm.lo, 1.0)
    grid = jnp.linspace(0.0, 1.0, points)  # (G,) position in each range
    n_vars = z.shape[1]
    grid_u = jnp.broadcast_to(grid, (n_vars, points))
    grid_d = (scm.lo[:, None] + grid * width[:, None] - mean[:, None]) / std[:, None] - center[:, None]  # (N, G)
    prior_grid = intercept[:, None] + slope[:, None] * (grid_d + center[:, None])

    row_in = buf.sample_mask & buf.intervened.any(1)
    row_var = jnp.argmax(buf.intervened, 1)
    z_set = jnp.take_along_axis(z, row_var[:, None], 1)[:, 0]  # (S,) the set variable's standardized value
    rows = Rows(
        row_in=row_in,
        row_var=row_var,
        u=(jnp.take_along_axis(buf.values, row_var[:, None], 1)[:, 0] - scm.lo[row_var]) / width[row_var],
        d=z_set - center[row_var],
        resid=jnp.where(row_in, y - (intercept[row_var] + slope[row_var] * z_set), 0.0),
    )
    hyper = select_hyperparameters(rows, n_vars)  # (N, 3)
    chol = linalg.cholesky(_gram(rows, hyper[row_var]))  # (S, S)
    own = row_in[None, :] & (row_var[None, :] == jnp.arange(n_vars)[:, None])  # (N, S)
    u_n, d_n = (jnp.broadcast_to(x, own.shape) for x in (rows.u, rows.d))
    k = kernel(grid_u, grid_d, u_n, d_n, hyper[:, None, None, 0], hyper[:, None, None, 1])
    cross = jnp.where(own[:, None, :], k, 0.0)  # (N, G, S)
    alpha = linalg.cho_solve(chol, rows.resid[:, None])[:, 0]  # (S,)
    # L^-1 once (S right-hand sides), then one product for every grid point, instead of a substitution
    # loop over N * G right-hand sides
    solved = linalg.solve_lower(chol, jnp.eye(chol.shape[0])) @ cross.reshape(n_vars * points, -1).T  # (S, N * G)
    mu = prior_grid + cross @ alpha
    prior_var = INTERCEPT_VAR + SLOPE_VAR * grid_d**2 + hyper[:, 0:1]
    var = jnp.maximum(prior_var - (solved**2).sum(0).reshape(n_vars, points), EPS)
    return mu, jnp.sqrt(var), grid


def expected_improvement(mu: jnp.ndarray, sd: jnp.ndarray, incumbent: jnp.ndarray) -> jnp.ndarray:
    """EI of a value below ``incumbent`` (minimization)."""
    gain = incumbent - mu
    t = gain / sd
    return gain * norm.cdf(t) + sd * norm.pdf(t)


def acquisition(problem: Problem, mu: jnp.ndarray, sd: jnp.ndarray) -> jnp.ndarray:
    """(N, points) the expected improvement of each grid value of each intervenable variable over the lowest
    posterior mean of any of them; ``-inf`` where not intervenable."""
    allowed = problem.intervenable[:, None]  # padded variables are never intervenable
    incumbent = jnp.min(jnp.where(allowed, mu, jnp.inf))
    return jnp.where(allowed, expected_improvement(mu, sd, incumbent), -jnp.inf)
