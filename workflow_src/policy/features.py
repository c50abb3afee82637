"""The policy's inputs: what it observes of a problem and its samples (``observe`` -> ``Observation``), and the
priors a residual policy starts from.

Per (sample, variable): the standardized values, the target's, their product, the value scaled to the range
and flags; per variable: the surrogate's parent probabilities and coefficients, the amount of data, the
range's reach in units of the observed spread, and (by the network's settings) a bandit's statistics, the
response-curve GP's posterior at ``CURVE_POINTS`` values and the share of the budget left.

With ``prior="marginal_regression"`` the network is a residual on that heuristic: ``Observation.heuristic``
holds the heuristic's predictions at both range ends. ``interventional_regression`` is the same heuristic,
except that a variable once set is judged by the regression on the samples where it was set, which a
confounded marginal slope cannot mislead. ``response_gp``: per variable the response-curve GP's posterior mean
of ``E[Y | do(X_i = v)]`` (``core.response_gp``, shared with ``causal_bo``) over a grid of values, its lowest
value and where it is. ``response_gp_ei``: the same posterior's expected improvement
(``response_gp.search``), the log of its best value and where it is.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from ..core import response_gp
from ..core.buffer import Buffer, interventional_weights
from ..core.problem import Problem, range_center_radius
from ..core.surrogate import Surrogate, masked_standardize, weighted_simple_regression
from .spec import CURVE_POINTS, GP_PRIORS

PREDICTION_CLIP = 10.0  # predictions in units of the target's observed spread
SCALED_VALUE_CLIP = 3.0  # sample values in units of the variable's half-range around its center
DATA_AMOUNT_SCALE = 4.0  # log1p(samples) / this: the amount of data, about 1 for a full buffer
SPREAD_CLIP = 10.0  # reach and offset of a variable's range in units of its observed spread
PRIOR_VALUE_SCALE = 3.0  # initial pull of the value towards the prior's better range end: tanh(3) = 0.995
LOG_EI_FLOOR = -20.0  # log EI below this (no improvement expected) counts as this
# channels of ``Observation.sample_features`` (the order of ``observe``'s stack) that the response model reads
Y_CHANNEL, SCALED_CHANNEL, SET_CHANNEL = 1, 3, 4
# and of ``Observation.variable_features``: the log of the half-range and the range's centre's offset from the
# variable's mean, both in units of its observed spread
LOG_REACH_CHANNEL, CENTER_OFFSET_CHANNEL = 5, 8
assert (response_gp.GRID - 1) % (CURVE_POINTS - 1) == 0  # the curve inputs are points of the prior's grid


class Observation(NamedTuple):
    """What the policy sees: per-(sample, variable) and per-variable features with their masks."""

    sample_features: jnp.ndarray  # (S, N, SAMPLE_CHANNELS)
    variable_features: jnp.ndarray  # (N, VARIABLE_CHANNELS)
    sample_mask: jnp.ndarray  # (S,) bool
    node_mask: jnp.ndarray  # (N,) bool
    action_mask: jnp.ndarray  # (N,) bool: may be intervened on
    # (N, 2): the prior heuristic's prediction of Y at both range ends (standardized); with the ``response_gp``
    # prior, the lowest posterior mean of Y and the pre-squash value ``u`` of where it is; with
    # ``response_gp_ei``, the log of the highest expected improvement and the ``u`` of where it is
    heuristic: jnp.ndarray


def _endpoint_predictions(z, y, w, z_lo, z_hi):
    """Per column of ``z`` (S, N): the weighted regression of ``y`` on it, predicted at both range ends."""
    intercept, slope = weighted_simple_regression(z, y, w, sxx_floor=1e-6)
    return tuple(jnp.clip(intercept + slope * end, -PREDICTION_CLIP, PREDICTION_CLIP) for end in (z_lo, z_hi))


def range_ends(scm: Problem, mean, std):
    """Both ends of every intervenable variable's range on its standardized scale (0 elsewhere)."""
    return tuple(jnp.where(scm.intervenable, (end - mean) / std, 0.0) for end in (scm.lo, scm.hi))


def marginal_predictions(scm: Problem, buffer: Buffer, z, mean, std) -> jnp.ndarray:
    """(N, 2): the regression of Y on each variable alone over every sample (marginal_regression's
    statistic), predicted at both ends of its range, on Y's standardized scale; 0 where not intervenable."""
    everything = jnp.broadcast_to(buffer.sample_mask[:, None], z.shape).astype(z.dtype)
    lo, hi = _endpoint_predictions(z, z[:, scm.target], everything, *range_ends(scm, mean, std))
    return jnp.where(scm.intervenable[:, None], jnp.stack([lo, hi], -1), 0.0)


