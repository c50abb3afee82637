"""GRPO for the intervention policy, written as pure functions in the style of purejaxrl: the loss, the
update and the optimizer (the rollouts they learn from are ``rollout``'s).

``make_train_update(settings, policy, optimizer)`` returns one update as two jittable functions
(``TrainUpdate``): ``play_batch`` plays an episode on each SCM of a batch, and ``learn`` updates the policy on
them. The pieces:

- ``grpo_loss``: ``update_epochs`` clipped policy-gradient steps (Adam, gradient clipping, entropy bonus,
  optional KL) on all ``T x G`` actions of the batch, with group-relative advantages;
- ``episode_stats``: the per-SCM statistics of the training log.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core import sampler
from ..core.buffer import Buffer, fit_surrogate
from ..core.response_scoring import ResponseStats, expected_curves, grid_points, response_loss, standardized_targets
from ..core.scm import SCMArrays
from ..core.step_metrics import step_metrics
from ..policy.distribution import categorical_entropy, squash
from ..policy.network import anchor_outputs, init_params, response_predictions
from .rollout import Batch, GRPOSettings, Transition, group_log_prob, per_step, play_batch

EFFECT_TARGET_FLOOR = 1.0
FINAL_LR_FRACTION = 0.05  # the cosine schedule decays to this share of the peak learning rate


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState


def initial_state(policy, optimizer: optax.GradientTransformation, key) -> TrainState:
    """Fresh parameters from ``key`` and the optimizer's state for them."""
    params = init_params(policy, key)
    return TrainState(params, optimizer.init(params))


class EpisodeStats(NamedTuple):
    reward: jnp.ndarray
    reward_target: jnp.ndarray
    reward_parent: jnp.ndarray
    reward_info_gain: jnp.ndarray
    norm_improvement: jnp.ndarray  # exact, of the executed actions
    parent_rate: jnp.ndarray  # share of the executed actions on a true parent
    range_utilization: jnp.ndarray  # fraction of the half-range (core.step_metrics), mean over the actions
    f1: jnp.ndarray
    loss: jnp.ndarray
    effect_loss: jnp.ndarray
    response_nll: jnp.ndarray  # the response model's loss on the episode's states (0 without it)
    response_rmse: jnp.ndarray
    grad_norm: jnp.ndarray


def clipped_objective(logp_new, logp_old, advantage, clip_eps):
    """PPO's clipped surrogate (to maximize), averaged over actions."""
    ratio = jnp.exp(logp_new - logp_old)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return jnp.minimum(ratio * advantage, clipped * advantage).mean()


def exact_effects(scm: SCMArrays) -> jnp.ndarray:
    """(N, 2): each variable's exact normalized improvement at the low and high end of its range.

    Values below ``-EFFECT_TARGET_FLOOR`` (far worse than doing nothing) are floored: how bad a bad action
    is matters less than which action is best, and the squared error would be dominated by them.
    """
    n = scm.bias.shape[0]
    ends = jnp.stack([scm.lo, scm.hi], -1)
    expected = sampler.expected_target(scm, jnp.arange(n)[:, None], ends)
    effect = jnp.clip(sampler.norm_improvement(scm, expected), -EFFECT_TARGET_FLOOR, 1.0)
    return jnp.where(scm.intervenable[:, None], effect, 0.0)


class Auxiliary(NamedTuple):
    """The supervised parts of one episode's loss, logged beside it (0 where off)."""

    effect: jnp.ndarray  # the effect head's squared error
    response: ResponseStats  # the response model's NLL and RMSE on the states acted from


def anchor_kl(logits, mu, obs, fixed_std: float) -> jnp.ndarray:
    """KL(policy || starting acquisition) in one state: over the variable, plus the expected KL of the value's
    Gaussians (the same spread, so half the squared gap of their means over the variance)."""
    anchor_logits, anchor_mu = anchor_outputs(obs)
    p = jax.nn.softmax(logits)
    log_ratio = jax.nn.log_softmax(logits) - jax.nn.log_softmax(anchor_logits)
    value_kl = 0.5 * ((mu - anchor_mu) / fixed_std) ** 2
    return (p * jnp.where(p > 0, log_ratio + value_kl, 0.0)).sum(-1)


