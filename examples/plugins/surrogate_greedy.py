"""An example plug-in method: set the surrogate's strongest estimated parent of the target to the end of its
range that lowers the target; with probability ``epsilon``, a random allowed variable instead."""

import jax
import jax.numpy as jnp

NAME = "surrogate_greedy"
SETTINGS = {"epsilon": 0.1}


def act(settings, view, key):
    scm, fit = view.scm, view.fit
    allowed = scm.intervenable & scm.node_mask
    strength = jnp.where(allowed, fit.parent_prob * jnp.abs(fit.coef), -1.0)
    k_explore, k_variable = jax.random.split(key)
    explore = jax.random.uniform(k_explore) < settings["epsilon"]
    random_variable = jax.random.categorical(k_variable, jnp.where(allowed, 0.0, -jnp.inf))
    variable = jnp.where(explore, random_variable, jnp.argmax(strength))
    value = jnp.where(fit.coef[variable] > 0, scm.lo[variable], scm.hi[variable])
    return variable, value
