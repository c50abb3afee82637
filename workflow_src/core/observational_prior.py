"""CBO's causal prior of ``E[Y | do(X_i = v)]`` per variable, from the buffer's observational samples alone
(the prior mean and variance of ``core.response_gp``'s response-curve GP, as in Aglietti et al. 2020):

- **regression**: per variable ``X_i`` a GP regression of the observational ``Y`` on ``X_i`` and its
  **adjustment set** ``A_i``, ``f(x, a) = c + b x + g(x) + beta . a``: an intercept and a slope of ``X_i``
  (``c``, ``b``: affine responses, as in linear SCMs), an RBF ``g`` on ``X_i``'s position in its range
  (curved responses, reverting to the line where the data are silent) and a slope per adjustment variable;
  whether ``b`` is there at all (``SLOPE_VARS``: an affine trend extrapolated over the range, or a curve
  reverting to the mean beyond the data, as CBO's RBF prior) is chosen with the other hyperparameters;
- **back-door average**: the prior of ``E[Y | do(X_i = v)]`` is ``f(v, a)`` averaged over the observational
  adjustment values, ``f(v, mean a)`` for a model additive in ``a``: with the adjustment variables centred on
  their observational means, its covariance with each sample leaves ``beta`` out;
- **adjustment set**: the surrogate's other likely parents of ``Y`` (probability > ``PARENT_THRESHOLD``)
  when it holds ``X_i`` itself to be a parent of ``Y`` (they block the back-door paths of a parent, and the
  surrogate knows nothing of ``X_i``'s own parents), else none (exact for a variable whose effect on ``Y`` is
  not confounded). A mediator among ``Y``'s parents makes this the direct effect of ``X_i``, as before;
- **uncertainty**: the regression's posterior mean and standard deviation at each value; the response GP
  adds ``sigma(v) sigma(v')`` to its kernel (CBO's causal kernel), so it explores where the data are silent;
- **hyperparameters** per variable by type-II maximum likelihood over ``CANDIDATES`` (every combination of
  ``SLOPE_VARS``, ``LENGTHSCALES`` and ``NOISE_VARS``), the other variances fixed.

Units: ``Y`` and the variables standardized over the buffer, positions on each range scaled to [0, 1]. The
first ``OBS_ROWS`` observational rows enter the regression (static shapes: the buffer's observational rows
are gathered to the front, the rest masked). Jittable; every variable is handled at once.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from . import linalg
from .buffer import Buffer
from .problem import Problem
from .surrogate import Surrogate

OBS_ROWS = 16  # observational rows the regression reads (the protocol takes 10)
INTERCEPT_VAR = 0.1  # prior variance of the regression's intercept (around the observational mean of Y)
SLOPE_VARS = (0.0, 4.0)  # of its slope on X_i (standardized Y per standardized X_i): mean-reverting or affine
ADJUST_VAR = 4.0  # of its slope on each adjustment variable
RBF_VAR = 0.5  # of the RBF part (curves)
LENGTHSCALES = (0.05, 0.15, 0.5)  # of the RBF part, on the range scaled to [0, 1]
NOISE_VARS = (0.02, 0.2, 1.0)
CANDIDATES = np.array(list(itertools.product(SLOPE_VARS, LENGTHSCALES, NOISE_VARS)), np.float32)  # (H, 3)
PARENT_THRESHOLD = 0.5
EPS = 1e-9


class Prior(NamedTuple):
    """The fitted regressions, one per variable: evaluated anywhere by ``prior_at``."""

    valid: jnp.ndarray  # (C,) the rows that hold an observational sample
    u: jnp.ndarray  # (N, C) the observational rows' positions of each variable in its range
    d: jnp.ndarray  # (N, C) their standardized offsets from the variable's observational mean
    inverse: jnp.ndarray  # (N, C, C) the inverse Cholesky factor of each regression's Gram matrix
    alpha: jnp.ndarray  # (N, C) Gram^-1 (y - mean y) of each regression
    slope_var: jnp.ndarray  # (N,) the chosen hyperparameters
    lengthscale: jnp.ndarray  # (N,)
    y_mean: jnp.ndarray  # () the observational mean of Y
    causal: bool  # False: the constant prior (``y_mean``, no variance) of a GP without the causal prior


def _rbf(u, u2, lengthscale):
    return jnp.exp(-0.5 * ((u[..., :, None] - u2[..., None, :]) / lengthscale) ** 2)


def adjustment_weights(fit: Surrogate) -> jnp.ndarray:
    """(N, N) ``[i, j]``: ``X_j`` is in ``X_i``'s adjustment set (both likely parents of Y, ``j != i``)."""
    likely = fit.parent_prob > PARENT_THRESHOLD
    return likely[:, None] & likely[None, :] & ~jnp.eye(likely.shape[0], dtype=bool)


