"""GRPO for the intervention policy, written as pure functions in the style of purejaxrl.

``make_train_update(settings, policy, optimizer)`` returns one update as two jittable functions
(``TrainUpdate``): ``play_batch`` plays an episode on each SCM of a batch (padded to the batch's shape bucket),
vmapped over the SCMs, and ``learn`` updates the policy on them. The pieces:

- ``env_step``, the kernel: fit the surrogate, observe, act (k actions), execute, score each by its reward
  ``w_t * target + w_p * parent + w_i * info_gain`` (``step_reward``);
- the two rollouts, ``lax.scan`` over the ``T`` steps after ``n_obs`` observational samples, both returning
  one ``Transition`` layout (T, G). ``play_steps`` (credit "step"): a group of ``G`` actions for the same state,
  each executed with fresh noise and scored by its immediate reward, one uniformly chosen member (not the
  best) appended to the buffer. ``play_trajectories`` (credit "trajectory"): ``G`` whole trajectories from
  the same start (the kernel vmapped over them), scored by their returns-to-go;
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
import optax

from ..core import sampler
from ..core.buffer import Buffer, append, fit_surrogate, initial_buffer
from ..core.problem import problem_of
from ..core.scm import SCMArrays
from ..core.step_metrics import step_metrics
from ..policy.network import (
    Observation,
    act_outputs,
    categorical_entropy,
    init_params,
    log_prob,
    policy_observation,
    sample_actions,
    squash,
)

EFFECT_TARGET_FLOOR = 1.0
FINAL_LR_FRACTION = 0.05  # the cosine schedule decays to this share of the peak learning rate


ADVANTAGE_STD_FLOOR = 1e-6  # added to a group's std of returns (training.advantage_std_floor, README)


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
    credit: str  # "step" or "trajectory"
    exact_reward: bool
    best_weight: float
    effect_coef: float
    advantage_std_floor: float = ADVANTAGE_STD_FLOOR

    @classmethod
    def from_experiment(cls, exp: dict) -> GRPOSettings:
        t, r = exp["training"], exp["reward"]
        return cls(
            group_size=t["group_size"], n_obs=t["n_obs"], n_interventions=t["n_interventions"],
            fixed_std=exp["policy"]["fixed_std"], clip_eps=t["clip_eps"], entropy_coef=t["entropy_coef"],
            kl_coef=t["kl_coef"], update_epochs=t["update_epochs"], reward_target=r["target"],
            reward_parent=r["parent"], reward_info_gain=r["info_gain"], credit=t["credit"],
            exact_reward=r["exact"], best_weight=r["best_so_far"], effect_coef=t["effect_coef"],
            advantage_std_floor=t.get("advantage_std_floor", ADVANTAGE_STD_FLOOR),
        )


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState


def initial_state(policy, optimizer: optax.GradientTransformation, key) -> TrainState:
    """Fresh parameters from ``key`` and the optimizer's state for them."""
    params = init_params(policy, key)
    return TrainState(params, optimizer.init(params))


class Transition(NamedTuple):
    """The G actions of each of an episode's T steps, one layout for both credits.

    Per-action fields are (T, G). ``obs`` is (T, S, ...): the states acted from, S = 1 where the group acts from
    one shared state (credit "step") and S = G where each of G trajectories has its own (credit "trajectory");
    action ``g`` was taken from state ``g * S // G``.
    """

    obs: Observation  # (T, S, ...)
    variable: jnp.ndarray  # (T, G)
    u: jnp.ndarray  # (T, G) pre-squash values
    log_prob: jnp.ndarray  # (T, G) under the behaviour policy
    advantage: jnp.ndarray  # (T, G)
    reward: jnp.ndarray  # (T, G)
    reward_target: jnp.ndarray  # (T, G)
    reward_parent: jnp.ndarray  # (T, G)
    reward_info_gain: jnp.ndarray  # (T, G)
    executed: jnp.ndarray  # (T,) the member whose outcome the returned buffer holds (trajectories: 0)


class StepOutcome(NamedTuple):
    """One environment step (``env_step``): the state seen and k actions from it, executed and scored."""

    obs: Observation
    variable: jnp.ndarray  # (k,)
    u: jnp.ndarray  # (k,)
    log_prob: jnp.ndarray  # (k,)
    x: jnp.ndarray  # (k, N) the samples the actions produced
    reward: jnp.ndarray  # (k,)
    reward_target: jnp.ndarray  # (k,)
    reward_parent: jnp.ndarray  # (k,)
    reward_info_gain: jnp.ndarray  # (k,)
    norm_improvement: jnp.ndarray  # (k,) exact, of the actions' expected outcome