def response_rows(n_states: int, wanted: int):
    """The rows of an episode's ``n_states`` states (trajectory by trajectory) whose response loss is read:
    ``wanted`` of them evenly spaced, so every step and trajectory is represented, or all (``wanted`` 0 or at
    least ``n_states``): a static slice or index array."""
    if not wanted or wanted >= n_states:
        return slice(None)
    return np.linspace(0, n_states - 1, wanted).round().astype(np.int32)


def grpo_loss(settings: GRPOSettings, policy, params, scm: SCMArrays, tr: Transition):
    """The loss of one episode's transitions ``per_state`` and its ``Auxiliary`` parts: the clipped
    policy-gradient objective, an entropy bonus, the k3 estimate of KL(behaviour || current), the KL to the
    starting acquisition, the effect head's squared error and the response model's NLL on the states
    (``response_rows`` of them), each by its coefficient."""
    s = settings
    outputs = jax.vmap(policy.apply, (None, 0))(params, tr.obs)
    logits, mu = outputs.logits, outputs.mu
    logp = jax.vmap(group_log_prob, (0, 0, None, 0, 0, None))(logits, mu, scm, tr.variable, tr.u, s.fixed_std)
    objective = clipped_objective(logp, tr.log_prob, tr.advantage, s.clip_eps)
    entropy = jax.vmap(categorical_entropy)(logits).mean()
    log_ratio = logp - tr.log_prob
    kl = (jnp.exp(log_ratio) - 1.0 - log_ratio).mean()
    loss = -objective - s.entropy_coef * entropy + s.kl_coef * kl
    effect = jnp.zeros(())
    if s.effect_coef:
        mask = scm.intervenable[:, None]  # padded variables are never intervenable
        error = jnp.where(mask, outputs.effect - exact_effects(scm), 0.0)
        effect = (error**2).sum((-1, -2)).mean() / jnp.maximum(mask.sum() * 2, 1)
        loss = loss + s.effect_coef * effect
    response = ResponseStats(jnp.zeros(()), jnp.zeros(()))
    if s.response_coef:
        points = grid_points(scm.bias.shape[0])
        curves = expected_curves(scm, points)  # the truth: a target, never an input
        rows = response_rows(tr.response_scale.shape[0], s.response_states)
        obs, scale = jax.tree.map(lambda a: a[rows], (tr.obs, tr.response_scale))
        per_state = jax.vmap(lambda obs, scale: response_loss(
            response_predictions(policy, params, obs, points), standardized_targets(curves, scale),
            scm.intervenable))(obs, scale)
        response = jax.tree.map(jnp.mean, per_state)
        loss = loss + s.response_coef * response.nll
    if s.anchor_coef:
        loss = loss + s.anchor_coef * jax.vmap(anchor_kl, (0, 0, 0, None))(logits, mu, tr.obs, s.fixed_std).mean()
    return loss, Auxiliary(effect, response)


def batch_loss(settings: GRPOSettings, policy, params, scms: SCMArrays, tr: Transition):
    """``grpo_loss`` averaged over the SCMs of a batch (and its ``Auxiliary`` parts, per SCM)."""
    losses, aux = jax.vmap(functools.partial(grpo_loss, settings, policy), (None, 0, 0))(params, scms, tr)
    return losses.mean(), aux


