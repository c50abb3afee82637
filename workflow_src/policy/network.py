"""The ``simple_permutation_invariant`` intervention policy network (Flax).

Equivariant over variables and invariant over samples: a per-(sample, variable) embedding, masked mean
and max pooling over samples, self-attention across variables with a padding mask, then two heads per
variable: the logit of choosing it (the target, non-intervenable and padded variables are masked out)
and the mean ``mu`` of a pre-squash value ``u ~ N(mu, fixed_std)``; the intervention value is
``center + radius * tanh(u)``. Nothing depends on the number of samples or variables, so a policy
trained on small graphs runs on any graph.

With a ``prior`` the network is a residual on a heuristic (``features``): its logits and values are added to
the heuristic's choice made soft, so training starts from the heuristic and learns where to depart from it;
with ``response_gp_ei`` it learns when to stop exploring. With ``response_model`` an amortized response model
(``response_model``) sits beside it, with parameters of its own: its expected improvement is the
``amortized_ei`` prior and the ``amortized_ei`` evaluation mode. Its action distribution is ``distribution``'s.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..core.buffer import Buffer
from ..core.problem import Problem
from ..core.surrogate import Surrogate
from . import checkpoint
from .features import PRIOR_VALUE_SCALE, Observation, observe, position_u
from .layers import LayerNorm, SampleEmbedding, VariableBlock
from .response_model import ResponseModel, acquisition
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
EI_LOGIT_SCALE = 10.0  # initial logit per unit of log expected improvement (response_gp_ei, amortized_ei)
EI_PRIORS = ("response_gp_ei", "amortized_ei")


class PolicyOutputs(NamedTuple):
    """What the network gives for one observation; the optional parts are None where its settings leave them out."""

    logits: jnp.ndarray  # (N,) of choosing each variable (masked ones at ``NEG_INF``)
    mu: jnp.ndarray  # (N,) the mean pre-squash value of each
    effect: jnp.ndarray | None = None  # (N, 2) the effect head's predictions at both range ends


class PermutationInvariantPolicy(nn.Module):
    hidden_dim: int = 64
    n_heads: int = 4
    n_layers: int = 2
    bandit_features: bool = False  # no parameters: which inputs ``observe`` builds for this network
    effect_head: bool = False
    prior: str = "none"
    curve_features: bool = False  # no parameters: which inputs ``observe`` builds for this network
    budget_feature: bool = False  # no parameters: which inputs ``observe`` builds for this network
    # an amortized response model beside the network, with parameters of its own (``params["response_model"]``,
    # ``policy_inputs``): it adds nothing to the network's own layers
    response_model: bool = False
    response_lines: bool = False  # no parameters of the network's own: its response model's query inputs
    response_trend: bool = False  # no parameters of the network's own: its response model's learned lines

    @nn.compact
    def __call__(self, obs: Observation) -> PolicyOutputs:
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
            initial_logit_scale = EI_LOGIT_SCALE if self.prior in EI_PRIORS else PRIOR_LOGIT_SCALE
            logit_scale = self.param("prior_logit_scale", nn.initializers.constant(initial_logit_scale), ())
            value_scale = self.param("prior_value_scale", nn.initializers.constant(PRIOR_VALUE_SCALE), ())
            if self.prior in GP_PRIORS or self.prior == "amortized_ei":
                # the lowest predicted Y anywhere in the range (response_gp) or the log of the highest expected
                # improvement (response_gp_ei, amortized_ei), and the value where it is (at the initial scale,
                # the network's own value head at 0 puts the value on that grid point)
                score, best_u = obs.heuristic[:, 0], obs.heuristic[:, 1]
                logits = logits + logit_scale * (score if self.prior in EI_PRIORS else -score)
                mu = mu + value_scale * best_u / PRIOR_VALUE_SCALE
            else:
                lo, hi = obs.heuristic[:, 0], obs.heuristic[:, 1]
                logits = logits - logit_scale * jnp.minimum(lo, hi)
                mu = mu + value_scale * jnp.tanh(PRIOR_VALUE_GAIN * (lo - hi))
        effect = None
        if self.effect_head:
            # each variable's predicted normalized improvement at its two range ends (trained against the
            # exact values by the auxiliary loss) guides the choice: the variable's logit grows with its
            # better end and its value leans towards that end, by learned scales
            effect = nn.Dense(2)(h)
            logit_scale = self.param("effect_logit_scale", nn.initializers.constant(EFFECT_LOGIT_SCALE), ())
            value_scale = self.param("effect_value_scale", nn.initializers.constant(EFFECT_VALUE_SCALE), ())
            logits = logits + logit_scale * effect.max(-1)
            mu = mu + value_scale * (effect[:, 1] - effect[:, 0])
        return PolicyOutputs(jnp.where(allowed, logits, NEG_INF), mu, effect)


def make_policy(policy_config: dict) -> PermutationInvariantPolicy:
    check_policy_config(policy_config)
    return PermutationInvariantPolicy(
        hidden_dim=policy_config["hidden_dim"], n_heads=policy_config["n_heads"], n_layers=policy_config["n_layers"],
        bandit_features=policy_config["bandit_features"], effect_head=policy_config["effect_head"],
        prior=policy_config["prior"], curve_features=policy_config["curve_features"],
        budget_feature=policy_config["budget_feature"], response_model=policy_config["response_model"],
        response_lines=policy_config["response_lines"], response_trend=policy_config["response_trend"],
    )


def policy_observation(policy: PermutationInvariantPolicy, scm: Problem, buffer: Buffer, fit: Surrogate):
    """The observation ``policy`` was built for, without what its response model adds (``policy_inputs``)."""
    return observe(scm, buffer, fit, policy.bandit_features, policy.prior, policy.curve_features,
                   policy.budget_feature)


def response_model_of(policy: PermutationInvariantPolicy) -> ResponseModel:
    return ResponseModel(policy.hidden_dim, policy.n_heads, policy.n_layers, policy.response_lines,
                         policy.response_trend)


def response_acquisition(policy: PermutationInvariantPolicy, params, obs: Observation) -> jnp.ndarray:
    """(N, 2) the response model's expected improvement per variable (``response_model.acquisition``): the log of
    its best value and the position in the range where it is. A constant of the policy's loss (stop_gradient):
    the model learns from the simulator's truth alone."""
    return jax.lax.stop_gradient(response_search(policy, params, obs, lambda predict: acquisition(predict, obs)))


