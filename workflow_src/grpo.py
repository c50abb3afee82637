"""GRPO for the intervention policy, written as pure functions in the style of purejaxrl.

``make_train_episode(settings, policy)`` returns one jittable ``train_episode(state, scm, key)`` that
plays an episode on one (padded) SCM and updates the policy:

1. ``n_obs`` observational samples fill the buffer;
2. ``lax.scan`` over ``T`` steps: the policy sees the buffer (and the surrogate's parent probabilities),
   a group of ``G`` actions is sampled for the same state and each is executed on the SCM with fresh
   noise; rewards ``w_t * target + w_p * parent + w_i * info_gain`` give group-relative advantages; one
   uniformly chosen member of the group (not the best) is appended to the buffer;
3. ``update_epochs`` clipped policy-gradient steps (Adam, gradient clipping, entropy bonus, optional KL)
   on all ``T x G`` actions of the episode.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import sampler, surrogate
from .buffer import append, candidates, fit_surrogate, initial_buffer
from .policy import (
    Observation,
    categorical_entropy,
    log_prob,
    observe,
    sample_actions,
    squash,
)
from .scm import SCMArrays


class GRPOSettings(NamedTuple):
    group_size: int
    n_obs: int
    n_interventions: int
    fixed_std: float
    clip_eps: float
    entropy_coef: float
    kl_coef: float
    update_epochs: int
    reward_target: float
    reward_parent: float
    reward_info_gain: float

    @classmethod
    def from_experiment(cls, exp: dict) -> GRPOSettings:
        t, r = exp["training"], exp["reward"]
        return cls(
            group_size=t["group_size"], n_obs=t["n_obs"], n_interventions=t["n_interventions"],
            fixed_std=exp["policy"]["fixed_std"], clip_eps=t["clip_eps"], entropy_coef=t["entropy_coef"],
            kl_coef=t["kl_coef"], update_epochs=t["update_epochs"], reward_target=r["target"],
            reward_parent=r["parent"], reward_info_gain=r["info_gain"],
        )


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState


class Transition(NamedTuple):
    obs: Observation
    variable: jnp.ndarray  # (G,)
    u: jnp.ndarray  # (G,) pre-squash values
    log_prob: jnp.ndarray  # (G,) under the behaviour policy
    advantage: jnp.ndarray  # (G,)
    reward: jnp.ndarray  # (G,)
    reward_target: jnp.ndarray  # (G,)
    reward_parent: jnp.ndarray  # (G,)
    reward_info_gain: jnp.ndarray  # (G,)
    executed: jnp.ndarray  # () index of the group member appended to the buffer


class EpisodeStats(NamedTuple):
    reward: jnp.ndarray
    reward_target: jnp.ndarray
    reward_parent: jnp.ndarray
    reward_info_gain: jnp.ndarray
    norm_improvement: jnp.ndarray  # exact, of the executed actions
    parent_rate: jnp.ndarray
    range_utilization: jnp.ndarray
    f1: jnp.ndarray
    loss: jnp.ndarray
    grad_norm: jnp.ndarray


def execute(scm: SCMArrays, key, variable, value):
    """Run interventions ``do(X_variable[g] = value[g])`` with independent noise; returns samples (G, N)."""
    eps = jax.random.normal(key, (variable.shape[0], scm.bias.shape[0]))
    x_obs = sampler.from_noise(scm, eps)
    return jax.vmap(sampler.intervene, (None, 0, 0, 0))(scm, x_obs, variable, value)


def group_advantages(reward: jnp.ndarray) -> jnp.ndarray:
    """GRPO's group-relative advantages: rewards standardized within the group."""
    return (reward - reward.mean()) / (reward.std() + 1e-6)


def clipped_objective(logp_new, logp_old, advantage, clip_eps):
    """PPO's clipped surrogate (to maximize), averaged over actions."""
    ratio = jnp.exp(logp_new - logp_old)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return jnp.minimum(ratio * advantage, clipped * advantage).mean()


