"""The ``simple_permutation_invariant`` intervention policy and its action distribution.

Equivariant over variables and invariant over samples: a per-(sample, variable) embedding, masked mean
and max pooling over samples, self-attention across variables with a padding mask, then two heads per
variable: the logit of choosing it (the target, non-intervenable and padded variables are masked out)
and the mean ``mu`` of a pre-squash value ``u ~ N(mu, fixed_std)``; the intervention value is
``center + radius * tanh(u)``. Nothing depends on the number of samples or variables, so a policy
trained on small graphs runs on any graph.

With ``prior="marginal_regression"`` the network is a residual on that heuristic: its logits and values
are added to the heuristic's choice made soft (``Observation.heuristic`` holds the heuristic's predictions),
so training starts from the heuristic and learns where to depart from it. ``interventional_regression`` is
the same heuristic, except that a variable once set is judged by the regression on the samples where it was
set, which a confounded marginal slope cannot mislead. ``response_gp`` is right for curves with optima inside
the range too: per variable the response-curve GP's posterior mean of ``E[Y | do(X_i = v)]``
(``core.response_gp``, shared with ``causal_bo``) over a grid of values; a variable's logit grows as its
lowest predicted Y falls, its value leans to where that lowest prediction is. ``response_gp_ei`` starts from
``causal_bo`` itself: the same posterior's expected improvement (``response_gp.search``), a variable's
logit growing with the log of its best EI, its value leaning to where that EI is; the network learns when to
stop exploring.

With ``curve_features`` the network also reads that posterior (mean and standard deviation at
``CURVE_POINTS`` values across each range) as per-variable inputs. With ``budget_feature`` it reads the share of
the episode's interventions still to come (from the buffer: its empty rows against the rows an episode's
interventions fill), so that it can explore while much of the budget is left and exploit near its end.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..core import response_gp
from ..core.buffer import Buffer, interventional_weights
from ..core.problem import Problem, range_center_radius
from ..core.sampler import per_variable_categorical
from ..core.surrogate import Surrogate, masked_standardize, weighted_simple_regression
from . import checkpoint
from .sample_pooling import pooled_embedding
from .spec import (
    CURVE_POINTS,
    GP_PRIORS,
    SAMPLE_CHANNELS,
    budget_feature,
    check_policy_config,
    curve_features,
    variable_channels,
)

NEG_INF = -1e9
PREDICTION_CLIP = 10.0  # predictions in units of the target's observed spread
SCALED_VALUE_CLIP = 3.0  # sample values in units of the variable's half-range around its center
DATA_AMOUNT_SCALE = 4.0  # log1p(samples) / this: the amount of data, about 1 for a full buffer
SPREAD_CLIP = 10.0  # reach and offset of a variable's range in units of its observed spread
EFFECT_LOGIT_SCALE = 10.0  # initial logit per unit of predicted normalized improvement
EFFECT_VALUE_SCALE = 5.0  # initial pull of the value towards the better range end
PRIOR_LOGIT_SCALE = 30.0  # initial logit per unit of the prior's predicted fall of Y (in Y's observed spread)
PRIOR_VALUE_SCALE = 3.0  # initial pull of the value towards the prior's better range end: tanh(3) = 0.995
PRIOR_VALUE_GAIN = 10.0  # how sharply the pull turns with the difference between the two ends' predictions
EI_LOGIT_SCALE = 10.0  # initial logit per unit of log expected improvement (response_gp_ei)
LOG_EI_FLOOR = -20.0  # log EI below this (no improvement expected) counts as this
LOG_SQRT_2PI = 0.5 * jnp.log(2 * jnp.pi)
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
    else:
        heuristic = jnp.where(scm.intervenable[:, None], prior_predictions(prior, marginal, count, interventional),
                              0.0)
    return Observation(sample_features, variable_features, buffer.sample_mask, scm.node_mask, scm.intervenable,
                       heuristic)


class SampleEmbedding(nn.Module):
    """A dense layer with GELU on every (sample, variable), pooled over the samples: ``(mean, max)``."""

    features: int

    @nn.compact
    def __call__(self, sample_features, sample_mask):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (sample_features.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return pooled_embedding(sample_features, sample_mask, kernel, bias)


class LayerNorm(nn.Module):
    """Flax's ``nn.LayerNorm`` (the same parameters, names and epsilon) written as the plain formula, whose
    gradient XLA's CPU backend computes about 2.5 times faster than Flax's (measured at (400, 20, 32): 4.0
    vs 1.5 ms forward and backward)."""

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones_init(), x.shape[-1:])
        bias = self.param("bias", nn.initializers.zeros_init(), x.shape[-1:])
        centered = x - x.mean(-1, keepdims=True)
        return centered * jax.lax.rsqrt((centered**2).mean(-1, keepdims=True) + self.epsilon) * scale + bias


def head_major_attention(query, key, value, mask=None):
    """Flax's dot-product attention (no dropout), its value product computed head by head: ``(h, k, d)``
    values, ``(h, q, d)`` outputs. The same numbers; XLA's CPU backend runs Flax's ``...hqk,...khd->...qhd``
    layout as a slow strided loop (measured on a 64-variable evaluation: 1.7 of 5.4 s)."""
    weights = nn.dot_product_attention_weights(query, key, mask=mask)  # (..., h, q, k)
    per_head = jnp.einsum("...hqk,...hkd->...hqd", weights, jnp.swapaxes(value, -3, -2))
    return jnp.swapaxes(per_head, -3, -2)


class VariableBlock(nn.Module):
    """Pre-norm transformer block across variables."""

    hidden_dim: int
    n_heads: int

    @nn.compact
    def __call__(self, h, mask):
        attn_mask = nn.make_attention_mask(mask, mask)
        attention = nn.MultiHeadDotProductAttention(num_heads=self.n_heads, qkv_features=self.hidden_dim,
                                                    attention_fn=head_major_attention)
        a = attention(LayerNorm()(h), mask=attn_mask)
        h = h + a
        m = nn.Dense(2 * self.hidden_dim)(LayerNorm()(h))
        return h + nn.Dense(self.hidden_dim)(nn.gelu(m))


class PermutationInvariantPolicy(nn.Module):
    hidden_dim: int = 64
    n_heads: int = 4
    n_layers: int = 2
    bandit_features: bool = False  # no parameters: which inputs ``observe`` builds for this network
    effect_head: bool = False
    prior: str = "none"
    curve_features: bool = False  # no parameters: which inputs ``observe`` builds for this network
    budget_feature: bool = False  # no parameters: which inputs ``observe`` builds for this network

    @nn.compact
    def __call__(self, obs: Observation):
        # one layer per (sample, variable): the costliest tensor, so the depth comes after pooling
        mean, peak = SampleEmbedding(self.hidden_dim)(obs.sample_features, obs.sample_mask)  # (N, H) each
        h = jnp.concatenate([mean, peak, obs.variable_features], -1)
        h = nn.Dense(self.hidden_dim)(nn.gelu(nn.Dense(2 * self.hidden_dim)(h)))
        for _ in range(self.n_layers):
            h = VariableBlock(self.hidden_dim, self.n_heads)(h, obs.node_mask)
        h = LayerNorm()(h)
        logits = nn.Dense(1)(h)[:, 0]
        mu = nn.Dense(1)(h)[:, 0]
        allowed = obs.action_mask & obs.node_mask
        if self.prior != "none":
            # a residual policy: the network's logits and values are added to the heuristic's choice,
            # made soft — a variable's logit grows as its better end's predicted Y falls, its value leans to
            # that end — with learned scales, so training starts from the heuristic and improves on it
            initial_logit_scale = EI_LOGIT_SCALE if self.prior == "response_gp_ei" else PRIOR_LOGIT_SCALE
            logit_scale = self.param("prior_logit_scale", nn.initializers.constant(initial_logit_scale), ())
            value_scale = self.param("prior_value_scale", nn.initializers.constant(PRIOR_VALUE_SCALE), ())
            if self.prior in GP_PRIORS:
                # the lowest predicted Y anywhere in the range (response_gp) or the log of the highest expected
                # improvement (response_gp_ei), and the value where it is (at the initial scale, the network's
                # own value head at 0 puts the value on that grid point)
                score, best_u = obs.heuristic[:, 0], obs.heuristic[:, 1]
                logits = logits + logit_scale * (score if self.prior == "response_gp_ei" else -score)
                mu = mu + value_scale * best_u / PRIOR_VALUE_SCALE
            else:
                lo, hi = obs.heuristic[:, 0], obs.heuristic[:, 1]
                logits = logits - logit_scale * jnp.minimum(lo, hi)
                mu = mu + value_scale * jnp.tanh(PRIOR_VALUE_GAIN * (lo - hi))
        if self.effect_head:
            # each variable's predicted normalized improvement at its two range ends (trained against the
            # exact values by the auxiliary loss) guides the choice: the variable's logit grows with its
            # better end and its value leans towards that end, by learned scales
            effect = nn.Dense(2)(h)
            logit_scale = self.param("effect_logit_scale", nn.initializers.constant(EFFECT_LOGIT_SCALE), ())
            value_scale = self.param("effect_value_scale", nn.initializers.constant(EFFECT_VALUE_SCALE), ())
            logits = logits + logit_scale * effect.max(-1)
            mu = mu + value_scale * (effect[:, 1] - effect[:, 0])
            return jnp.where(allowed, logits, NEG_INF), mu, effect
        return jnp.where(allowed, logits, NEG_INF), mu


def make_policy(policy_config: dict) -> PermutationInvariantPolicy:
    check_policy_config(policy_config)
    return PermutationInvariantPolicy(
        hidden_dim=policy_config["hidden_dim"], n_heads=policy_config["n_heads"], n_layers=policy_config["n_layers"],
        bandit_features=policy_config["bandit_features"], effect_head=policy_config["effect_head"],
        prior=policy_config["prior"], curve_features=curve_features(policy_config),
        budget_feature=budget_feature(policy_config),
    )


def policy_observation(policy: PermutationInvariantPolicy, scm: Problem, buffer: Buffer, fit: Surrogate):
    """The observation ``policy`` was built for."""
    return observe(scm, buffer, fit, policy.bandit_features, policy.prior, policy.curve_features,
                   policy.budget_feature)


def act_outputs(policy: PermutationInvariantPolicy, params, obs: Observation):
    """``(logits, mu)`` of the policy, whether or not it has the auxiliary effect head."""
    return policy.apply(params, obs)[:2]


# --- the action distribution -----------------------------------------------------------------------------


def squash(scm: Problem, variable, u):
    """The intervention value ``center + radius * tanh(u)`` in the variable's range."""
    center, radius = range_center_radius(scm.lo[variable], scm.hi[variable])
    return center + radius * jnp.tanh(u)