def fit_prior(problem: Problem, buffer: Buffer, fit: Surrogate, z: jnp.ndarray, center: jnp.ndarray,
              causal: bool = True) -> Prior:
    """Each variable's regression on the observational rows of ``z`` (the buffer standardized), ``center``
    (N,) the variables' observational means in ``z``."""
    observational = buffer.sample_mask & ~buffer.intervened.any(1)
    y_mean = jnp.where(observational, z[:, problem.target], 0.0).sum() / jnp.maximum(observational.sum(), 1)
    n_rows = min(OBS_ROWS, z.shape[0])
    rows = jnp.argsort(~observational, stable=True)[:n_rows]  # the observational rows first
    valid = observational[rows]
    width = jnp.where(problem.hi > problem.lo, problem.hi - problem.lo, 1.0)
    u = ((buffer.values[rows] - problem.lo) / width).T  # (N, C)
    d = (z[rows] - center).T * valid  # (N, C)
    if not causal:
        n = z.shape[1]
        return Prior(valid, u, d, jnp.zeros((n, n_rows, n_rows)), jnp.zeros((n, n_rows)), jnp.zeros(n), jnp.ones(n),
                     y_mean, False)
    y = jnp.where(valid, z[rows, problem.target] - y_mean, 0.0)  # (C,)
    a = d.T  # (C, N) every variable centred: the adjustment inputs
    adjust = ADJUST_VAR * jnp.einsum("cj,ij,ej->ice", a, adjustment_weights(fit).astype(z.dtype), a)  # (N, C, C)
    pair = valid[:, None] & valid[None, :]
    eye = jnp.eye(n_rows, dtype=bool)
    slope_var, lengthscale, noise = (jnp.asarray(CANDIDATES[:, k])[:, None, None, None] for k in (0, 1, 2))
    affine = INTERCEPT_VAR + slope_var * d[:, :, None] * d[:, None, :] + adjust  # (H, N, C, C)

    def gram(k_rbf_part, noise):
        return jnp.where(pair, k_rbf_part, 0.0) + jnp.where(eye, jnp.where(valid, noise, 1.0), 0.0)

    grams = gram(affine + RBF_VAR * _rbf(u, u, lengthscale), noise)  # (H, N, C, C)
    chol = linalg.cholesky(grams)
    white = linalg.solve_lower(chol, jnp.broadcast_to(y[:, None], chol.shape[:-1] + (1,)))[..., 0]
    lml = (-0.5 * white**2 - jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))).sum(-1)  # (H, N)
    best = jnp.argmax(lml, 0)  # (N,)
    chol = jnp.take_along_axis(chol, best[None, :, None, None], 0)[0]  # (N, C, C)
    inverse = linalg.solve_lower(chol, jnp.broadcast_to(jnp.eye(n_rows), chol.shape))
    alpha = jnp.einsum("nec,ne->nc", inverse, jnp.einsum("nce,e->nc", inverse, y))
    chosen = jnp.asarray(CANDIDATES)[best]  # (N, 3)
    return Prior(valid, u, d, inverse, alpha, chosen[:, 0], chosen[:, 1], y_mean, True)


def prior_at(prior: Prior, u: jnp.ndarray, d: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Prior mean and standard deviation (N, P) of standardized ``E[Y | do(X_i = v)]`` at positions ``u``
    (N, P) of each range, ``d`` (N, P) their standardized offsets from the observational means."""
    if not prior.causal:
        return jnp.full(u.shape, prior.y_mean), jnp.zeros(u.shape)
    slope_var = prior.slope_var[:, None, None]
    cross = INTERCEPT_VAR + slope_var * d[:, :, None] * prior.d[:, None, :] + RBF_VAR * _rbf(
        u, prior.u, prior.lengthscale[:, None, None])  # (N, P, C)
    cross = cross * prior.valid  # rows without a sample: no covariance
    mean = prior.y_mean + jnp.einsum("npc,nc->np", cross, prior.alpha)
    solved = jnp.einsum("nce,npe->npc", prior.inverse, cross)
    var = INTERCEPT_VAR + prior.slope_var[:, None] * d**2 + RBF_VAR - (solved**2).sum(-1)
    return mean, jnp.sqrt(jnp.maximum(var, EPS))
