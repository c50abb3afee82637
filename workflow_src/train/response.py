"""Supervised training of the response model (``policy.response_model``) against the simulator's truth.

For every training SCM the exact ``E[Y | do(X_i = v)]`` is known (closed form for linear SCMs, the stored
oracle curve for nonlinear ones: ``sampler.expected_target``). The model learns it by a proper scoring rule,
the Gaussian negative log likelihood of the truth under its predictive distribution, on buffers of every size
the protocol produces:

- **before the policy's updates** (``training.response_steps``): buffers of ``n_obs`` observational samples
  plus ``k`` random interventions (a uniformly random intervenable variable at a uniform value), ``k`` uniform
  in ``0 .. RANDOM_INTERVENTIONS``, on SCMs drawn uniformly from every level of the config, at ``POINTS``
  positions per variable (both range ends and uniform draws); ``pretrain`` runs ``n`` such steps as one
  compiled ``lax.scan``, vmapped over the ``training.response_batch`` SCMs of a step;
- **along the policy's own episodes** (``training.response_coef``): the states the rollouts act from (all, or
  ``training.response_states`` of each episode), at ``POINTS`` evenly spaced positions (the rollout keeps each
  state's ``target_scale``, the GRPO loss compares the prediction with ``expected_curves`` in that scale).

The truth is a target of the loss only: the model's inputs are the policy's observation of the buffer.
"""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.buffer import Buffer, fit_surrogate, random_buffer
from ..core.problem import problem_of
from ..core.response_scoring import POINTS, ResponseStats, response_loss, response_targets
from ..core.scm import SCMArrays
from ..errors import UserError
from ..policy.network import make_policy, policy_observation, response_predictions

RANDOM_INTERVENTIONS = 20  # the most random interventions in a supervised buffer (the evaluation protocol's)
MAX_GRAD_NORM = 1.0
PRETRAIN_CHUNK = 100  # supervised steps per compiled call (and per progress line)
RESPONSE_STREAM = 0x5E5  # the supervised steps' random stream, apart from the episodes'


def supervised_stats(policy, params, scm: SCMArrays, buffer: Buffer, points) -> ResponseStats:
    """The response model's loss on one buffer of one SCM at ``points`` (N, P)."""
    obs = policy_observation(policy, problem_of(scm), buffer, fit_surrogate(scm, buffer))
    return response_loss(response_predictions(policy, params, obs, points), response_targets(scm, buffer, points),
                         scm.intervenable)


def make_response_optimizer(learning_rate: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(MAX_GRAD_NORM), optax.adam(learning_rate))


def make_pretrain(policy, optimizer: optax.GradientTransformation, n_obs: int, batch: int, n_steps: int):
    """``pretrain(params, opt_state, pool, key) -> (params, opt_state, ResponseStats per step)``: ``n_steps``
    supervised steps on random buffers of SCMs drawn from ``pool`` (a stack), one compiled scan."""

    def batch_loss(params, scms, buffers, points):
        stats = jax.vmap(supervised_stats, (None, None, 0, 0, 0))(policy, params, scms, buffers, points)
        return stats.nll.mean(), stats

    def pretrain(params, opt_state, pool: SCMArrays, key):
        n_pool, n_vars = pool.bias.shape[0], pool.bias.shape[1]

        def step(carry, step_key):
            params, opt_state = carry
            k_scm, k_size, k_buffer, k_points = jax.random.split(step_key, 4)
            scms = jax.tree.map(lambda a: a[jax.random.randint(k_scm, (batch,), 0, n_pool)], pool)
            sizes = jax.random.randint(k_size, (batch,), 0, RANDOM_INTERVENTIONS + 1)
            buffers = jax.vmap(random_buffer, (0, 0, None, None, 0))(
                scms, jax.random.split(k_buffer, batch), n_obs, RANDOM_INTERVENTIONS, sizes)
            inside = jax.random.uniform(k_points, (batch, n_vars, POINTS - 2))
            points = jnp.concatenate([jnp.zeros((batch, n_vars, 1)), inside, jnp.ones((batch, n_vars, 1))], -1)
            (_, stats), grads = jax.value_and_grad(batch_loss, has_aux=True)(params, scms, buffers, points)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), jax.tree.map(jnp.mean, stats)

        (params, opt_state), stats = jax.lax.scan(step, (params, opt_state), jax.random.split(key, n_steps))
        return params, opt_state, stats

    return pretrain


@functools.lru_cache(maxsize=4)
def _pretrain_program(spec_json: str, n_steps: int):
    """The jitted ``n_steps`` supervised steps of the response model of a training spec, and their optimizer."""
    spec = json.loads(spec_json)
    t = spec["training"]
    optimizer = make_response_optimizer(t["response_learning_rate"])
    pretrain = make_pretrain(make_policy(spec["policy"]), optimizer, t["n_obs"], t["response_batch"], n_steps)
    return jax.jit(pretrain), optimizer


def pretrain_schedule(level_bucket: dict, steps: int) -> list[tuple[int, int]]:
    """``(bucket, steps)`` in order: the supervised steps shared among the shape buckets by their number of levels,
    the smallest first, in chunks of at most ``PRETRAIN_CHUNK``. A bucket's stack holds every level that fits in
    it, so the steps on the last bucket draw from all levels, and the small graphs of the early levels do not
    pay for the padding of the largest."""
    levels = list(level_bucket.values())
    buckets = sorted(set(levels))
    shares = np.cumsum([levels.count(b) for b in buckets]) * steps // len(levels)
    schedule, done = [], 0
    for bucket, until in zip(buckets, shares):
        while done < until:
            n = min(PRETRAIN_CHUNK, until - done)
            schedule.append((bucket, n))
            done += n
    return schedule


def pretrain_response(spec: dict, seed: int, stacks: dict, level_bucket: dict, params, say) -> tuple[dict, dict]:
    """``params`` with the response model trained for ``training.response_steps`` supervised steps on random
    buffers of every level's SCMs (``stacks``: the training pool's stack per shape bucket, ``level_bucket``: each
    level's bucket; ``pretrain_schedule``), and a summary of them for the checkpoints (empty without steps; no
    timing, as a checkpoint is a function of its config and seed)."""
    steps = spec["training"]["response_steps"]
    if not steps:
        return params, {}
    t0 = time.perf_counter()
    spec_json = json.dumps(spec, sort_keys=True)
    opt_state = _pretrain_program(spec_json, PRETRAIN_CHUNK)[1].init(params)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), RESPONSE_STREAM)
    done = 0
    for bucket, n in pretrain_schedule(level_bucket, steps):
        pretrain, _ = _pretrain_program(spec_json, n)
        params, opt_state, stats = pretrain(params, opt_state, stacks[bucket], jax.random.fold_in(key, done))
        done += n
        nll, rmse = (float(np.mean(np.asarray(v))) for v in stats)
        if not (np.isfinite(nll) and np.isfinite(rmse)):
            raise UserError(f"the response model's training diverged before step {done} "
                           "(lower training.response_learning_rate)")
        say(f"response model: {done}/{steps} supervised steps ({bucket} variables), NLL {nll:.3f}, RMSE {rmse:.3f} "
            f"(standardized Y), {time.perf_counter() - t0:.0f}s")
    return params, {"steps": steps, "nll": nll, "rmse": rmse}
