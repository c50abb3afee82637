"""The response-curve GP: per variable ``X_i``, a Gaussian process posterior of ``E[Y | do(X_i = v)]`` over
the intervention value ``v``, from the buffer alone (one implementation, read by the ``causal_bo`` and
``gp_ei`` baselines and by the policy's curve inputs and ``response_gp`` / ``response_gp_ei`` priors). It
follows CBO (Aglietti et al. 2020):

- **prior** (``core.observational_prior``): with ``causal=True`` (``causal_bo``) the do-calculus prior from
  the observational samples, a regression of ``Y`` on ``X_i`` and its adjustment set averaged over the
  adjustment values, with its posterior mean ``m_i(v)`` as the GP's prior mean and its posterior covariance
  ``C_i(v, v')`` in the kernel; with ``causal=False`` (``gp_ei``) a constant prior mean, the observational
  mean of ``Y``, and no ``C`` term. Nothing else differs;
- **GP** of ``Y - m_i(v)`` over the samples in which ``X_i`` was set. Kernel: ``C_i(v, v')`` (the prior's
  own uncertainty) + intercept + slope (affine errors of the prior, as in linear SCMs) + an RBF on ``v``'s
  position in the range scaled to [0, 1] (curves with optima inside the range), plus the noise. CBO's causal
  kernel is ``sigma_i(v) sigma_i(v')``, the prior's standard deviations, which correlates every two values
  positively: an outcome worse than the prior at one end of a range made the other end look worse too, where
  an affine prior whose slope is wrong is better there. With the covariance (negative across the observational
  mean for a slope error) the method tries the other end (``heldout-L12``, best after 10: 0.970 against
  0.987 with it; the toy graph 0.681 against 0.722, 30 episodes);
- **hyperparameters per variable by type-II maximum likelihood**: the RBF's variance and lengthscale and the
  noise variance (the noise model is estimated, never assumed). Starts: every combination of
  ``START_RBF_VARS``, ``START_LENGTHSCALES`` and ``START_NOISE_VARS``; the one with the highest log marginal
  likelihood is refined by ``FIT_STEPS`` Adam steps (``FIT_LEARNING_RATE``) on the log hyperparameters,
  held within ``BOUNDS`` (lengthscales down to 0.02 of the range, RBF variances down to 0.01: an affine
  curve needs none, and a floor of 0.2 kept interior values uncertain on linear SCMs); the refined values are
  kept where the likelihood rose. A variable never set keeps ``DEFAULT`` and, under the causal prior, a slope
  variance of ``UNSET_SLOPE_VAR``, not ``SLOPE_VAR``: until it is set, how far its range ends may lie from the
  causal prior is that prior's own uncertainty (CBO's kernel has no slope term). With ``SLOPE_VAR`` there,
  expected improvement spread the first interventions of the largest linear graphs over the range ends of
  variables whose prior is flat (``heldout-L15``, best after 10: 0.932 against 0.962); once a variable is set,
  the slope term lets its residuals tilt the prior (a slope variance of 0.01 everywhere lost the toy graph, best
  after 20: 0.72 against 0.80; held to unset variables it leaves the toy graph's figures as they were);
- **acquisition** (``search``): expected improvement (for minimization) against the best outcome observed,
  CBO's incumbent: the lowest ``Y`` of an intervention so far (or the observational mean of ``Y``, doing
  nothing). The noise-robust alternative, the lowest posterior mean at the values tried, was measured and
  dropped: with it a variable's best value kept a higher EI than unexplored variables, and the method
  repeated it (linear ``heldout-L01``, best after 10: 0.920 against 0.991; nonlinear ``heldout-NL01``:
  0.843 against 0.876);
  per variable over ``GRID`` values spanning its range (ends included), then ``REFINE`` values within half a
  grid step of its best one; the best (variable, value) is chosen, ties to the first.

It reads only the problem (ranges, target), the buffer's samples and the surrogate fitted on them, in units
of ``Y`` standardized over the buffer; jittable with static shapes: the buffer's padded rows and the other
variables' samples are masked out of each variable's GP, and all variables are solved as one system (two
rows covary only when they set the same variable, so its Cholesky factor is the per-variable factors').
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.stats import norm

from . import linalg
from .buffer import Buffer
from .observational_prior import (
    Prior,
    PriorPoints,
    fit_prior,
    mixture_mean,
    own_covariance,
    prior_covariance,
    prior_points,
    prior_variance,
)
from .problem import Problem
from .surrogate import Surrogate, masked_standardize

GRID = 65  # values per variable, evenly spaced over each range (ends included)
REFINE = 8  # values within half a grid step of a variable's best grid value
INTERCEPT_VAR = 0.1  # prior variance of the prior mean's error at the observational mean of X_i
SLOPE_VAR = 1.0  # of its slope error (standardized Y per range width, centred on the observational mean)
UNSET_SLOPE_VAR = 0.01  # the same for a variable never set: its range ends as uncertain as the causal prior says
START_RBF_VARS = (0.05, 0.5)
START_LENGTHSCALES = (0.03, 0.08, 0.2, 0.5)  # on the range scaled to [0, 1]
START_NOISE_VARS = (0.05, 0.3, 0.9)
STARTS = np.array(list(itertools.product(START_RBF_VARS, START_LENGTHSCALES, START_NOISE_VARS)), np.float32)
DEFAULT = int(np.flatnonzero(np.isclose(STARTS, (0.5, 0.2, 0.3)).all(1))[0])  # a variable without data
BOUNDS = np.array([[0.01, 0.02, 0.01], [2.0, 0.5, 1.0]], np.float32)  # (low, high) of each hyperparameter
FIT_STEPS = 8
FIT_LEARNING_RATE = 0.1
EPS = 1e-9


def kernel(u, d, u2, d2, rbf_var, lengthscale):
    """Covariance of the prior mean's errors between values at range positions ``u`` and offsets ``d`` (in range
    widths, from the observational mean) (..., A) and ``u2``, ``d2`` (..., B), with ``rbf_var`` and
    ``lengthscale`` broadcast against the (..., A, B) result (the prior's own covariance is added apart)."""
    rbf = jnp.exp(-0.5 * ((u[..., :, None] - u2[..., None, :]) / lengthscale) ** 2)
    return INTERCEPT_VAR + SLOPE_VAR * d[..., :, None] * d2[..., None, :] + rbf_var * rbf


class Rows(NamedTuple):
    """The buffer's interventional rows as GP data: each row's variable, position, offset, prior and residual."""

    row_in: jnp.ndarray  # (S,) rows of an intervention
    row_var: jnp.ndarray  # (S,) the variable set in each row
    u: jnp.ndarray  # (S,) its value's position in the range
    d: jnp.ndarray  # (S,) its offset from the variable's observational mean, in range widths
    prior_cov: jnp.ndarray  # (S, S) the prior's covariance between two rows, under the first row's variable
    resid: jnp.ndarray  # (S,) Y minus the prior mean (0 on other rows)
    y: jnp.ndarray  # (S,) standardized Y


class ResponseGP(NamedTuple):
    """The fitted GP of every variable: evaluated anywhere by ``posterior_at``."""

    prior: Prior
    rows: Rows
    hyper: jnp.ndarray  # (N, 3) per variable (RBF variance, lengthscale, noise variance)
    inverse: jnp.ndarray  # (S, S) the inverse Cholesky factor of the rows' covariance
    alpha: jnp.ndarray  # (S,) covariance^-1 residuals
    mean: jnp.ndarray  # (N,) the buffer's mean and standard deviation of each variable (standardization)
    std: jnp.ndarray
    center: jnp.ndarray  # (N,) each variable's observational mean, standardized
    center_u: jnp.ndarray  # (N,) and its position in the range
    row_points: PriorPoints  # (N, S) the prior at every row under every variable (its covariance with a query)


def _gram(rows: Rows, hyper_rows: jnp.ndarray) -> jnp.ndarray:
    """(..., S, S) covariance of the rows' residuals, with ``hyper_rows`` (..., S, 3) each row's (RBF variance,
    lengthscale, noise variance); rows without an intervention are the identity."""
    same = rows.row_in[:, None] & rows.row_in[None, :] & (rows.row_var[:, None] == rows.row_var[None, :])
    k = kernel(rows.u, rows.d, rows.u, rows.d, hyper_rows[..., :, None, 0], hyper_rows[..., :, None, 1]) \
        + rows.prior_cov
    eye = jnp.eye(rows.row_in.shape[0], dtype=bool)
    noise = jnp.where(eye, jnp.where(rows.row_in, hyper_rows[..., 2], 1.0)[..., :, None], 0.0)
    return jnp.where(same, k, 0.0) + noise


def log_marginal_likelihood(rows: Rows, hyper: jnp.ndarray) -> jnp.ndarray:
    """(..., N) each variable's log marginal likelihood of its residuals (constants dropped) under ``hyper``
    (..., N, 3). One Cholesky factor serves every variable: it is block diagonal, so the forward-solved
    residuals and the log-diagonal of variable ``i``'s rows give its own GP's ``r' K^-1 r`` and ``log |K|``."""
    n_vars = hyper.shape[-2]
    chol = linalg.cholesky(_gram(rows, jnp.take(hyper, rows.row_var, axis=-2)))  # (..., S, S)
    white = linalg.solve_lower(chol, jnp.broadcast_to(rows.resid[:, None], chol.shape[:-1] + (1,)))[..., 0]
    per_row = -0.5 * white**2 - jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))  # (..., S); other rows: 0
    own = rows.row_in[None, :] & (rows.row_var[None, :] == jnp.arange(n_vars)[:, None])  # (N, S)
    return jnp.where(own, per_row[..., None, :], 0.0).sum(-1)


