"""What the linear heuristics share: the allowed (variable, range end) with the lowest predicted target."""

from __future__ import annotations

import jax.numpy as jnp

from ..rollout import StepView


def best_endpoint(view: StepView, predict_lo, predict_hi):
    """The (variable, endpoint) with the lowest predicted Y among the intervenable variables."""
    lo_better = predict_lo <= predict_hi
    best = jnp.where(view.scm.intervenable, jnp.minimum(predict_lo, predict_hi), jnp.inf)
    variable = jnp.argmin(best)
    value = jnp.where(lo_better[variable], view.scm.lo[variable], view.scm.hi[variable])
    return variable, value