def make_train_episode(settings: GRPOSettings, policy, optimizer: optax.GradientTransformation):
    s = settings
    n_samples = s.n_obs + s.n_interventions
    group_log_prob = jax.vmap(log_prob, (None, None, None, 0, 0, None))

    def play(params, scm: SCMArrays, key):
        key_obs, key_steps = jax.random.split(key)
        buffer = initial_buffer(scm, key_obs, s.n_obs, n_samples)

        def step(buffer, inputs):
            t, step_key = inputs
            k_act, k_noise, k_pick = jax.random.split(step_key, 3)
            fit = fit_surrogate(scm, buffer)
            obs = observe(scm, buffer, fit)
            logits, mu = policy.apply(params, obs)
            variable, u = sample_actions(k_act, logits, mu, s.fixed_std, s.group_size)
            value = squash(scm, variable, u)
            x = execute(scm, k_noise, variable, value)
            row = s.n_obs + t
            r_target = sampler.norm_improvement(scm, x[:, scm.target])
            r_parent = scm.parents[variable].astype(jnp.float32)
            after = jax.vmap(lambda xg, vg: fit_surrogate(scm, append(buffer, row, xg, vg)).entropy)(x, variable)
            r_info = fit.entropy - after
            reward = s.reward_target * r_target + s.reward_parent * r_parent + s.reward_info_gain * r_info
            pick = jax.random.randint(k_pick, (), 0, s.group_size)
            transition = Transition(
                obs=obs, variable=variable, u=u,
                log_prob=group_log_prob(logits, mu, scm, variable, u, s.fixed_std),
                advantage=group_advantages(reward), reward=reward, reward_target=r_target,
                reward_parent=r_parent, reward_info_gain=r_info, executed=pick,
            )
            return append(buffer, row, x[pick], variable[pick]), transition

        steps = (jnp.arange(s.n_interventions), jax.random.split(key_steps, s.n_interventions))
        buffer, transitions = jax.lax.scan(step, buffer, steps)
        return buffer, transitions

    def loss_fn(params, scm: SCMArrays, tr: Transition):
        logits, mu = jax.vmap(policy.apply, (None, 0))(params, tr.obs)
        logp = jax.vmap(group_log_prob, (0, 0, None, 0, 0, None))(logits, mu, scm, tr.variable, tr.u, s.fixed_std)
        objective = clipped_objective(logp, tr.log_prob, tr.advantage, s.clip_eps)
        entropy = jax.vmap(categorical_entropy)(logits).mean()
        log_ratio = logp - tr.log_prob
        kl = (jnp.exp(log_ratio) - 1.0 - log_ratio).mean()  # k3 estimate of KL(behaviour || current)
        return -objective - s.entropy_coef * entropy + s.kl_coef * kl

    def train_episode(state: TrainState, scm: SCMArrays, key):
        buffer, tr = play(state.params, scm, key)

        def update(state, _):
            loss, grads = jax.value_and_grad(loss_fn)(state.params, scm, tr)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            return TrainState(optax.apply_updates(state.params, updates), opt_state), (loss, optax.global_norm(grads))

        state, (losses, grad_norms) = jax.lax.scan(update, state, None, length=s.update_epochs)
        steps = jnp.arange(s.n_interventions)
        chosen_var = tr.variable[steps, tr.executed]
        chosen_u = tr.u[steps, tr.executed]
        expected = sampler.expected_target(scm, chosen_var, squash(scm, chosen_var, chosen_u))
        stats = EpisodeStats(
            reward=tr.reward.mean(),
            reward_target=tr.reward_target.mean(),
            reward_parent=tr.reward_parent.mean(),
            reward_info_gain=tr.reward_info_gain.mean(),
            norm_improvement=sampler.norm_improvement(scm, expected).mean(),
            parent_rate=scm.parents[chosen_var].mean(),
            range_utilization=jnp.abs(jnp.tanh(chosen_u)).mean(),
            f1=surrogate.f1_score(fit_surrogate(scm, buffer).parent_prob, scm.parents, candidates(scm)),
            loss=losses[0],
            grad_norm=grad_norms[0],
        )
        detail = {
            "variable": tr.variable, "value": squash(scm, tr.variable, tr.u), "reward": tr.reward,
            "advantage": tr.advantage, "executed": tr.executed,
        }
        return state, stats, detail

    return train_episode


def make_optimizer(training: dict, total_episodes: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam with global-norm clipping; constant or cosine learning rate (per update step) with warmup."""
    lr = training["learning_rate"]
    per_episode = training["update_epochs"]
    warmup = training["warmup_episodes"] * per_episode
    total = max(total_episodes * per_episode, warmup + 1)
    if training["lr_schedule"] == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), total, end_value=lr * 0.05)
    elif warmup:
        schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
    else:
        schedule = optax.constant_schedule(lr)
    optimizer = optax.chain(optax.clip_by_global_norm(training["max_grad_norm"]), optax.adam(schedule))
    return optimizer, schedule