class Episode(NamedTuple):
    """One rollout on one SCM: the buffer it returns, its transitions, and the actions executed as
    ``(variable, value)``: the picked member per step (credit "step"), or every action of every trajectory,
    trajectory by trajectory (G·T)."""

    buffer: Buffer
    transitions: Transition
    executed: tuple


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
    grad_norm: jnp.ndarray


def execute(scm: SCMArrays, noise, variable, value):
    """Samples (k, N) of the interventions ``do(X_variable[g] = value[g])`` under standard-normal ``noise``:
    (N,), one draw common to every action, or (k, N), one per action."""
    x_obs = sampler.from_noise(scm, noise)
    x_obs = jnp.broadcast_to(x_obs, variable.shape + x_obs.shape[-1:])
    return jax.vmap(sampler.intervene, (None, 0, 0, 0))(scm, x_obs, variable, value)


def group_advantages(reward: jnp.ndarray, axis: int = -1, std_floor: float = ADVANTAGE_STD_FLOOR) -> jnp.ndarray:
    """GRPO's group-relative advantages: rewards standardized within the group (along ``axis``), the standard
    deviation plus ``std_floor``."""
    mean = reward.mean(axis, keepdims=True)
    return (reward - mean) / (reward.std(axis, keepdims=True) + std_floor)


def clipped_objective(logp_new, logp_old, advantage, clip_eps):
    """PPO's clipped surrogate (to maximize), averaged over actions."""
    ratio = jnp.exp(logp_new - logp_old)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return jnp.minimum(ratio * advantage, clipped * advantage).mean()


def trajectory_returns(reward: jnp.ndarray, norm_improvement: jnp.ndarray, best_weight: float) -> jnp.ndarray:
    """Returns-to-go of whole trajectories, (G, T) -> (G, T).

    Each step earns its reward plus ``best_weight`` times the best normalized improvement found so far, so a
    trajectory that finds the optimum early earns the best-so-far bonus at every later step: an action is
    credited with what it lets the following steps find, which is what makes exploring pay.
    """
    best = jax.lax.cummax(norm_improvement, axis=1)
    per_step = reward + best_weight * best
    return jnp.flip(jnp.cumsum(jnp.flip(per_step, 1), 1), 1)


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


# --- the environment step and the two rollouts -------------------------------------------------------------

_group_log_prob = jax.vmap(log_prob, (None, None, None, 0, 0, None))  # k actions from one state


def step_reward(settings: GRPOSettings, r_target, r_parent, r_info):
    """The per-step reward ``w_t * target + w_p * parent + w_i * info_gain``."""
    s = settings
    return s.reward_target * r_target + s.reward_parent * r_parent + s.reward_info_gain * r_info


def info_gain(scm: SCMArrays, buffer: Buffer, fit, row, x, variable):
    """The drop in the surrogate's entropy when each sample ``x[g]`` is appended (one refit per action)."""

    def entropy_after(xg, vg):
        return fit_surrogate(scm, append(scm, buffer, row, xg, vg)).entropy

    # a batch of one refit rounds differently from the refit itself: one action is refitted unbatched
    after = entropy_after(x[0], variable[0])[None] if x.shape[0] == 1 else jax.vmap(entropy_after)(x, variable)
    return fit.entropy - after


def env_step(settings: GRPOSettings, policy, params, scm: SCMArrays, buffer: Buffer, row, key, noise,
             n_actions: int) -> StepOutcome:
    """The kernel of both rollouts, one environment step: fit the surrogate on ``buffer``, observe, draw
    ``n_actions`` actions, execute them under ``noise`` (``execute``) and score each by its reward; ``row`` is
    where the step's sample goes in the buffer. The target term is the exact ``E[Y | do]`` or the sampled
    outcome (``settings.exact_reward``), normalized per SCM."""
    s = settings
    fit = fit_surrogate(scm, buffer)
    obs = policy_observation(policy, problem_of(scm), buffer, fit)  # the policy sees the problem, not the truth
    logits, mu = act_outputs(policy, params, obs)
    variable, u = sample_actions(key, logits, mu, s.fixed_std, n_actions)
    value = squash(scm, variable, u)
    x = execute(scm, noise, variable, value)
    exact = sampler.norm_improvement(scm, sampler.expected_target(scm, variable, value))
    r_target = exact if s.exact_reward else sampler.norm_improvement(scm, x[..., scm.target])
    r_parent = scm.parents[variable].astype(jnp.float32)
    # one surrogate refit per action: only when its reward counts
    r_info = info_gain(scm, buffer, fit, row, x, variable) if s.reward_info_gain else jnp.zeros_like(r_target)
    return StepOutcome(
        obs=obs, variable=variable, u=u, log_prob=_group_log_prob(logits, mu, scm, variable, u, s.fixed_std), x=x,
        reward=step_reward(s, r_target, r_parent, r_info), reward_target=r_target, reward_parent=r_parent,
        reward_info_gain=r_info, norm_improvement=exact,
    )


