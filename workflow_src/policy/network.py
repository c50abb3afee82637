"""The ``simple_permutation_invariant`` intervention policy network (Flax).

Equivariant over variables and invariant over samples: a per-(sample, variable) embedding, masked mean
and max pooling over samples, self-attention across variables with a padding mask, then two heads per
variable: the logit of choosing it (the target, non-intervenable and padded variables are masked out)
and the mean ``mu`` of a pre-squash value ``u ~ N(mu, fixed_std)``; the intervention value is
``center + radius * tanh(u)``. Nothing depends on the number of samples or variables, so a policy
trained on small graphs runs on any graph.

With a ``prior`` the network is a residual on a heuristic (``features``): its logits and values are added to
the heuristic's choice made soft, so training starts from the heuristic and learns where to depart from it;
with ``response_gp_ei`` it learns when to stop exploring. Its action distribution is ``distribution``'s.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..core.buffer import Buffer
from ..core.problem import Problem
from ..core.surrogate import Surrogate
from . import checkpoint
from .features import PRIOR_VALUE_SCALE, Observation, observe
from .sample_pooling import pooled_embedding
from .spec import (
    GP_PRIORS,
    SAMPLE_CHANNELS,
    check_policy_config,
    variable_channels,
)

NEG_INF = -1e9
EFFECT_LOGIT_SCALE = 10.0  # initial logit per unit of predicted normalized improvement
EFFECT_VALUE_SCALE = 5.0  # initial pull of the value towards the better range end
PRIOR_LOGIT_SCALE = 30.0  # initial logit per unit of the prior's predicted fall of Y (in Y's observed spread)
PRIOR_VALUE_GAIN = 10.0  # how sharply the pull turns with the difference between the two ends' predictions
EI_LOGIT_SCALE = 10.0  # initial logit per unit of log expected improvement (response_gp_ei)


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
        prior=policy_config["prior"], curve_features=policy_config["curve_features"],
        budget_feature=policy_config["budget_feature"],
    )


def policy_observation(policy: PermutationInvariantPolicy, scm: Problem, buffer: Buffer, fit: Surrogate):
    """The observation ``policy`` was built for."""
    return observe(scm, buffer, fit, policy.bandit_features, policy.prior, policy.curve_features,
                   policy.budget_feature)


def act_outputs(policy: PermutationInvariantPolicy, params, obs: Observation):
    """``(logits, mu)`` of the policy, whether or not it has the auxiliary effect head."""
    return policy.apply(params, obs)[:2]


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