def interventional_predictions(scm: Problem, buffer: Buffer, z, mean, std):
    """``(count, (N, 2))``: how often each variable was set, and the regression of Y on it over the samples
    where it was set (observational ones down-weighted: they may be confounded), at both range ends."""
    weight = interventional_weights(buffer)
    lo, hi = _endpoint_predictions(z, z[:, scm.target], weight, *range_ends(scm, mean, std))
    return (buffer.intervened & buffer.sample_mask[:, None]).sum(0), jnp.stack([lo, hi], -1)


def prior_predictions(prior: str, marginal, count, interventional) -> jnp.ndarray:
    """(N, 2) what the residual policy's prior predicts at both ends: ``marginal_regression``'s statistic,
    or (``interventional_regression``) the interventional regression for a variable once it has been set."""
    if prior == "interventional_regression":
        return jnp.where((count > 0)[:, None], interventional, marginal)
    return marginal


def bandit_statistics(scm: Problem, buffer: Buffer, z, mean, std, marginal, count, interventional) -> jnp.ndarray:
    """(N, BANDIT_CHANNELS): what a bandit keeps per variable, on the target's standardized scale.

    How often the variable was set; the marginal regression of Y on it (all samples) and the regression on
    the samples where it was set (observational ones down-weighted: they may be confounded), each predicted
    at both ends of its range; the lowest Y seen when it was set (0 when never).
    """
    y = z[:, scm.target]
    set_here = buffer.intervened & buffer.sample_mask[:, None]
    best_seen = jnp.where(count > 0, jnp.where(set_here, y[:, None], jnp.inf).min(0), 0.0)
    stats = jnp.stack([jnp.log1p(count) / 2.0, marginal[:, 0], marginal[:, 1], interventional[:, 0],
                       interventional[:, 1],
                       jnp.clip(best_seen, -PREDICTION_CLIP, PREDICTION_CLIP)], -1)
    return jnp.where(scm.intervenable[:, None], stats, 0.0)


def curve_statistics(scm: Problem, mu, sd) -> jnp.ndarray:
    """(N, CURVE_CHANNELS): the response-curve GP's posterior mean (clipped) and standard deviation of
    standardized Y at ``CURVE_POINTS`` values evenly spaced over each range (ends included), from a posterior
    on a finer grid of ``(CURVE_POINTS - 1) * k + 1`` values; 0 where not intervenable."""
    stride = (mu.shape[1] - 1) // (CURVE_POINTS - 1)
    mean, std = mu[:, ::stride], sd[:, ::stride]
    stats = jnp.concatenate([jnp.clip(mean, -PREDICTION_CLIP, PREDICTION_CLIP), jnp.minimum(std, PREDICTION_CLIP)],
                            -1)
    return jnp.where(scm.intervenable[:, None], stats, 0.0)


def position_u(position) -> jnp.ndarray:
    """The pre-squash value ``u`` of positions in the range (``[0, 1]``): ``arctanh`` of their place in
    ``[-1, 1]``, the range ends held to ``+-PRIOR_VALUE_SCALE`` (``tanh(3) = 0.995`` of the half-range)."""
    edge = jnp.tanh(PRIOR_VALUE_SCALE)
    return jnp.arctanh(jnp.clip(2.0 * position - 1.0, -edge, edge))


def response_gp_prior(scm: Problem, mu, grid) -> jnp.ndarray:
    """(N, 2) the ``response_gp`` prior's inputs: each variable's lowest posterior mean of Y over the grid
    (clipped) and the pre-squash value ``u`` of that grid point."""
    best = jnp.argmin(mu, 1)
    lowest = jnp.clip(jnp.take_along_axis(mu, best[:, None], 1)[:, 0], -PREDICTION_CLIP, PREDICTION_CLIP)
    return jnp.where(scm.intervenable[:, None], jnp.stack([lowest, position_u(grid[best])], -1), 0.0)


def response_gp_ei_prior(scm: Problem, gp: response_gp.ResponseGP) -> jnp.ndarray:
    """(N, 2) the ``response_gp_ei`` prior's inputs: each variable's highest expected improvement
    (``causal_bo``'s acquisition, ``response_gp.search``), as a log floored at ``LOG_EI_FLOOR``, and the ``u`` of
    where it is."""
    ei, position = response_gp.search(scm, gp)
    log_ei = jnp.maximum(jnp.log(jnp.maximum(ei, 0.0)), LOG_EI_FLOOR)
    return jnp.where(scm.intervenable[:, None], jnp.stack([log_ei, position_u(position)], -1), 0.0)