def _transitions(out: StepOutcome, advantage, executed) -> Transition:
    """The transitions of the scanned step outcomes ``out`` (per-action fields (T, G), ``obs`` (T, S, ...))."""
    fields = {f: getattr(out, f) for f in Transition._fields if f not in ("advantage", "executed")}
    return Transition(**fields, advantage=advantage, executed=executed)


def play_steps(settings: GRPOSettings, policy, params, scm: SCMArrays, key) -> Episode:
    """Credit "step": at each step a group of G actions from the same state, each executed with its own noise
    and scored by its immediate reward, standardized within the group; one uniformly chosen member (not the
    best) is appended to the buffer, so states follow the policy's own behaviour."""
    s = settings
    key_obs, key_steps = jax.random.split(key)
    buffer = initial_buffer(scm, key_obs, s.n_obs, s.n_obs + s.n_interventions)

    def step(buffer, inputs):
        t, step_key = inputs
        k_act, k_noise, k_pick = jax.random.split(step_key, 3)
        noise = sampler.per_variable_normal(k_noise, (s.group_size,), scm.bias.shape[0])
        out = env_step(s, policy, params, scm, buffer, s.n_obs + t, k_act, noise, s.group_size)
        pick = jax.random.randint(k_pick, (), 0, s.group_size)
        advantage = group_advantages(out.reward, -1, s.advantage_std_floor)
        return append(scm, buffer, s.n_obs + t, out.x[pick], out.variable[pick]), (out, advantage, pick)

    steps = (jnp.arange(s.n_interventions), jax.random.split(key_steps, s.n_interventions))
    buffer, (out, advantage, pick) = jax.lax.scan(step, buffer, steps)
    tr = _transitions(out._replace(obs=jax.tree.map(lambda a: a[:, None], out.obs)), advantage, pick)
    steps = jnp.arange(s.n_interventions)
    variable, u = tr.variable[steps, pick], tr.u[steps, pick]
    return Episode(buffer, tr, (variable, squash(scm, variable, u)))


def play_trajectories(settings: GRPOSettings, policy, params, scm: SCMArrays, key) -> Episode:
    """Credit "trajectory": G whole trajectories from the same observational samples and the same noise at
    each step, scored by their returns-to-go (``trajectory_returns``) standardized across the group at each
    step. The buffer returned is trajectory 0's."""
    s = settings
    key_obs, key_noise, key_act = jax.random.split(key, 3)
    start = initial_buffer(scm, key_obs, s.n_obs, s.n_obs + s.n_interventions)
    noise = sampler.per_variable_normal(key_noise, (s.n_interventions,), scm.bias.shape[0])  # common to the group

    def trajectory(act_key):
        def step(buffer, inputs):
            t, eps, step_key = inputs
            out = env_step(s, policy, params, scm, buffer, s.n_obs + t, step_key, eps, 1)
            return append(scm, buffer, s.n_obs + t, out.x[0], out.variable[0]), out

        steps = (jnp.arange(s.n_interventions), noise, jax.random.split(act_key, s.n_interventions))
        return jax.lax.scan(step, start, steps)

    buffers, out = jax.vmap(trajectory)(jax.random.split(key_act, s.group_size))  # (G, T), one action each
    out = out._replace(**{f: getattr(out, f)[..., 0] for f in StepOutcome._fields if f not in ("obs", "x")})
    returns = trajectory_returns(out.reward, out.norm_improvement, s.best_weight)
    advantage = group_advantages(returns, 0, s.advantage_std_floor)
    tr = _transitions(jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out), advantage.T,
                      jnp.zeros(s.n_interventions, jnp.int32))
    variable, u = out.variable.reshape(-1), out.u.reshape(-1)
    return Episode(jax.tree.map(lambda a: a[0], buffers), tr, (variable, squash(scm, variable, u)))


ROLLOUTS = {"step": play_steps, "trajectory": play_trajectories}


# --- the loss and the episode statistics -------------------------------------------------------------------


