"""Compiled samplers for padded SCMs (``SCMArrays``).

Linear SCMs: an observational sample is ``x = T^T (b + s * eps)``. A perfect intervention ``do(X_i = v)``
with the same noise ``eps`` gives ``x' = x + T[i, :] (v - x_i)`` (the change at ``i`` propagates along the
total effects), so interventional samples cost O(N) on top of the observational one.

Nonlinear SCMs (a stack with nonlinear terms: ``term_fn`` has a nonzero last dimension, a static shape, so
the linear path's programs are unchanged): the structural equations ``x = b + s * eps + W^T x + NL(x)`` are
swept ``depth`` times (the longest path's edges, per SCM: exact for a DAG, whatever the padding). An
intervention with the same noise sweeps the change from the observational sample: ``x' = x + W^T (x' - x)
+ NL(x') - NL(x)`` with ``x'_i = v``, so every variable that ``X_i`` does not cause keeps its observational
value exactly. ``E[Y | do]`` interpolates the SCM's stored oracle curve with its cubic spline (``curves.hermite``).

Padded variables have zero bias and noise and stay at 0. All functions are pure and jittable; vmap them over
SCMs or groups (nonlinear functions take one SCM at a time).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .curves import hermite_piece
from .scm import EXP, GAUSS, SIN, SQUARE, TANH, SCMArrays


def is_nonlinear(scm: SCMArrays) -> bool:
    """Static: whether the (stack of) SCM(s) runs the nonlinear path (it has padded term arrays)."""
    return scm.term_fn.shape[-1] > 0


def mechanisms(scm: SCMArrays, x: jnp.ndarray) -> jnp.ndarray:
    """``NL(x)``: the nonlinear terms summed into their children, for samples ``x`` of shape (..., N)."""
    u = scm.term_scale * x[..., scm.term_parent] + scm.term_shift
    fn = scm.term_fn
    exp_arg = jnp.where(fn == GAUSS, -0.5 * u * u, jnp.where(fn == EXP, u, 0.0))
    value = jnp.where(fn == TANH, jnp.tanh(u), jnp.where(fn == SIN, jnp.sin(u),
                                                         jnp.where(fn == SQUARE, u * u, jnp.exp(exp_arg))))
    value = jnp.where(scm.term_mask, scm.term_weight * value, 0.0)
    into_child = (scm.term_child[:, None] == jnp.arange(x.shape[-1])).astype(x.dtype)  # (K, N)
    return value @ into_child


def _sweep(scm: SCMArrays, update, x0):
    return jax.lax.fori_loop(0, scm.depth, lambda _, x: update(x), x0)


def from_noise(scm: SCMArrays, eps: jnp.ndarray) -> jnp.ndarray:
    """Observational sample(s) for standard-normal noise ``eps`` of shape (..., N)."""
    if not is_nonlinear(scm):
        return (scm.bias + scm.noise_std * eps) @ scm.total_effects
    base = scm.bias + scm.noise_std * eps
    return _sweep(scm, lambda x: base + x @ scm.weights + mechanisms(scm, x), base)


def intervene(scm: SCMArrays, x_obs: jnp.ndarray, variable: jnp.ndarray, value: jnp.ndarray) -> jnp.ndarray:
    """The sample ``x_obs`` (same noise) under ``do(X_variable = value)``."""
    if not is_nonlinear(scm):
        return x_obs + scm.total_effects[variable] * (value - x_obs[variable])
    fixed = jnp.arange(x_obs.shape[-1]) == variable
    nl_obs = mechanisms(scm, x_obs)

    def update(x):
        swept = x_obs + (x - x_obs) @ scm.weights + (mechanisms(scm, x) - nl_obs)
        return jnp.where(fixed, value, swept)

    return _sweep(scm, update, jnp.where(fixed, value, x_obs))


def execute(scm: SCMArrays, noise, variable, value):
    """Samples (k, N) of the interventions ``do(X_variable[g] = value[g])`` under standard-normal ``noise``:
    (N,), one draw common to every action, or (k, N), one per action."""
    x_obs = from_noise(scm, noise)
    x_obs = jnp.broadcast_to(x_obs, variable.shape + x_obs.shape[-1:])
    return jax.vmap(intervene, (None, 0, 0, 0))(scm, x_obs, variable, value)


def sample_observational(scm: SCMArrays, key: jax.Array, n: int) -> jnp.ndarray:
    """``n`` observational samples, padding-invariant (``per_variable_normal``)."""
    return from_noise(scm, per_variable_normal(key, (n,), scm.bias.shape[-1]))


def expected_target(scm: SCMArrays, variable, value) -> jnp.ndarray:
    """Exact ``E[Y | do(X_variable = value)]`` (nonlinear SCMs: the stored oracle curve, interpolated by its cubic
    spline as ``Oracle.expected_target``), broadcast over ``variable`` and ``value`` arrays."""
    if is_nonlinear(scm):
        variable, value = jnp.broadcast_arrays(jnp.asarray(variable), jnp.asarray(value, jnp.float32))
        flat = jax.vmap(lambda i, v: _interpolate(scm.curve_x[i], scm.curve_y[i], scm.curve_slope[i], v))(
            variable.ravel(), value.ravel())
        return flat.reshape(variable.shape)
    t_col = scm.total_effects[:, scm.target]
    return scm.mu_y + t_col[variable] * (value - scm.mu[variable])


def _interpolate(x, y, slope, v):
    """``curves.hermite`` on one padded curve: the piece ending at the first grid point >= v (never a padded piece,
    which repeats the last point, for v inside the grid)."""
    v = jnp.clip(v, x[0], x[-1])
    k = jnp.clip(jnp.searchsorted(x, v, side="left"), 1, x.shape[-1] - 1)
    return hermite_piece(v, x[k - 1], x[k], y[k - 1], y[k], slope[k - 1], slope[k], xp=jnp)


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
