"""Non-learned baselines, each a ``Method`` of the common interface in ``methods``.

- ``random``: a uniformly random allowed variable at a uniform value in its range;
- ``oracle``: the exact best action (uses the SCM's exact quantities);
- ``marginal_regression``: regress Y on each variable alone over the buffer, extrapolate to both range
  ends, take the lowest prediction;
- ``thompson_bandit``: a Bayesian linear model ``Y = a_i + b_i X_i`` per variable (interventional samples
  on ``X_i`` at full weight, observational ones down-weighted since they may be confounded); draw from the
  posterior and take the (variable, endpoint) arm with the lowest sampled prediction;
- ``causal_bo``: GP-based causal Bayesian optimization (the CBO family), in ``causal_bo``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core.buffer import interventional_weights
from ..core.sampler import per_variable_categorical, per_variable_normal
from ..core.surrogate import masked_standardize, weighted_simple_regression
from .causal_bo import act_causal_bo
from .methods import Method
from .rollout import StepView

NEG_INF = -1e9
BANDIT_PRIOR_VAR = 1.0


def allowed(view: StepView) -> jnp.ndarray:
    return view.scm.intervenable & view.scm.node_mask


def act_random(_, view: StepView, key):
    k_var, k_val = jax.random.split(key)
    variable = per_variable_categorical(k_var, jnp.where(allowed(view), 0.0, NEG_INF))
    value = jax.random.uniform(k_val, minval=view.scm.lo[variable], maxval=view.scm.hi[variable])
    return variable, value


def act_oracle(_, view: StepView, key):
    return view.scm.oracle_variable, view.scm.oracle_value


def _best_endpoint(view: StepView, predict_lo, predict_hi):
    """The (variable, endpoint) with the lowest predicted Y among allowed variables."""
    lo_better = predict_lo <= predict_hi
    best = jnp.where(allowed(view), jnp.minimum(predict_lo, predict_hi), jnp.inf)
    variable = jnp.argmin(best)
    value = jnp.where(lo_better[variable], view.scm.lo[variable], view.scm.hi[variable])
    return variable, value


def act_marginal_regression(_, view: StepView, key):
    buf, scm = view.buffer, view.scm
    w = jnp.broadcast_to(buf.sample_mask[:, None], buf.values.shape).astype(buf.values.dtype)
    intercept, slope = weighted_simple_regression(buf.values, buf.values[:, scm.target], w)
    return _best_endpoint(view, intercept + slope * scm.lo, intercept + slope * scm.hi)


def act_thompson_bandit(_, view: StepView, key):
    buf, scm = view.buffer, view.scm
    z, mean, std = masked_standardize(buf.values, buf.sample_mask)
    y = z[:, scm.target]
    w = interventional_weights(buf)
    # posterior of (a_i, b_i) with prior N(0, BANDIT_PRIOR_VAR I) and unit noise on the standardized scale
    noise_var = 1.0
    s0 = w.sum(0)
    s1 = (w * z).sum(0)
    s2 = (w * z * z).sum(0)
    sy = (w * y[:, None]).sum(0)
    sxy = (w * z * y[:, None]).sum(0)
    gram = jnp.stack([jnp.stack([s0, s1], -1), jnp.stack([s1, s2], -1)], -2)  # (N, 2, 2)
    precision = gram / noise_var + jnp.eye(2) / BANDIT_PRIOR_VAR
    cov = jnp.linalg.inv(precision)  # (N, 2, 2)
    mean_ab = jnp.einsum("nij,nj->ni", cov, jnp.stack([sy, sxy], -1) / noise_var)
    chol = jnp.linalg.cholesky(cov + 1e-6 * jnp.eye(2))
    draw = mean_ab + jnp.einsum("nij,nj->ni", chol, per_variable_normal(key, (2,), mean_ab.shape[0]).T)
    z_lo = (scm.lo - mean) / std
    z_hi = (scm.hi - mean) / std
    return _best_endpoint(view, draw[:, 0] + draw[:, 1] * z_lo, draw[:, 0] + draw[:, 1] * z_hi)


# a baseline's program depends on nothing but this package's code: its name identifies it in the store
BASELINES: dict[str, Method] = {
    name: Method(name, act, program_id=name)
    for name, act in (("random", act_random), ("oracle", act_oracle),
                      ("marginal_regression", act_marginal_regression), ("thompson_bandit", act_thompson_bandit),
                      ("causal_bo", act_causal_bo))
}


def baseline_methods(names) -> list[Method]:
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown method {', '.join(map(repr, unknown))} (known: {', '.join(BASELINES)})")
    return [BASELINES[n] for n in names]
