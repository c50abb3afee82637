"""The policy's action distribution: a variable from the logits, and a pre-squash value ``u ~ N(mu, fixed_std)``
squashed into the variable's range as ``center + radius * tanh(u)``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core.problem import Problem, range_center_radius
from ..core.sampler import per_variable_categorical

LOG_SQRT_2PI = 0.5 * jnp.log(2 * jnp.pi)


def squash(scm: Problem, variable, u):
    """The intervention value ``center + radius * tanh(u)`` in the variable's range."""
    center, radius = range_center_radius(scm.lo[variable], scm.hi[variable])
    return center + radius * jnp.tanh(u)


def log_prob(logits, mu, scm: Problem, variable, u, fixed_std: float):
    """log p(variable, value) of the squashed action, including the tanh change of variables."""
    log_p_var = jax.nn.log_softmax(logits)[variable]
    z = (u - mu[variable]) / fixed_std
    log_p_u = -0.5 * z**2 - jnp.log(fixed_std) - LOG_SQRT_2PI
    _, radius = range_center_radius(scm.lo[variable], scm.hi[variable])
    # d value / d u = radius * (1 - tanh(u)^2); log(1 - tanh^2) computed stably
    log_det = jnp.log(radius) + 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return log_p_var + log_p_u - log_det


def sample_actions(key, logits, mu, fixed_std: float, n: int):
    """``n`` independent (variable, u) draws; padding-invariant (``per_variable_categorical``)."""
    k_var, k_u = jax.random.split(key)
    variable = jax.vmap(per_variable_categorical, (0, None))(jax.random.split(k_var, n), logits)
    u = mu[variable] + fixed_std * jax.random.normal(k_u, (n,))
    return variable, u


def greedy_action(logits, mu):
    """The most likely variable at its mean pre-squash value."""
    variable = jnp.argmax(logits)
    return variable, mu[variable]


def categorical_entropy(logits):
    p = jax.nn.softmax(logits)
    return -(p * jnp.where(p > 0, jax.nn.log_softmax(logits), 0.0)).sum()