def response_search(policy: PermutationInvariantPolicy, params, obs: Observation, search):
    """``search(predict)``, ``predict(points)`` giving the response model's (mean, sd) (N, P) at positions
    ``points`` (N, P), with the buffer encoded once for all of its calls."""
    return response_model_of(policy).apply({"params": params["params"]["response_model"]}, obs, search=search)


def policy_inputs(policy: PermutationInvariantPolicy, params, scm: Problem, buffer: Buffer, fit: Surrogate):
    """What the network reads: its observation, and with the ``amortized_ei`` prior the response model's
    acquisition as its heuristic (the log of the best expected improvement and the ``u`` of where it is)."""
    obs = policy_observation(policy, scm, buffer, fit)
    if policy.prior != "amortized_ei":
        return obs
    return with_acquisition(policy, params, obs, scm.intervenable)


def with_acquisition(policy: PermutationInvariantPolicy, params, obs: Observation, intervenable) -> Observation:
    """``obs`` with the ``amortized_ei`` prior's heuristic: the response model's acquisition (the log of the best
    expected improvement and the ``u`` of where it is) on the ``intervenable`` (N,) variables, 0 elsewhere."""
    found = response_acquisition(policy, params, obs)
    return obs._replace(heuristic=jnp.where(intervenable[:, None],
                                            jnp.stack([found[:, 0], position_u(found[:, 1])], -1), 0.0))


def anchor_outputs(obs: Observation) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(logits, mu)`` of the starting acquisition alone (prior ``amortized_ei``, the network's own heads at 0):
    what the KL anchor pulls the policy towards."""
    allowed = obs.action_mask & obs.node_mask
    return jnp.where(allowed, EI_LOGIT_SCALE * obs.heuristic[:, 0], NEG_INF), obs.heuristic[:, 1]


def act_outputs(policy: PermutationInvariantPolicy, params, obs: Observation):
    """``(logits, mu)`` of the policy, whatever optional outputs it has."""
    out = policy.apply(params, obs)
    return out.logits, out.mu


def response_predictions(policy: PermutationInvariantPolicy, params, obs: Observation, points: jnp.ndarray):
    """The response model's (mean, sd) (N, P) at positions ``points`` (N, P), from its own parameters alone (the
    policy's part of the network is not run)."""
    return response_model_of(policy).apply({"params": params["params"]["response_model"]}, obs, points)


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
    params = policy.init(key, obs)
    if policy.response_model:
        points = jnp.zeros((n_vars, 2))
        model = response_model_of(policy).init(jax.random.fold_in(key, 1), obs, points)
        params = {"params": {**params["params"], "response_model": model["params"]}}
    return params
