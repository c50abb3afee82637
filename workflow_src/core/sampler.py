"""Compiled samplers for padded linear-Gaussian SCMs (``SCMArrays``).

An observational sample is ``x = T^T (b + s * eps)``. A perfect intervention ``do(X_i = v)`` with the
same noise ``eps`` gives ``x' = x + T[i, :] (v - x_i)`` (the change at ``i`` propagates along the total
effects), so interventional samples cost O(N) on top of the observational one. Padded variables have
zero bias and noise and stay at 0. All functions are pure and jittable; vmap them over SCMs or groups.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .scm import SCMArrays


def from_noise(scm: SCMArrays, eps: jnp.ndarray) -> jnp.ndarray:
    """Observational sample(s) for standard-normal noise ``eps`` of shape (..., N)."""
    return (scm.bias + scm.noise_std * eps) @ scm.total_effects


def intervene(scm: SCMArrays, x_obs: jnp.ndarray, variable: jnp.ndarray, value: jnp.ndarray) -> jnp.ndarray:
    """The sample ``x_obs`` (same noise) under ``do(X_variable = value)``."""
    return x_obs + scm.total_effects[variable] * (value - x_obs[variable])


def sample_observational(scm: SCMArrays, key: jax.Array, n: int) -> jnp.ndarray:
    """``n`` observational samples, padding-invariant (``per_variable_normal``)."""
    return from_noise(scm, per_variable_normal(key, (n,), scm.bias.shape[-1]))


def expected_target(scm: SCMArrays, variable, value) -> jnp.ndarray:
    """Exact ``E[Y | do(X_variable = value)]``."""
    t_col = scm.total_effects[:, scm.target]
    return scm.mu_y + t_col[variable] * (value - scm.mu[variable])


def norm_improvement(scm: SCMArrays, y) -> jnp.ndarray:
    """``(mu_Y - y) / (mu_Y - y*)``: 0 = doing nothing, 1 = the oracle."""
    return (scm.mu_y - y) / (scm.mu_y - scm.y_star)


# --- padding-invariant draws -------------------------------------------------------------------------------
# Variable j's draws depend only on (key, j), never on how many variables the model is padded to, so an SCM
# gets the same numbers in every shape bucket: in evaluation (common random numbers) and in training (a
# level's episodes do not depend on which other levels share the config's pool).


def per_variable_normal(key: jax.Array, shape: tuple[int, ...], n_vars: int) -> jnp.ndarray:
    """Standard normals of shape ``(*shape, n_vars)``; column ``j`` is drawn from ``fold_in(key, j)``."""
    columns = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(key, j), shape))(jnp.arange(n_vars))
    return jnp.moveaxis(columns, 0, -1)


def per_variable_categorical(key: jax.Array, logits: jnp.ndarray) -> jnp.ndarray:
    """A draw from ``softmax(logits)`` (Gumbel-max), one Gumbel variate per variable keyed by its index."""
    gumbel = jax.vmap(lambda j: jax.random.gumbel(jax.random.fold_in(key, j)))(jnp.arange(logits.shape[-1]))
    return jnp.argmax(logits + gumbel)
