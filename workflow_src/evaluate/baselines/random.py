"""``random``: a uniformly random intervenable variable at a uniform value in its range."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ...core.sampler import per_variable_categorical
from ..rollout import StepView


def act(_, view: StepView, key):
    k_var, k_val = jax.random.split(key)
    variable = per_variable_categorical(k_var, jnp.where(view.scm.intervenable, 0.0, -jnp.inf))
    value = jax.random.uniform(k_val, minval=view.scm.lo[variable], maxval=view.scm.hi[variable])
    return variable, value
