"""``marginal_regression``: regress Y on each variable alone over the buffer, extrapolate to both range ends,
take the lowest prediction."""

from __future__ import annotations

import jax.numpy as jnp

from ...core.surrogate import weighted_simple_regression
from ..rollout import StepView
from .endpoints import best_endpoint


def act(_, view: StepView, key):
    buf, scm = view.buffer, view.scm
    w = jnp.broadcast_to(buf.sample_mask[:, None], buf.values.shape).astype(buf.values.dtype)
    intercept, slope = weighted_simple_regression(buf.values, buf.values[:, scm.target], w)
    return best_endpoint(view, intercept + slope * scm.lo, intercept + slope * scm.hi)
