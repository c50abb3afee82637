"""The per-step metrics of an intervention, one definition for training and evaluation.

``step_metrics`` scores actions ``do(X_variable = value)`` on an SCM (any batch shape of actions) and the
surrogate fitted after them. Evaluation records it per step (``evaluate.rollout.StepRecord``, the columns of
the evaluation tables); training averages it over an episode's executed actions (``train.grpo.episode_stats``,
the training log). Both stages therefore share each formula and each unit:

- ``norm_improvement``: ``(mu_Y - E[Y | do]) / (mu_Y - y*)``, exact (0 = doing nothing, 1 = the oracle);
- ``is_parent``: the variable is a true parent of the target;
- ``is_optimal_variable``: the variable is the oracle's;
- ``range_utilization``: ``|value - center| / radius`` of the variable's range, a fraction in [0, 1]
  (0 = the range's centre, 1 = a range end) in every table, log and summary;
- ``f1``: the structure F1 of the surrogate's parent predictions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from . import sampler, surrogate
from .buffer import candidates
from .problem import range_center_radius
from .scm import SCMArrays


class StepMetrics(NamedTuple):
    expected_target: jnp.ndarray  # exact E[Y | do(X_variable = value)]
    norm_improvement: jnp.ndarray
    is_parent: jnp.ndarray  # bool
    is_optimal_variable: jnp.ndarray  # bool
    range_utilization: jnp.ndarray  # fraction of the half-range, in [0, 1]
    f1: jnp.ndarray  # scalar, of the surrogate ``fit``


def range_utilization(scm, variable, value) -> jnp.ndarray:
    """``|value - center| / radius`` of the variable's range: 0 at its centre, 1 at either end."""
    center, radius = range_center_radius(scm.lo[variable], scm.hi[variable])
    return jnp.abs(value - center) / radius


def step_metrics(scm: SCMArrays, variable, value, fit: surrogate.Surrogate) -> StepMetrics:
    """The metrics of the actions ``(variable, value)`` (matching shapes) on ``scm`` and of the surrogate
    ``fit`` on the samples collected with them."""
    expected = sampler.expected_target(scm, variable, value)
    return StepMetrics(
        expected_target=expected,
        norm_improvement=sampler.norm_improvement(scm, expected),
        is_parent=scm.parents[variable],
        is_optimal_variable=variable == scm.oracle_variable,
        range_utilization=range_utilization(scm, variable, value),
        f1=surrogate.f1_score(fit.parent_prob, scm.parents, candidates(scm)),
    )
