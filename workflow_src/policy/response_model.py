"""The amortized response model: from the buffer alone, per intervenable variable ``X_i``, a predictive
distribution (mean and standard deviation) of ``E[Y | do(X_i = v)]`` at any positions ``v`` of its range, in
units of ``Y`` standardized over the buffer (the policy's inputs' scale). Trained by supervised learning on
simulated SCMs against their exact response curves (``train.response``), as prior-data fitted networks are
(PFNs4BO, Müller et al. 2023); the truth enters the loss only, never an input.

The network reads the policy's ``Observation`` and nothing else:

- a **trunk** as the policy's (samples embedded and pooled, then attention across variables), so what a
  variable's curve looks like can depend on the surrogate's view of the graph and on the other variables;
- per variable, its **samples as (position, outcome) pairs**: the samples where ``X_i`` was set and the
  observational ones (flagged apart: they may be confounded), each embedded with the position's Fourier
  features; samples that set another variable are left out;
- per query position, **cross-attention** from the position (its Fourier features and the variable's trunk
  state) to those pairs plus a learned null pair (a variable without samples), then a small head giving the
  mean and a softplus standard deviation;
- with ``lines``, the query also reads two **least-squares lines** of the outcome on the position at the query
  (``regression_lines``): what ``response_gp``'s affine prior extrapolates, given to the network rather than
  learned by it;
- with ``trend``, the mean adds a **learned line** per variable, ``a_i + b_i x``, ``x`` the queried value in
  units of the variable's observed spread (``standardized_position``) and ``(a_i, b_i)`` a head on its trunk
  state (zero at initialization): a slope the network reads off its inputs extrapolates over the range as a
  line, which the position's Fourier features alone express poorly far from the samples.

``acquisition`` turns the predictions into expected improvement over a grid refined around each variable's
best value, against the best outcome observed (``response_gp``'s incumbent, read from the same inputs);
``lower_confidence_bound`` into an optimistic bound ``mean - kappa sd`` over the same grid.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..core.buffer import OBS_WEIGHT
from ..core.response_gp import expected_improvement
from ..core.surrogate import weighted_simple_regression
from .features import (
    CENTER_OFFSET_CHANNEL,
    LOG_REACH_CHANNEL,
    PREDICTION_CLIP,
    SCALED_CHANNEL,
    SET_CHANNEL,
    Y_CHANNEL,
    Observation,
)
from .layers import LayerNorm, SampleEmbedding, VariableBlock, head_major_attention

FREQUENCIES = (0.5, 1.0, 2.0, 4.0)  # cycles per range width of the position's Fourier features
MIN_SD = 0.01  # the smallest predicted standard deviation (standardized Y)
ACT_GRID = 33  # positions per range where the acquisition is evaluated (ends included) ...
ACT_REFINE = 8  # ... then this many within half a grid step of each variable's best
LOG_EI_FLOOR = -30.0  # log of an expected improvement of (about) zero
LCB_KAPPA = 1.0  # the evaluation mode amortized_lcb: the lowest mean - LCB_KAPPA sd


def fourier(position: jnp.ndarray) -> jnp.ndarray:
    """(..., 1 + 2 F) the position itself and its sines and cosines at ``FREQUENCIES``."""
    angle = 2.0 * jnp.pi * position[..., None] * jnp.asarray(FREQUENCIES)
    return jnp.concatenate([position[..., None], jnp.sin(angle), jnp.cos(angle)], -1)


def sample_pairs(obs: Observation):
    """Per (variable, sample): the sample's position in the variable's range, its outcome, whether it set the
    variable, whether it is observational, as (N, S, 4) features, and (N, S) which pairs count."""
    features = jnp.swapaxes(obs.sample_features, 0, 1)  # (N, S, C)
    position = (features[..., SCALED_CHANNEL] + 1.0) / 2.0
    y = features[..., Y_CHANNEL]
    set_here = features[..., SET_CHANNEL] > 0
    observational = ~(obs.sample_features[..., SET_CHANNEL] > 0).any(1)  # (S,)
    counts = obs.sample_mask[None, :] & (set_here | observational[None, :])
    pairs = jnp.stack([position, y, set_here, jnp.broadcast_to(observational, y.shape)], -1).astype(y.dtype)
    return jnp.concatenate([pairs, fourier(position)], -1), counts


def regression_lines(pairs: jnp.ndarray, counts: jnp.ndarray, points: jnp.ndarray) -> jnp.ndarray:
    """(N, P, 2) per variable, at the positions ``points`` (N, P), two weighted least-squares lines of the
    outcome on the position, from ``sample_pairs``: over every pair that counts (``marginal_regression``'s
    statistic, confounded where the variable was never set), and over the samples that set the variable with
    the observational ones at ``OBS_WEIGHT`` (the interventional regression); clipped to ``PREDICTION_CLIP``."""
    position, y, set_here = pairs[..., 0].T, pairs[0, :, 1], pairs[..., 2].T  # (S, N), (S,), (S, N)
    weight = counts.T.astype(y.dtype)
    lines = [weighted_simple_regression(position, y, w, sxx_floor=1e-6)
             for w in (weight, weight * jnp.where(set_here > 0, 1.0, OBS_WEIGHT))]
    at = [intercept[:, None] + slope[:, None] * points for intercept, slope in lines]
    return jnp.clip(jnp.stack(at, -1), -PREDICTION_CLIP, PREDICTION_CLIP)


def standardized_position(obs: Observation, points: jnp.ndarray) -> jnp.ndarray:
    """(N, P) the values at positions ``points`` (N, P) of each range (0 at the low end, 1 at the high end) in
    units of the variable's observed spread, from its mean: the range's centre plus the half-range."""
    reach = jnp.exp(obs.variable_features[:, LOG_REACH_CHANNEL])[:, None]
    return obs.variable_features[:, CENTER_OFFSET_CHANNEL][:, None] + (2.0 * points - 1.0) * reach


class ResponseModel(nn.Module):
    hidden_dim: int = 32
    n_heads: int = 4
    n_layers: int = 2
    lines: bool = False  # the query reads ``regression_lines``
    trend: bool = False  # the mean adds a learned line per variable

    @nn.compact
    def __call__(self, obs: Observation, points: jnp.ndarray | None = None, search=None):
        """Mean and standard deviation (N, P) of standardized ``E[Y | do(X_i = v)]`` at the positions ``points``
        (N, P) of each variable's range (0 at the low end, 1 at the high end); or, given ``search``,
        ``search(predict)`` where ``predict(points)`` gives them: the buffer is encoded once for all its calls
        (``acquisition`` decodes a coarse grid, then positions around its best)."""
        width = self.hidden_dim
        mean, peak = SampleEmbedding(width)(obs.sample_features, obs.sample_mask)
        h = jnp.concatenate([mean, peak, obs.variable_features], -1)
        h = nn.Dense(width)(nn.gelu(nn.Dense(2 * width)(h)))
        for _ in range(self.n_layers):
            h = VariableBlock(width, self.n_heads)(h, obs.node_mask)
        h = LayerNorm()(h)  # (N, H)

        pairs, counts = sample_pairs(obs)
        keys = nn.Dense(width)(nn.gelu(nn.Dense(width)(pairs)))  # (N, S, H)
        null = self.param("null_pair", nn.initializers.normal(1.0), (width,))
        keys = jnp.concatenate([jnp.broadcast_to(null, keys.shape[:1] + (1, width)), keys], 1)
        attend_to = jnp.concatenate([jnp.ones(counts.shape[:1] + (1,), bool), counts], 1)
        # the decoder's layers, built once (in the order that names their parameters) and applied per call
        embed_position, embed_state = nn.Dense(width), nn.Dense(width)
        attention = nn.MultiHeadDotProductAttention(num_heads=self.n_heads, qkv_features=width,
                                                    attention_fn=head_major_attention)
        query_norm = LayerNorm()
        head_out, head_mid, head_in = nn.Dense(2), nn.Dense(width), nn.Dense(width)
        state = embed_state(h)[:, None, :]
        # (N, 2) per variable the intercept and slope of the learned line (``trend``)
        trend = nn.Dense(2, kernel_init=nn.initializers.zeros, name="trend")(h) if self.trend else None

        def predict(points):
            position = fourier(points)  # (N, P, F)
            if self.lines:
                position = jnp.concatenate([position, regression_lines(pairs, counts, points)], -1)
            query = embed_position(position) + state
            mask = jnp.broadcast_to(attend_to[:, None, None, :],
                                    (attend_to.shape[0], 1, points.shape[1], attend_to.shape[1]))
            attended = attention(query_norm(query), keys, mask=mask)  # (N, P, H)
            z = jnp.concatenate([attended, query, jnp.broadcast_to(h[:, None, :], query.shape)], -1)
            out = head_out(nn.gelu(head_mid(nn.gelu(head_in(z)))))
            mean = out[..., 0]
            if trend is not None:
                mean = mean + trend[:, :1] + trend[:, 1:] * standardized_position(obs, points)
            return mean, jax.nn.softplus(out[..., 1]) + MIN_SD

        return predict(points) if search is None else search(predict)


def incumbent(obs: Observation) -> jnp.ndarray:
    """The best outcome observed, standardized: the lowest Y of an intervention, or the observational mean of Y
    (doing nothing) when lower (as ``response_gp.incumbent``)."""
    y = obs.sample_features[:, 0, Y_CHANNEL]  # every variable's column holds the sample's Y
    intervention = (obs.sample_features[..., SET_CHANNEL] > 0).any(1) & obs.sample_mask
    observational = obs.sample_mask & ~intervention
    obs_mean = jnp.where(observational, y, 0.0).sum() / jnp.maximum(observational.sum(), 1)
    return jnp.minimum(jnp.min(jnp.where(intervention, y, jnp.inf)), obs_mean)


def search(score, predict, obs: Observation) -> jnp.ndarray:
    """(N, 2) per variable its highest ``score(mean, sd)`` and the position in its range where it is: the best of
    ``ACT_GRID`` positions, then of ``ACT_REFINE`` around it. ``predict(points)`` gives the model's (mean, sd) at
    positions (N, P)."""
    n_vars = obs.node_mask.shape[0]
    grid = jnp.linspace(0.0, 1.0, ACT_GRID)
    coarse = score(*predict(jnp.broadcast_to(grid, (n_vars, ACT_GRID))))
    best = jnp.argmax(coarse, 1)
    fine = jnp.clip(grid[best][:, None] + jnp.linspace(-0.5, 0.5, ACT_REFINE) / (ACT_GRID - 1), 0.0, 1.0)
    positions = jnp.concatenate([grid[best][:, None], fine], 1)
    scores = jnp.concatenate([jnp.take_along_axis(coarse, best[:, None], 1), score(*predict(fine))], 1)
    pick = jnp.argmax(scores, 1)
    return jnp.stack([jnp.take_along_axis(scores, pick[:, None], 1)[:, 0],
                      jnp.take_along_axis(positions, pick[:, None], 1)[:, 0]], -1)


def acquisition(predict, obs: Observation) -> jnp.ndarray:
    """(N, 2) per variable the log of its highest expected improvement against the best outcome observed
    (floored at ``LOG_EI_FLOOR``; the floor where not intervenable) and the position where it is (``search``)."""
    best_so_far = incumbent(obs)
    found = search(lambda mean, sd: expected_improvement(mean, sd, best_so_far), predict, obs)
    score = jnp.log(jnp.maximum(found[:, 0], 0.0))
    score = jnp.where(obs.action_mask & obs.node_mask, jnp.maximum(score, LOG_EI_FLOOR), LOG_EI_FLOOR)
    return jnp.stack([score, found[:, 1]], -1)


def lower_confidence_bound(predict, obs: Observation, kappa: float) -> jnp.ndarray:
    """(N, 2) per variable the negated lowest ``mean - kappa sd`` of its predictions (``-inf`` where not
    intervenable) and the position where it is (``search``): an optimistic bound for minimization."""
    found = search(lambda mean, sd: kappa * sd - mean, predict, obs)
    return found.at[:, 0].set(jnp.where(obs.action_mask & obs.node_mask, found[:, 0], -jnp.inf))