def episode_stats(scm: SCMArrays, buffer: Buffer, tr: Transition, executed, loss, aux: Auxiliary,
                  grad_norm) -> EpisodeStats:
    """One episode's statistics (transitions ``per_state``): its mean rewards, and the normalized improvement,
    parent rate and range utilization of its executed actions, the surrogate's F1 on its buffer, with the
    update's loss."""
    variable, value = executed
    metrics = step_metrics(scm, variable, value, fit_surrogate(scm, buffer))  # the evaluation's definitions
    return EpisodeStats(
        reward=tr.reward.mean(),
        reward_target=tr.reward_target.mean(),
        reward_parent=tr.reward_parent.mean(),
        reward_info_gain=tr.reward_info_gain.mean(),
        norm_improvement=metrics.norm_improvement.mean(),
        parent_rate=metrics.is_parent.mean(),
        range_utilization=metrics.range_utilization.mean(),
        f1=metrics.f1,
        loss=loss, effect_loss=aux.effect, response_nll=aux.response.nll, response_rmse=aux.response.rmse,
        grad_norm=grad_norm,
    )


# --- one update: play a batch, learn from it ---------------------------------------------------------------


def step_detail(scms: SCMArrays, tr: Transition) -> dict:
    """The first episode's actions (T, G) with their values, rewards and advantages, and the member executed."""
    scm, first = jax.tree.map(lambda a: a[0], (scms, tr))
    steps = per_step(first)
    value = jax.vmap(squash, (None, 0, 0))(scm, steps["variable"], steps["u"])
    return {"variable": steps["variable"], "value": value, "reward": steps["reward"],
            "advantage": steps["advantage"], "executed": first.executed}


def learn(settings: GRPOSettings, policy, optimizer: optax.GradientTransformation, state: TrainState, batch: Batch):
    """``update_epochs`` gradient steps on ``batch``: ``(state, EpisodeStats per SCM, step_detail)``; the
    statistics carry the first step's loss, effect error and gradient norm."""
    loss_and_grad = jax.value_and_grad(functools.partial(batch_loss, settings, policy), has_aux=True)

    def update(state, _):
        (loss, aux), grads = loss_and_grad(state.params, batch.scms, batch.transitions)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_state = TrainState(optax.apply_updates(state.params, updates), opt_state)
        return new_state, (loss, aux, optax.tree.norm(grads))

    state, (losses, aux, grad_norms) = jax.lax.scan(update, state, None, length=settings.update_epochs)
    stats = jax.vmap(episode_stats, (0, 0, 0, 0, None, 0, None))(
        batch.scms, batch.buffers, batch.transitions, batch.executed, losses[0], jax.tree.map(lambda a: a[0], aux),
        grad_norms[0])
    return state, stats, step_detail(batch.scms, batch.transitions)


@dataclass(frozen=True)
class TrainUpdate:
    """One policy update as two pure functions, each jittable: ``play(params, pool, members, key) -> Batch``
    plays one episode on each SCM ``pool[members]``; ``learn(state, batch) -> (state, stats, detail)`` takes
    the ``update_epochs`` gradient steps on it. Called as ``update(state, pool, members, key)``, it is both.

    The training driver compiles them as two programs: the batch stays on the device between them (still one
    round trip to the host per update), and the compiler's peak memory is that of the larger half, not of
    the whole (measured on the production training program at 20 variables: 1071 -> 844 MiB).
    """

    play: Callable
    learn: Callable

    def __call__(self, state: TrainState, pool: SCMArrays, members, key):
        return self.learn(state, self.play(state.params, pool, members, key))


def make_train_update(settings: GRPOSettings, policy, optimizer: optax.GradientTransformation) -> TrainUpdate:
    """``play_batch`` and ``learn`` bound to the settings, the policy and the optimizer."""
    return TrainUpdate(functools.partial(play_batch, settings, policy),
                       functools.partial(learn, settings, policy, optimizer))


def make_optimizer(training: dict, total_episodes: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam with global-norm clipping; constant or cosine learning rate (per update step) with warmup."""
    lr = training["learning_rate"]
    per_episode = training["update_epochs"]
    warmup = training["warmup_episodes"] * per_episode
    total = max(total_episodes * per_episode, warmup + 1)
    if training["lr_schedule"] == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), total, end_value=lr * FINAL_LR_FRACTION)
    elif warmup:
        schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
    else:
        schedule = optax.constant_schedule(lr)
    optimizer = optax.chain(optax.clip_by_global_norm(training["max_grad_norm"]), optax.adam(schedule))
    return optimizer, schedule