def log_prob(logits, mu, scm: Problem, variable, u, fixed_std: float):
    """log p(variable, value) of the squashed action, including the tanh change of variables."""
    log_p_var = jax.nn.log_softmax(logits)[variable]
    z = (u - mu[variable]) / fixed_std
    log_p_u = -0.5 * z**2 - jnp.log(fixed_std) - LOG_SQRT_2PI
    _, radius = range_center_radius(scm.lo[variable], scm.hi[variable])
    # d value / d u = radius * (1 - tanh(u)^2); log(1 - tanh^2) computed stably
    log_det = jnp.log(radius) + 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return log_p_var + log_p_u - log_det


def sample_actions(key, logits, mu, fixed_std: float, n: int):
    """``n`` independent (variable, u) draws; padding-invariant (``per_variable_categorical``)."""
    k_var, k_u = jax.random.split(key)
    variable = jax.vmap(per_variable_categorical, (0, None))(jax.random.split(k_var, n), logits)
    u = mu[variable] + fixed_std * jax.random.normal(k_u, (n,))
    return variable, u


def greedy_action(logits, mu):
    """The most likely variable at its mean pre-squash value."""
    variable = jnp.argmax(logits)
    return variable, mu[variable]


def categorical_entropy(logits):
    p = jax.nn.softmax(logits)
    return -(p * jnp.where(p > 0, jax.nn.log_softmax(logits), 0.0)).sum()


def check_params(policy: PermutationInvariantPolicy, params, source: str) -> None:
    """Refuse parameters (arrays or traced values) without ``policy``'s structure and shapes, naming ``source``."""
    checkpoint.check_shapes(source, jax.eval_shape(lambda: init_params(policy, jax.random.PRNGKey(0))), params)


def init_params(policy: PermutationInvariantPolicy, key, n_vars: int = 3, n_samples: int = 2) -> dict:
    """Parameters for a dummy observation: their shapes do not depend on the number of variables or samples."""
    obs = Observation(
        sample_features=jnp.zeros((n_samples, n_vars, SAMPLE_CHANNELS)),
        variable_features=jnp.zeros((n_vars, variable_channels(policy.bandit_features, policy.curve_features,
                                                               policy.budget_feature))),
        sample_mask=jnp.ones(n_samples, bool),
        node_mask=jnp.ones(n_vars, bool),
        action_mask=jnp.ones(n_vars, bool),
        heuristic=jnp.zeros((n_vars, 2)),
    )
    return policy.init(key, obs)