def lml_gradient(rows: Rows, hyper: jnp.ndarray) -> jnp.ndarray:
    """(N, 3) the gradient of each variable's log marginal likelihood in its log hyperparameters, in closed
    form: ``0.5 tr((alpha alpha' - K^-1) dK)`` per hyperparameter over that variable's rows."""
    hyper_rows = hyper[rows.row_var]  # (S, 3)
    chol = linalg.cholesky(_gram(rows, hyper_rows))
    inverse = linalg.solve_lower(chol, jnp.eye(chol.shape[0]))
    k_inv = inverse.T @ inverse
    alpha = k_inv @ rows.resid
    same = rows.row_in[:, None] & rows.row_in[None, :] & (rows.row_var[:, None] == rows.row_var[None, :])
    w = jnp.where(same, alpha[:, None] * alpha[None, :] - k_inv, 0.0)
    rbf_var, lengthscale, noise = hyper_rows[:, None, 0], hyper_rows[:, None, 1], hyper_rows[:, 2]
    gap = (rows.u[:, None] - rows.u[None, :]) ** 2 / lengthscale**2
    rbf = rbf_var * jnp.exp(-0.5 * gap)
    per_row = 0.5 * jnp.stack([(w * rbf).sum(1), (w * rbf * gap).sum(1), jnp.diagonal(w) * noise], -1)  # (S, 3)
    own = rows.row_in[None, :] & (rows.row_var[None, :] == jnp.arange(hyper.shape[0])[:, None])  # (N, S)
    return own.astype(per_row.dtype) @ per_row


