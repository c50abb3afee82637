"""CBO's causal prior of ``E[Y | do(X_i = v)]`` per variable, from the buffer's observational samples alone
(the prior mean and variance of ``core.response_gp``'s response-curve GP, as in Aglietti et al. 2020):

- **regression**: per variable ``X_i`` a GP regression of the observational ``Y`` on ``X_i`` and its
  **adjustment set** ``A_i``, ``f(x, a) = c + b x + g(x) + beta . a``: an intercept and a slope of ``X_i``
  (``c``, ``b``: affine responses, as in linear SCMs), an RBF ``g`` on ``X_i``'s position in its range
  (curved responses, reverting to the line where the data are silent) and a slope per adjustment variable;
- **two models, averaged**: with ``b`` (an affine trend extrapolated over the range, as in linear SCMs) and
  without (``SLOPE_VARS``: a curve reverting to the mean beyond the data, CBO's RBF prior), each with its own
  hyperparameters; the prior is their mixture weighted by their posterior probabilities (Bayesian model
  averaging: mean and total variance), their marginal likelihoods times the prior odds ``MODEL_LOG_PRIOR``
  of the affine model. Choosing one by marginal likelihood took the curve on 10 noisy samples for many
  variables of linear SCMs, whose optima lie at range ends (``heldout-L10``, best after 10: 0.76 against 0.95
  averaged); even odds still leaned on the curve there (``heldout-L12`` / ``L15``: 0.921 / 0.898, against
  0.962 / 0.932 with odds of e^3, nonlinear ``heldout-NL03`` / ``NL10`` 0.671 / 0.711 against 0.667 / 0.694,
  the toy graph 0.80 against 0.74 over 10 episodes); the line alone lost more (``heldout-NL10``: 0.688);
- **back-door average**: the prior of ``E[Y | do(X_i = v)]`` is ``f(v, a)`` averaged over the observational
  adjustment values, ``f(v, mean a)`` for a model additive in ``a``: with the adjustment variables centred on
  their observational means, its covariance with each sample leaves ``beta`` out;
- **adjustment set**: the surrogate's other likely parents of ``Y`` (probability > ``PARENT_THRESHOLD``)
  when it holds ``X_i`` itself to be a parent of ``Y`` (they block the back-door paths of a parent, and the
  surrogate knows nothing of ``X_i``'s own parents), else none (exact for a variable whose effect on ``Y`` is
  not confounded). A mediator among ``Y``'s parents makes this the direct effect of ``X_i``, as before;
- **uncertainty**: the regression's posterior mean and covariance between any two values
  (``prior_covariance``); the response GP adds it to its kernel (CBO adds ``sigma(v) sigma(v')``, the
  standard deviations' product), so it explores where the data are silent;
- **hyperparameters** per variable and model by type-II maximum likelihood over ``CANDIDATES`` (every
  combination of ``SLOPE_VARS``, ``RBF_VARS``, ``LENGTHSCALES`` and ``NOISE_VARS``), the other variances
  fixed. A small RBF variance lets a line explain linear data without wiggles of half Y's variance
  everywhere the data are silent (which sent the search to irrelevant variables).

Units: ``Y`` and the variables standardized over the buffer, positions on each range scaled to [0, 1]. The
first ``OBS_ROWS`` observational rows enter the regression (static shapes: the buffer's observational rows
are gathered to the front, the rest masked), or the buffer's ``n_obs`` where it is smaller: the
protocol's 10 samples then cost a Gram matrix of 10 rows, not 16 (with 16, six masked rows took two thirds
of each Cholesky factor's work, and the regression most of a ``causal_bo`` step's). Jittable; every variable
is handled at once.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import linalg
from .buffer import Buffer
from .problem import Problem
from .surrogate import Surrogate

OBS_ROWS = 16  # observational rows the regression reads (the protocol takes 10)
INTERCEPT_VAR = 0.1  # prior variance of the regression's intercept (around the observational mean of Y)
SLOPE_VARS = (0.0, 4.0)  # of its slope on X_i (standardized Y per standardized X_i): the two models
MODEL_LOG_PRIOR = (0.0, 3.0)  # their prior log odds: the affine model e^3 (about 20) times as likely a priori
ADJUST_VAR = 4.0  # of its slope on each adjustment variable
RBF_VARS = (0.05, 0.5)  # of the RBF part (curves): nearly none, or curved
LENGTHSCALES = (0.05, 0.15, 0.5)  # of the RBF part, on the range scaled to [0, 1]
NOISE_VARS = (0.02, 0.2, 1.0)
CANDIDATES = np.array(list(itertools.product(SLOPE_VARS, RBF_VARS, LENGTHSCALES, NOISE_VARS)), np.float32)  # (H, 4)
PARENT_THRESHOLD = 0.5
EPS = 1e-9


class Prior(NamedTuple):
    """The fitted regressions, one per variable: evaluated anywhere by ``prior_at``."""

    valid: jnp.ndarray  # (C,) the rows that hold an observational sample
    u: jnp.ndarray  # (N, C) the observational rows' positions of each variable in its range
    d: jnp.ndarray  # (N, C) their standardized offsets from the variable's observational mean
    inverse: jnp.ndarray  # (M, N, C, C) the inverse Cholesky factor of each model's regression's Gram matrix
    alpha: jnp.ndarray  # (M, N, C) Gram^-1 (y - mean y) of each
    slope_var: jnp.ndarray  # (M, N) the chosen hyperparameters of each model (one per ``SLOPE_VARS``)
    rbf_var: jnp.ndarray  # (M, N)
    lengthscale: jnp.ndarray  # (M, N)
    weight: jnp.ndarray  # (M, N) the models' posterior weights (softmax of their log marginal likelihoods)
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
    n_rows = min(OBS_ROWS, z.shape[0], buffer.n_obs or OBS_ROWS)  # no more rows than the buffer can hold
    rows = jnp.argsort(~observational, stable=True)[:n_rows]  # the observational rows first
    valid = observational[rows]
    width = jnp.where(problem.hi > problem.lo, problem.hi - problem.lo, 1.0)
    u = ((buffer.values[rows] - problem.lo) / width).T  # (N, C)
    d = (z[rows] - center).T * valid  # (N, C)
    if not causal:
        m, n = len(SLOPE_VARS), z.shape[1]
        return Prior(valid, u, d, jnp.zeros((m, n, n_rows, n_rows)), jnp.zeros((m, n, n_rows)), jnp.zeros((m, n)),
                     jnp.zeros((m, n)), jnp.ones((m, n)), jnp.full((m, n), 1.0 / m), y_mean, False)
    y = jnp.where(valid, z[rows, problem.target] - y_mean, 0.0)  # (C,)
    a = d.T  # (C, N) every variable centred: the adjustment inputs
    adjust = ADJUST_VAR * jnp.einsum("cj,ij,ej->ice", a, adjustment_weights(fit).astype(z.dtype), a)  # (N, C, C)
    pair = valid[:, None] & valid[None, :]
    eye = jnp.eye(n_rows, dtype=bool)
    slope_var, rbf_var, lengthscale, noise = (jnp.asarray(CANDIDATES[:, k])[:, None, None, None] for k in range(4))
    affine = INTERCEPT_VAR + slope_var * d[:, :, None] * d[:, None, :] + adjust  # (H, N, C, C)

    def gram(k_rbf_part, noise):
        return jnp.where(pair, k_rbf_part, 0.0) + jnp.where(eye, jnp.where(valid, noise, 1.0), 0.0)

    grams = gram(affine + rbf_var * _rbf(u, u, lengthscale), noise)  # (H, N, C, C)
    chol = linalg.cholesky(grams)
    white = linalg.solve_lower(chol, jnp.broadcast_to(y[:, None], chol.shape[:-1] + (1,)))[..., 0]
    lml = (-0.5 * white**2 - jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))).sum(-1)  # (H, N)
    models = len(SLOPE_VARS)
    best = jnp.argmax(lml.reshape(models, -1, lml.shape[-1]), 1)  # (M, N) per model its best candidate
    best = best + (jnp.arange(models) * (len(CANDIDATES) // models))[:, None]
    chol = jnp.take_along_axis(chol, best[:, :, None, None], 0)  # (M, N, C, C)
    inverse = linalg.solve_lower(chol, jnp.broadcast_to(jnp.eye(n_rows), chol.shape))
    alpha = jnp.einsum("mnec,mne->mnc", inverse, jnp.einsum("mnce,e->mnc", inverse, y))
    log_prior = jnp.asarray(MODEL_LOG_PRIOR, z.dtype)[:, None]
    weight = jax.nn.softmax(jnp.take_along_axis(lml, best, 0) + log_prior, 0)  # (M, N) the posterior weights
    chosen = jnp.asarray(CANDIDATES)[best]  # (M, N, 4)
    return Prior(valid, u, d, inverse, alpha, chosen[..., 0], chosen[..., 1], chosen[..., 2], weight, y_mean, True)


class PriorPoints(NamedTuple):
    """Each model's regression at points of every variable's range, from which ``prior_covariance`` reads the
    covariance of the prior between any two sets of points."""

    u: jnp.ndarray  # (N, P) the points' positions in each range
    d: jnp.ndarray  # (N, P) their standardized offsets from the observational means
    mean: jnp.ndarray  # (M, N, P) each model's posterior mean
    solved: jnp.ndarray  # (M, N, P, C) L^-1 of their covariance with the observational rows (L: the Gram's factor)


def prior_points(prior: Prior, u: jnp.ndarray, d: jnp.ndarray) -> PriorPoints:
    """The models at positions ``u`` (N, P) of each range, ``d`` (N, P) their standardized offsets."""
    slope_var = prior.slope_var[:, :, None, None]  # (M, N, 1, 1)
    rbf_var = prior.rbf_var[:, :, None, None]
    cross = INTERCEPT_VAR + slope_var * d[:, :, None] * prior.d[:, None, :] + rbf_var * _rbf(
        u, prior.u, prior.lengthscale[:, :, None, None])  # (M, N, P, C)
    cross = cross * prior.valid  # rows without a sample: no covariance
    mean = prior.y_mean + jnp.einsum("mnpc,mnc->mnp", cross, prior.alpha)
    return PriorPoints(u, d, mean, jnp.einsum("mnce,mnpe->mnpc", prior.inverse, cross))


def mixture_mean(prior: Prior, points: PriorPoints) -> jnp.ndarray:
    """(N, P) the prior mean: the models' means averaged by their weights (``y_mean`` without a causal prior)."""
    if not prior.causal:
        return jnp.full(points.u.shape, prior.y_mean)
    return (prior.weight[:, :, None] * points.mean).sum(0)


