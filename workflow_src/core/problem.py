"""The information boundary: what a method may know about an SCM.

A method (built-in, plug-in or the trained policy) chooses interventions from the problem alone: the ranges,
which variables may be set, the padding mask and which variable is the target, beside the samples it has
collected. Latent variables are masked like padding: never shown, never intervenable. The truth (mechanisms,
total effects, parents, response curves, the oracle's answer) stays in ``scm.SCMArrays``, for simulating
outcomes, scoring and the oracle only. A method handed a ``Problem`` that reads a field of the truth fails when
its program is traced.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp


class Problem(NamedTuple):
    lo: jnp.ndarray  # (..., N) range ends, 0 where not intervenable
    hi: jnp.ndarray  # (..., N)
    intervenable: jnp.ndarray  # (..., N) bool; padded variables never are
    node_mask: jnp.ndarray  # (..., N) bool, the real variables that are not latent
    target: jnp.ndarray  # (...,) int32


def problem_of(scm) -> Problem:
    """The problem part of an ``SCMArrays`` (or of anything with its fields)."""
    return Problem(scm.lo, scm.hi, scm.intervenable, scm.node_mask, scm.target)


def range_center_radius(lo, hi):
    """``(center, radius)`` of the ranges ``[lo, hi]``: the midpoint and half the width (elementwise)."""
    return (hi + lo) / 2, (hi - lo) / 2