def budget_left(buffer: Buffer) -> jnp.ndarray:
    """The share of the episode's interventions still to come: the buffer's empty rows against the rows its
    interventions fill (every row but the observational ones; an episode's buffer holds exactly its budget)."""
    observational = (buffer.sample_mask & ~buffer.intervened.any(1)).sum()
    return (~buffer.sample_mask).sum() / jnp.maximum(buffer.sample_mask.shape[0] - observational, 1)


def observe(scm: Problem, buffer: Buffer, surrogate: Surrogate, bandit_features: bool = False,
            prior: str = "none", curves: bool = False, budget: bool = False) -> Observation:
    z, mean, std = masked_standardize(buffer.values, buffer.sample_mask)
    center, radius = range_center_radius(scm.lo, scm.hi)
    radius = jnp.maximum(radius, 1e-6)
    scaled = jnp.clip((buffer.values - center) / radius, -SCALED_VALUE_CLIP, SCALED_VALUE_CLIP)
    scaled = jnp.where(scm.intervenable, scaled, 0.0)
    y = z[:, scm.target][:, None]
    is_target = jnp.arange(scm.node_mask.shape[0]) == scm.target
    sample_features = jnp.stack(
        [
            z,
            jnp.broadcast_to(y, z.shape),
            z * y,
            scaled,
            buffer.intervened.astype(z.dtype),
            jnp.broadcast_to(is_target, z.shape).astype(z.dtype),
            jnp.broadcast_to(scm.intervenable, z.shape).astype(z.dtype),
        ],
        axis=-1,
    ) * buffer.sample_mask[:, None, None]
    corr = (z * y).sum(0) / jnp.maximum(buffer.sample_mask.sum(), 1.0)  # marginal correlation with Y
    variable_features = jnp.stack(
        [
            surrogate.parent_prob,
            surrogate.coef,
            is_target.astype(z.dtype),
            scm.intervenable.astype(z.dtype),
            # how much data, not buffer size
            jnp.full(z.shape[1], jnp.log1p(buffer.sample_mask.sum()) / DATA_AMOUNT_SCALE),
            # how far the range reaches in units of the observed spread: effect size = slope x reach
            jnp.where(scm.intervenable, jnp.log(radius / std), 0.0),
            corr,
            jnp.where(scm.intervenable, jnp.clip(corr * radius / std, -SPREAD_CLIP, SPREAD_CLIP), 0.0),
            jnp.where(scm.intervenable, jnp.clip((center - mean) / std, -SPREAD_CLIP, SPREAD_CLIP), 0.0),
        ],
        axis=-1,
    )
    marginal = marginal_predictions(scm, buffer, z, mean, std)
    count, interventional = interventional_predictions(scm, buffer, z, mean, std)
    if bandit_features:
        variable_features = jnp.concatenate(
            [variable_features, bandit_statistics(scm, buffer, z, mean, std, marginal, count, interventional)], -1)
    if curves or prior in GP_PRIORS:
        gp = response_gp.fit_gp(scm, buffer, surrogate)  # one fit for the inputs and the prior
    if curves:
        points = jnp.broadcast_to(jnp.linspace(0.0, 1.0, CURVE_POINTS), (z.shape[1], CURVE_POINTS))
        curve_mu, curve_sd = response_gp.posterior_at(scm, gp, points)
        variable_features = jnp.concatenate([variable_features, curve_statistics(scm, curve_mu, curve_sd)], -1)
    if budget:
        left = jnp.broadcast_to(budget_left(buffer), (z.shape[1], 1)).astype(z.dtype)
        variable_features = jnp.concatenate([variable_features, left], -1)
    if prior == "response_gp":
        grid = jnp.linspace(0.0, 1.0, response_gp.GRID)
        grid_mu, _ = response_gp.posterior_at(scm, gp, jnp.broadcast_to(grid, (z.shape[1], response_gp.GRID)))
        heuristic = response_gp_prior(scm, grid_mu, grid)
    elif prior == "response_gp_ei":
        heuristic = response_gp_ei_prior(scm, gp)
    elif prior == "amortized_ei":  # the network computes it from its response model
        heuristic = jnp.zeros((z.shape[1], 2), z.dtype)
    else:
        heuristic = jnp.where(scm.intervenable[:, None], prior_predictions(prior, marginal, count, interventional),
                              0.0)
    return Observation(sample_features, variable_features, buffer.sample_mask, scm.node_mask, scm.intervenable,
                       heuristic)