def fit_hyperparameters(rows: Rows, n_vars: int, steps: int = FIT_STEPS) -> jnp.ndarray:
    """(N, 3) per variable the hyperparameters of the best start, refined by ``steps`` Adam steps on the log
    marginal likelihood (kept where it rose)."""
    starts = jnp.asarray(STARTS)
    lml = log_marginal_likelihood(rows, jnp.broadcast_to(starts[:, None], (len(STARTS), n_vars, 3)))  # (H, N)
    lml = lml + jnp.where(jnp.arange(len(STARTS)) == DEFAULT, 1e-6, 0.0)[:, None]  # ties to DEFAULT
    start = starts[jnp.argmax(lml, 0)]
    low, high = jnp.log(BOUNDS[0]), jnp.log(BOUNDS[1])
    optimizer = optax.adam(FIT_LEARNING_RATE)

    def step(_, carry):
        log_h, state = carry
        updates, state = optimizer.update(-lml_gradient(rows, jnp.exp(log_h)), state)
        return jnp.clip(log_h + updates, low, high), state

    log_start = jnp.log(start)
    refined = jnp.exp(jax.lax.fori_loop(0, steps, step, (log_start, optimizer.init(log_start)))[0])
    better = log_marginal_likelihood(rows, refined) > log_marginal_likelihood(rows, start)
    return jnp.where(better[:, None], refined, start)