def prior_covariance(prior: Prior, a: PriorPoints, b: PriorPoints) -> jnp.ndarray:
    """(N, A, B) the prior's covariance between points ``a`` and ``b`` of each variable: per model its
    regression's posterior covariance, and over the models the mixture's (the weighted covariances plus the
    covariance of the models' means around the mixture's). Unlike CBO's ``sigma(v) sigma(v')``, it keeps the
    correlation's sign: an affine prior's slope error raises one side of the observational mean and lowers the
    other. Zero without a causal prior."""
    if not prior.causal:
        return jnp.zeros(a.u.shape + b.u.shape[-1:])
    slope_var = prior.slope_var[:, :, None, None]  # (M, N, 1, 1)
    per_model = INTERCEPT_VAR + slope_var * a.d[:, :, None] * b.d[:, None, :] + prior.rbf_var[:, :, None, None] * _rbf(
        a.u, b.u, prior.lengthscale[:, :, None, None]) - jnp.einsum("mnac,mnbc->mnab", a.solved, b.solved)
    mixed_a, mixed_b = mixture_mean(prior, a), mixture_mean(prior, b)
    spread = (a.mean - mixed_a)[..., :, None] * (b.mean - mixed_b)[..., None, :]  # (M, N, A, B)
    return (prior.weight[:, :, None, None] * (per_model + spread)).sum(0)


