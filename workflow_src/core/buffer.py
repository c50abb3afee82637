"""The episode buffer shared by training and evaluation: the samples collected so far on one SCM.

A buffer has a fixed number of rows (observational samples first, then one row per intervention), so
episodes compile once; ``sample_mask`` marks the rows filled so far. The surrogate is always fitted on the
buffer with the target's possible parents as candidates.

A buffer made here knows, statically, how many of its front rows are observational (``n_obs``, part of the
pytree's structure, not a traced leaf), so a method may size its arrays by the protocol's observational
samples rather than by a bound (``core.observational_prior``).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp

from . import sampler, surrogate
from .scm import SCMArrays

OBS_WEIGHT = 0.1  # weight of an observational sample in a per-variable interventional regression


@partial(jax.tree_util.register_dataclass, data_fields=["values", "intervened", "sample_mask"],
         meta_fields=["n_obs"])
@dataclasses.dataclass(frozen=True)
class Buffer:
    values: jnp.ndarray  # (S, N) samples collected so far (rows beyond ``count`` and latent variables are zero)
    intervened: jnp.ndarray  # (S, N) bool, which variable was set in each sample
    sample_mask: jnp.ndarray  # (S,) bool
    n_obs: int | None = None  # static: no observational row after the first n_obs (None: anywhere)

    def replace(self, **fields) -> Buffer:
        return dataclasses.replace(self, **fields)


def empty_buffer(n_samples: int, n_vars: int) -> Buffer:
    return Buffer(
        values=jnp.zeros((n_samples, n_vars)),
        intervened=jnp.zeros((n_samples, n_vars), bool),
        sample_mask=jnp.zeros(n_samples, bool),
    )


def initial_buffer(scm: SCMArrays, key, n_obs: int, n_samples: int) -> Buffer:
    """A buffer of ``n_samples`` rows whose first ``n_obs`` hold observational samples."""
    buffer = empty_buffer(n_samples, scm.bias.shape[0])
    obs = shown(scm, sampler.sample_observational(scm, key, n_obs))
    return buffer.replace(values=buffer.values.at[:n_obs].set(obs),
                           sample_mask=buffer.sample_mask.at[:n_obs].set(True), n_obs=n_obs)


def shown(scm: SCMArrays, x) -> jnp.ndarray:
    """Samples ``x`` (..., N) as a method sees them: latent (and padded) variables at 0."""
    return jnp.where(scm.node_mask, x, 0.0)


def append(scm: SCMArrays, buffer: Buffer, row, x, variable) -> Buffer:
    """``buffer`` with the sample ``x`` (its ``shown`` part) in ``row``, ``variable`` marked as set."""
    n_vars = buffer.values.shape[1]
    return buffer.replace(
        values=buffer.values.at[row].set(shown(scm, x)),
        intervened=buffer.intervened.at[row].set(jnp.arange(n_vars) == variable),
        sample_mask=buffer.sample_mask.at[row].set(True),
    )


def interventional_weights(buffer: Buffer) -> jnp.ndarray:
    """(S, N) per variable i: the filled rows where X_i was set (unconfounded) at full weight, observational
    rows at ``OBS_WEIGHT`` (they may be confounded), rows that set another variable not at all."""
    observational = ~buffer.intervened.any(1, keepdims=True)
    weight = jnp.where(buffer.intervened, 1.0, jnp.where(observational, OBS_WEIGHT, 0.0))
    return buffer.sample_mask[:, None] * weight


def candidates(scm: SCMArrays) -> jnp.ndarray:
    """Variables that may be parents of the target: real and not the target."""
    return scm.node_mask & (jnp.arange(scm.node_mask.shape[0]) != scm.target)


def fit_surrogate(scm: SCMArrays, buffer: Buffer) -> surrogate.Surrogate:
    return surrogate.fit(buffer.values, buffer.sample_mask, candidates(scm), scm.target)


def random_buffer(scm: SCMArrays, key, n_obs: int, n_interventions: int, k) -> Buffer:
    """``n_obs`` observational samples, then ``k`` (traced, at most ``n_interventions``) interventions on a
    uniformly random intervenable variable at a uniform value of its range; the rows after them empty."""
    k_obs, k_var, k_val, k_noise = jax.random.split(key, 4)
    n_vars = scm.bias.shape[0]
    buffer = initial_buffer(scm, k_obs, n_obs, n_obs + n_interventions)
    allowed = jnp.where(scm.intervenable, 0.0, -jnp.inf)
    variable = jax.vmap(sampler.per_variable_categorical, (0, None))(jax.random.split(k_var, n_interventions),
                                                                     allowed)
    value = scm.lo[variable] + jax.random.uniform(k_val, (n_interventions,)) * (scm.hi - scm.lo)[variable]
    x = sampler.execute(scm, sampler.per_variable_normal(k_noise, (n_interventions,), n_vars), variable, value)
    filled = jnp.arange(n_interventions) < k
    rows = n_obs + jnp.arange(n_interventions)
    set_here = filled[:, None] & (jnp.arange(n_vars) == variable[:, None])
    return buffer.replace(values=buffer.values.at[rows].set(jnp.where(filled[:, None], shown(scm, x), 0.0)),
                           intervened=buffer.intervened.at[rows].set(set_here),
                           sample_mask=buffer.sample_mask.at[rows].set(filled))