def fit_gp(problem: Problem, buffer: Buffer, fit: Surrogate, causal: bool = True) -> ResponseGP:
    """Every variable's GP on the buffer: its prior (causal or constant), hyperparameters and factor."""
    buf, scm = buffer, problem
    z, mean, std = masked_standardize(buf.values, buf.sample_mask)
    y = z[:, scm.target]
    observational = (buf.sample_mask & ~buf.intervened.any(1)).astype(z.dtype)[:, None]
    center = (observational * z).sum(0) / jnp.maximum(observational.sum(), 1.0)
    prior = fit_prior(scm, buf, fit, z, center, causal)
    width = jnp.where(scm.hi > scm.lo, scm.hi - scm.lo, 1.0)
    u = ((buf.values - scm.lo) / width).T  # (N, S)
    # the prior at every row for every variable, then each row's own variable
    row_points = prior_points(prior, u, (z - center).T)  # (N, S)
    prior_mean = mixture_mean(prior, row_points)
    row_in = buf.sample_mask & buf.intervened.any(1)
    row_var = jnp.argmax(buf.intervened, 1)

    def own(x):
        return jnp.take_along_axis(x, row_var[None, :], 0)[0]

    center_u = (observational * u.T).sum(0) / jnp.maximum(observational.sum(), 1.0)
    prior_cov = own_covariance(prior, row_points, row_var)  # (S, S)
    rows = Rows(row_in=row_in, row_var=row_var, u=own(u), d=own(u - center_u[:, None]),
                prior_cov=prior_cov, resid=jnp.where(row_in, y - own(prior_mean), 0.0), y=y)
    hyper = fit_hyperparameters(rows, z.shape[1])
    chol = linalg.cholesky(_gram(rows, hyper[row_var]))
    inverse = linalg.solve_lower(chol, jnp.eye(chol.shape[0]))
    alpha = inverse.T @ (inverse @ rows.resid)
    return ResponseGP(prior, rows, hyper, inverse, alpha, mean, std, center, center_u, row_points)


