"""``thompson_bandit``: a Bayesian linear model ``Y = a_i + b_i X_i`` per variable (interventional samples on
``X_i`` at full weight, observational ones down-weighted since they may be confounded); draw from the posterior
and take the (variable, range end) arm with the lowest sampled prediction."""

from __future__ import annotations

import jax.numpy as jnp

from ...core.buffer import interventional_weights
from ...core.sampler import per_variable_normal
from ...core.surrogate import masked_standardize
from ..rollout import StepView
from .endpoints import best_endpoint

PRIOR_VAR = 1.0  # prior variance of (a_i, b_i) on the standardized scale
NOISE_VAR = 1.0


def act(_, view: StepView, key):
    buf, scm = view.buffer, view.scm
    z, mean, std = masked_standardize(buf.values, buf.sample_mask)
    y = z[:, scm.target]
    w = interventional_weights(buf)
    s0 = w.sum(0)
    s1 = (w * z).sum(0)
    s2 = (w * z * z).sum(0)
    sy = (w * y[:, None]).sum(0)
    sxy = (w * z * y[:, None]).sum(0)
    gram = jnp.stack([jnp.stack([s0, s1], -1), jnp.stack([s1, s2], -1)], -2)  # (N, 2, 2)
    precision = gram / NOISE_VAR + jnp.eye(2) / PRIOR_VAR
    cov = jnp.linalg.inv(precision)  # (N, 2, 2)
    mean_ab = jnp.einsum("nij,nj->ni", cov, jnp.stack([sy, sxy], -1) / NOISE_VAR)
    chol = jnp.linalg.cholesky(cov + 1e-6 * jnp.eye(2))
    draw = mean_ab + jnp.einsum("nij,nj->ni", chol, per_variable_normal(key, (2,), mean_ab.shape[0]).T)
    z_lo = (scm.lo - mean) / std
    z_hi = (scm.hi - mean) / std
    return best_endpoint(view, draw[:, 0] + draw[:, 1] * z_lo, draw[:, 0] + draw[:, 1] * z_hi)
