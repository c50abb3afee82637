"""The GRPO rollouts, written as pure functions in the style of purejaxrl: what one update plays.

- ``env_step``, the kernel: fit the surrogate, observe, act (k actions), execute, score each by its reward
  ``w_t * target + w_p * parent + w_i * info_gain`` (``step_reward``);
- the two rollouts, ``lax.scan`` over the ``T`` steps after ``n_obs`` observational samples, both returning
  one ``Transition`` layout (T, G). ``play_steps`` (credit "step"): a group of ``G`` actions for the same state,
  each executed with fresh noise and scored by its immediate reward, one uniformly chosen member (not the
  best) appended to the buffer. ``play_trajectories`` (credit "trajectory"): ``G`` whole trajectories from
  the same start (the kernel vmapped over them), scored by their returns-to-go;
- ``play_batch``: the settings' rollout on each SCM of a batch (padded to the batch's shape bucket), vmapped
  over the SCMs, its transitions laid out ``per_state`` as the loss (``grpo``) reads them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..core import sampler
from ..core.buffer import Buffer, append, fit_surrogate, initial_buffer
from ..core.problem import problem_of
from ..core.response_scoring import target_scale
from ..core.scm import SCMArrays
from ..policy.distribution import log_prob, sample_actions, squash
from ..policy.features import Observation
from ..policy.network import act_outputs, policy_inputs


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
    advantage_std_floor: float  # added to a group's std of returns (training.advantage_std_floor, README)
    response_coef: float  # weight of the response model's loss on the episodes' states (``response``)
    response_states: int  # states per SCM episode that loss reads, evenly spread (0: every one)
    anchor_coef: float  # weight of KL(policy || the starting acquisition)

    @classmethod
    def from_experiment(cls, exp: dict) -> GRPOSettings:
        t, r = exp["training"], exp["reward"]
        return cls(
            group_size=t["group_size"], n_obs=t["n_obs"], n_interventions=t["n_interventions"],
            fixed_std=exp["policy"]["fixed_std"], clip_eps=t["clip_eps"], entropy_coef=t["entropy_coef"],
            kl_coef=t["kl_coef"], update_epochs=t["update_epochs"], reward_target=r["target"],
            reward_parent=r["parent"], reward_info_gain=r["info_gain"], credit=t["credit"],
            exact_reward=r["exact"], best_weight=r["best_so_far"], effect_coef=t["effect_coef"],
            advantage_std_floor=t["advantage_std_floor"], response_coef=t["response_coef"],
            response_states=t["response_states"], anchor_coef=t["anchor_coef"],
        )

class Transition(NamedTuple):
    """The G actions of each of an episode's T steps, one layout for both credits.

    Per-action fields are (T, G). ``obs`` is (T, S, ...): the states acted from, S = 1 where the group acts from
    one shared state (credit "step") and S = G where each of G trajectories has its own (credit "trajectory");
    action ``g`` was taken from state ``g * S // G``.
    """

    obs: Observation  # (T, S, ...)
    response_scale: jnp.ndarray  # (T, S, 2) Y's mean and spread over the state's buffer, the scale of the
    # response model's targets (``response_scoring.target_scale``; (T, S, 0) without its loss)
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
    response_scale: jnp.ndarray  # (2,) ``response_scoring.target_scale`` of the state ((0,) without the loss)
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


def group_advantages(reward: jnp.ndarray, axis: int, std_floor: float) -> jnp.ndarray:
    """GRPO's group-relative advantages: rewards standardized within the group (along ``axis``), the standard
    deviation plus ``std_floor``."""
    mean = reward.mean(axis, keepdims=True)
    return (reward - mean) / (reward.std(axis, keepdims=True) + std_floor)


def trajectory_returns(reward: jnp.ndarray, norm_improvement: jnp.ndarray, best_weight: float) -> jnp.ndarray:
    """Returns-to-go of whole trajectories, (G, T) -> (G, T).

    Each step earns its reward plus ``best_weight`` times the best normalized improvement found so far, so a
    trajectory that finds the optimum early earns the best-so-far bonus at every later step: an action is
    credited with what it lets the following steps find, which is what makes exploring pay.
    """
    best = jax.lax.cummax(norm_improvement, axis=1)
    per_step = reward + best_weight * best
    return jnp.flip(jnp.cumsum(jnp.flip(per_step, 1), 1), 1)


group_log_prob = jax.vmap(log_prob, (None, None, None, 0, 0, None))  # k actions from one state


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
    obs = policy_inputs(policy, params, problem_of(scm), buffer, fit)  # the problem, not the truth
    logits, mu = act_outputs(policy, params, obs)
    variable, u = sample_actions(key, logits, mu, s.fixed_std, n_actions)
    value = squash(scm, variable, u)
    x = sampler.execute(scm, noise, variable, value)
    exact = sampler.norm_improvement(scm, sampler.expected_target(scm, variable, value))
    r_target = exact if s.exact_reward else sampler.norm_improvement(scm, x[..., scm.target])
    r_parent = scm.parents[variable].astype(jnp.float32)
    # one surrogate refit per action: only when its reward counts
    r_info = info_gain(scm, buffer, fit, row, x, variable) if s.reward_info_gain else jnp.zeros_like(r_target)
    response_scale = target_scale(scm, buffer) if s.response_coef else jnp.zeros((0,))
    return StepOutcome(
        obs=obs, response_scale=response_scale, variable=variable, u=u,
        log_prob=group_log_prob(logits, mu, scm, variable, u, s.fixed_std), x=x,
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
    per_state_fields = {f: jax.tree.map(lambda a: a[:, None], getattr(out, f)) for f in STATE_FIELDS}
    tr = _transitions(out._replace(**per_state_fields), advantage, pick)
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
    out = out._replace(**{f: getattr(out, f)[..., 0] for f in StepOutcome._fields if f not in (*STATE_FIELDS, "x")})
    returns = trajectory_returns(out.reward, out.norm_improvement, s.best_weight)
    advantage = group_advantages(returns, 0, s.advantage_std_floor)
    tr = _transitions(jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out), advantage.T,
                      jnp.zeros(s.n_interventions, jnp.int32))
    variable, u = out.variable.reshape(-1), out.u.reshape(-1)
    return Episode(jax.tree.map(lambda a: a[0], buffers), tr, (variable, squash(scm, variable, u)))


ROLLOUTS = {"step": play_steps, "trajectory": play_trajectories}


STATE_FIELDS = ("obs", "response_scale")  # per state acted from, not per action
_PER_ACTION = [f for f in Transition._fields if f not in (*STATE_FIELDS, "executed")]


def per_state(tr: Transition) -> Transition:
    """A rollout's transitions as the loss reads them, one row per state acted from, trajectory by
    trajectory: ``obs`` (S·T, ...) and the per-action fields (S·T, G/S), the actions taken from each state;
    ``executed`` as it is. Credit "step": (T, G) as they are; "trajectory": (G·T, 1)."""
    n_steps, n_states = jax.tree.leaves(tr.obs)[0].shape[:2]

    def states_first(a):  # (T, S, ...) -> (S·T, ...)
        return jnp.swapaxes(a, 0, 1).reshape((n_states * n_steps, *a.shape[2:]))

    per_action = {f: states_first(getattr(tr, f).reshape(n_steps, n_states, -1)) for f in _PER_ACTION}
    per_state_fields = {f: jax.tree.map(states_first, getattr(tr, f)) for f in STATE_FIELDS}
    return tr._replace(**per_state_fields, **per_action)


def per_step(tr: Transition) -> dict:
    """The per-action fields of ``per_state(tr)`` back in the rollouts' layout (T, G) (``obs`` left out)."""
    n_steps = tr.executed.shape[0]

    def steps_first(a):  # (S·T, G/S) -> (T, G)
        return jnp.swapaxes(a.reshape(-1, n_steps, a.shape[-1]), 0, 1).reshape(n_steps, -1)

    return {f: steps_first(getattr(tr, f)) for f in _PER_ACTION}


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