_PER_ACTION = [f for f in Transition._fields if f not in ("obs", "executed")]


def per_state(tr: Transition) -> Transition:
    """A rollout's transitions as the loss reads them, one row per state acted from, trajectory by
    trajectory: ``obs`` (S·T, ...) and the per-action fields (S·T, G/S), the actions taken from each state;
    ``executed`` as it is. Credit "step": (T, G) as they are; "trajectory": (G·T, 1)."""
    n_steps, n_states = jax.tree.leaves(tr.obs)[0].shape[:2]

    def states_first(a):  # (T, S, ...) -> (S·T, ...)
        return jnp.swapaxes(a, 0, 1).reshape((n_states * n_steps, *a.shape[2:]))

    per_action = {f: states_first(getattr(tr, f).reshape(n_steps, n_states, -1)) for f in _PER_ACTION}
    return tr._replace(obs=jax.tree.map(states_first, tr.obs), **per_action)


def per_step(tr: Transition) -> dict:
    """The per-action fields of ``per_state(tr)`` back in the rollouts' layout (T, G) (``obs`` left out)."""
    n_steps = tr.executed.shape[0]

    def steps_first(a):  # (S·T, G/S) -> (T, G)
        return jnp.swapaxes(a.reshape(-1, n_steps, a.shape[-1]), 0, 1).reshape(n_steps, -1)

    return {f: steps_first(getattr(tr, f)) for f in _PER_ACTION}


def grpo_loss(settings: GRPOSettings, policy, params, scm: SCMArrays, tr: Transition):
    """The loss of one episode's transitions ``per_state`` and the effect head's error (0 without it): the
    clipped policy-gradient objective, an entropy bonus, the k3 estimate of KL(behaviour || current) and the
    effect head's squared error, each by its coefficient."""
    s = settings
    outputs = jax.vmap(policy.apply, (None, 0))(params, tr.obs)
    logits, mu = outputs[:2]
    logp = jax.vmap(_group_log_prob, (0, 0, None, 0, 0, None))(logits, mu, scm, tr.variable, tr.u, s.fixed_std)
    objective = clipped_objective(logp, tr.log_prob, tr.advantage, s.clip_eps)
    entropy = jax.vmap(categorical_entropy)(logits).mean()
    log_ratio = logp - tr.log_prob
    kl = (jnp.exp(log_ratio) - 1.0 - log_ratio).mean()
    aux = jnp.zeros(())
    if s.effect_coef:
        mask = scm.intervenable[:, None]  # padded variables are never intervenable
        error = jnp.where(mask, outputs[2] - exact_effects(scm), 0.0)
        aux = (error**2).sum((-1, -2)).mean() / jnp.maximum(mask.sum() * 2, 1)
    return -objective - s.entropy_coef * entropy + s.kl_coef * kl + s.effect_coef * aux, aux


def batch_loss(settings: GRPOSettings, policy, params, scms: SCMArrays, tr: Transition):
    """``grpo_loss`` averaged over the SCMs of a batch (and their effect errors, per SCM)."""
    losses, aux = jax.vmap(functools.partial(grpo_loss, settings, policy), (None, 0, 0))(params, scms, tr)
    return losses.mean(), aux


def episode_stats(scm: SCMArrays, buffer: Buffer, tr: Transition, executed, loss, aux, grad_norm) -> EpisodeStats:
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
        loss=loss, effect_loss=aux, grad_norm=grad_norm,
    )


# --- one update: play a batch, learn from it ---------------------------------------------------------------


class Batch(NamedTuple):
    """The episodes of one update: the SCMs played, their final buffers, transitions (``per_state``, as the
    loss reads them) and executed actions."""

    scms: SCMArrays
    buffers: Buffer
    transitions: Transition
    executed: tuple


def play_batch(settings: GRPOSettings, policy, params, pool: SCMArrays, members, key) -> Batch:
    """One episode on each SCM ``pool[members]`` (the settings' rollout, vmapped), keyed ``fold_in(key, b)``."""
    scms = jax.tree.map(lambda a: a[members], pool)
    keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(members.shape[0]))
    rollout = functools.partial(ROLLOUTS[settings.credit], settings, policy)

    def play(params, scm, key):
        buffer, tr, executed = rollout(params, scm, key)
        return buffer, per_state(tr), executed

    return Batch(scms, *jax.vmap(play, (None, 0, 0))(params, scms, keys))


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
        batch.scms, batch.buffers, batch.transitions, batch.executed, losses[0], aux[0], grad_norms[0])
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