def posterior_at(problem: Problem, gp: ResponseGP, u: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Posterior mean and standard deviation (N, P) of standardized E[Y | do(X_i = v)] at positions ``u``
    (N, P) of each variable's range."""
    width = jnp.where(problem.hi > problem.lo, problem.hi - problem.lo, 1.0)
    d = (problem.lo[:, None] + u * width[:, None] - gp.mean[:, None]) / gp.std[:, None] - gp.center[:, None]
    points = prior_points(gp.prior, u, d)
    d = u - gp.center_u[:, None]  # the kernel's offsets, in range widths
    rows, n_vars = gp.rows, u.shape[0]
    own = rows.row_in[None, :] & (rows.row_var[None, :] == jnp.arange(n_vars)[:, None])  # (N, S)
    k = kernel(u, d, *(jnp.broadcast_to(x, own.shape) for x in (rows.u, rows.d)), gp.hyper[:, None, None, 0],
               gp.hyper[:, None, None, 1]) + prior_covariance(gp.prior, points, gp.row_points)
    cross = jnp.where(own[:, None, :], k, 0.0)  # (N, P, S)
    prior_mean = mixture_mean(gp.prior, points)
    mu = prior_mean + cross @ gp.alpha
    solved = jnp.einsum("se,npe->nps", gp.inverse, cross)
    # a variable never set (its cross terms are 0): the causal prior's own uncertainty, or gp_ei's slope term
    slope_var = jnp.where(own.any(1), SLOPE_VAR, UNSET_SLOPE_VAR if gp.prior.causal else SLOPE_VAR)[:, None]
    prior_var = INTERCEPT_VAR + slope_var * d**2 + prior_variance(gp.prior, points) + gp.hyper[:, 0:1]
    return mu, jnp.sqrt(jnp.maximum(prior_var - (solved**2).sum(-1), EPS))


def posterior(problem: Problem, buffer: Buffer, fit: Surrogate, points: int = GRID, causal: bool = True):
    """Posterior mean and standard deviation (N, points) of standardized E[Y | do(X_i = grid)], and the grid
    (``points`` positions evenly spaced over each range, ends included: ``linspace(0, 1, points)``)."""
    grid = jnp.linspace(0.0, 1.0, points)
    mu, sd = posterior_at(problem, fit_gp(problem, buffer, fit, causal),
                          jnp.broadcast_to(grid, (problem.lo.shape[0], points)))
    return mu, sd, grid


def expected_improvement(mu: jnp.ndarray, sd: jnp.ndarray, incumbent: jnp.ndarray) -> jnp.ndarray:
    """EI of a value below ``incumbent`` (minimization)."""
    gain = incumbent - mu
    t = gain / sd
    return gain * norm.cdf(t) + sd * norm.pdf(t)


def incumbent(gp: ResponseGP) -> jnp.ndarray:
    """The best outcome observed: the lowest Y of an intervention so far, or the observational mean of Y
    (doing nothing) when lower (CBO's incumbent)."""
    rows = gp.rows
    return jnp.minimum(jnp.min(jnp.where(rows.row_in, rows.y, jnp.inf)), gp.prior.y_mean)


def search(problem: Problem, gp: ResponseGP) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(N,) each variable's highest expected improvement (``-inf`` where not intervenable) and (N,) the
    position in its range where it is: the best of ``GRID`` values, then of ``REFINE`` values around it."""
    n_vars, target = problem.lo.shape[0], incumbent(gp)
    values = jnp.linspace(0.0, 1.0, GRID)
    ei = expected_improvement(*posterior_at(problem, gp, jnp.broadcast_to(values, (n_vars, GRID))), target)
    best = jnp.argmax(ei, 1)
    fine = jnp.clip(values[best][:, None] + jnp.linspace(-0.5, 0.5, REFINE) / (GRID - 1), 0.0, 1.0)
    positions = jnp.concatenate([values[best][:, None], fine], 1)  # (N, 1 + REFINE)
    scores = jnp.concatenate([jnp.take_along_axis(ei, best[:, None], 1),
                              expected_improvement(*posterior_at(problem, gp, fine), target)], 1)
    pick = jnp.argmax(scores, 1)
    score = jnp.where(problem.intervenable, jnp.take_along_axis(scores, pick[:, None], 1)[:, 0], -jnp.inf)
    return score, jnp.take_along_axis(positions, pick[:, None], 1)[:, 0]


def choose(problem: Problem, buffer: Buffer, fit: Surrogate, causal: bool = True):
    """The (variable, value) of the highest expected improvement."""
    score, position = search(problem, fit_gp(problem, buffer, fit, causal))
    variable = jnp.argmax(score)
    return variable, problem.lo[variable] + position[variable] * (problem.hi[variable] - problem.lo[variable])