def own_covariance(prior: Prior, points: PriorPoints, var: jnp.ndarray) -> jnp.ndarray:
    """(S, S) ``prior_covariance`` between points of the (N, S) ``points``, each point ``s`` taken under its own
    variable ``var[s]`` and the pair under ``var[s]``'s regression (only pairs of one variable mean anything):
    the S points gathered first, so the cost is that of one variable's, not N."""
    index = (var, jnp.arange(var.shape[0]))
    own = PriorPoints(points.u[index], points.d[index], points.mean[(slice(None), *index)],
                      points.solved[(slice(None), *index)])  # (S,), (M, S), (M, S, C)
    square = own.u.shape * 2
    a = PriorPoints(own.u[:, None], own.d[:, None], own.mean[..., None], own.solved[:, :, None])  # (S, 1)
    b = PriorPoints(jnp.broadcast_to(own.u, square), jnp.broadcast_to(own.d, square),
                    jnp.broadcast_to(own.mean[:, None], own.mean.shape[:1] + square),
                    jnp.broadcast_to(own.solved[:, None], own.solved.shape[:1] + square + own.solved.shape[-1:]))
    per_row = prior._replace(slope_var=prior.slope_var[:, var], rbf_var=prior.rbf_var[:, var],
                             lengthscale=prior.lengthscale[:, var], weight=prior.weight[:, var])
    return prior_covariance(per_row, a, b)[:, 0]


def prior_variance(prior: Prior, points: PriorPoints) -> jnp.ndarray:
    """(N, P) the prior's variance at ``points``: the diagonal of ``prior_covariance``."""
    if not prior.causal:
        return jnp.zeros(points.u.shape)
    var = INTERCEPT_VAR + prior.slope_var[:, :, None] * points.d**2 + prior.rbf_var[:, :, None] - (
        points.solved**2).sum(-1)  # (M, N, P)
    spread = (points.mean - mixture_mean(prior, points)) ** 2
    return (prior.weight[:, :, None] * (jnp.maximum(var, EPS) + spread)).sum(0)


def prior_at(prior: Prior, u: jnp.ndarray, d: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Prior mean and standard deviation (N, P) of standardized ``E[Y | do(X_i = v)]`` at positions ``u``
    (N, P) of each range, ``d`` (N, P) their standardized offsets from the observational means."""
    points = prior_points(prior, u, d)
    sd = jnp.sqrt(jnp.maximum(prior_variance(prior, points), EPS)) if prior.causal else jnp.zeros(u.shape)
    return mixture_mean(prior, points), sd
