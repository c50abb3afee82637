"""One compiled evaluation protocol for every method: episodes of interventions on a stacked suite.

Each method is a function ``act(method_params, view, key) -> (variable, value)`` (see ``methods``). The
runner vmaps over SCMs and episodes and scans over steps. Randomness is split so comparisons are paired
(common random numbers): the observational samples and the noise of the intervention at step ``t`` of
episode ``e`` on SCM ``k`` depend only on ``(seed, k, e, t)``, never on the method; a method's own
randomness comes from a separate stream keyed by the method's name. Every draw that has a variable axis is
padding-invariant (``sampler.per_variable_*``): variable ``j``'s numbers depend on ``j``, not on the padded
size, so an SCM gets the same numbers in every shape bucket and in every chunk.

**Shape buckets.** A compiled program depends on the padded node count and the number of SCMs it runs at
once, never on a suite's size: SCMs are padded to ``bucket_size(n)`` variables (a power of two, at least
``scm.MIN_BUCKET``) and a suite runs in chunks of ``chunk_size(bucket)`` SCMs (the last chunk filled with copies
whose results are dropped). A handful of programs serves every suite, seed and config, and a job's peak
memory depends on the chunk, not on the suite.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..core import sampler, surrogate
from ..core.buffer import Buffer, append, fit_surrogate, initial_buffer
from ..core.problem import Problem, problem_of
from ..core.scm import SCMArrays
from ..core.step_metrics import step_metrics
from .act_trace import call_apart


class StepView(NamedTuple):
    """What a method may use when choosing the next intervention (the information boundary, ``problem``)."""

    scm: Problem  # ranges, masks and target only: the truth is not in the view (the oracle alone is given it)
    buffer: Buffer
    fit: surrogate.Surrogate
    step: jnp.ndarray


class StepRecord(NamedTuple):
    """One step of an episode: the action, the sampled target, then ``core.step_metrics.StepMetrics``."""

    variable: jnp.ndarray
    value: jnp.ndarray
    target: jnp.ndarray  # sampled Y
    expected_target: jnp.ndarray
    norm_improvement: jnp.ndarray
    is_parent: jnp.ndarray
    is_optimal_variable: jnp.ndarray
    range_utilization: jnp.ndarray
    f1: jnp.ndarray


Act = Callable[[object, StepView, jax.Array], tuple[jnp.ndarray, jnp.ndarray]]

# Padded variables x SCMs per compiled chunk. It bounds a job's working memory, and smaller chunks run
# faster once a step's tensors outgrow the CPU caches: the two policy modes on heldout-L14 (64-variable
# bucket) took 4.3 s in chunks of 8 SCMs, 3.0 s in chunks of 4, 2.7-2.9 s in chunks of 2 and 1; heldout-L11
# (bucket 32) 1.66 s in chunks of 16, 1.14-1.30 s in chunks of 8, 1.10 s in chunks of 4. At 8 and 16
# variables chunks of 8 to 32 SCMs run alike.
CHUNK_BUDGET = 128


def chunk_size(bucket: int) -> int:
    """SCMs per compiled chunk in a bucket: 16 at 8 variables, then fewer as the graphs grow."""
    return max(1, CHUNK_BUDGET // bucket)


def method_stream(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def episode_keys(base_key: jax.Array, scm_index: jnp.ndarray, n_episodes: int) -> jax.Array:
    """(len(scm_index), n_episodes) keys shared by every method: from the SCM's index in its suite, so an
    SCM's episodes get the same numbers whichever chunk it runs in."""
    return jax.vmap(lambda k: jax.vmap(lambda e: jax.random.fold_in(jax.random.fold_in(base_key, k), e))(
        jnp.arange(n_episodes)))(scm_index)


def make_episode(acts: tuple[Act, ...], n_obs: int, n_interventions: int, method_names: tuple[str, ...],
                 reads_truth: tuple[bool, ...] | None = None):
    """``start(scm, key, method) -> (carry, inputs)`` and ``step(method_params, method, scm, carry, input) ->
    (carry, record)``: one episode with ``acts[method]`` is ``start`` then a scan of ``step`` over ``inputs``.

    A method's view holds the problem alone and its ``act`` is traced apart from the truth (``act_trace``); one
    whose ``reads_truth`` is set (the oracle) gets the whole SCM."""
    streams = jnp.array([method_stream(name) for name in method_names], dtype=jnp.uint32)
    reads_truth = reads_truth or (False,) * len(acts)

    def branch(act, truth_reader: bool):
        def run(params, view, truth, key):
            # a method's Python runs in a thread of its own, where no frame holds the truth (``act_trace``)
            out = act(params, view._replace(scm=truth), key) if truth_reader else call_apart(act, params, view, key)
            return tuple(jnp.asarray(x, dtype) for x, dtype in zip(out, (jnp.int32, jnp.float32)))

        return run

    # every branch returns the same types, so the methods can share one compiled program
    branches = [branch(act, truth_reader) for act, truth_reader in zip(acts, reads_truth, strict=True)]

    def start(scm: SCMArrays, key, method):
        key_obs, key_noise = jax.random.split(key)
        key_act = jax.random.fold_in(key, streams[method])
        buffer = initial_buffer(scm, key_obs, n_obs, n_obs + n_interventions)
        noise = sampler.per_variable_normal(key_noise, (n_interventions,), scm.bias.shape[0])
        inputs = (jnp.arange(n_interventions), noise, jax.random.split(key_act, n_interventions))
        return (buffer, fit_surrogate(scm, buffer)), inputs

    def step(method_params, method, scm: SCMArrays, carry, inputs):
        buffer, fit = carry  # the surrogate fitted on the buffer, carried to avoid refitting
        t, eps, step_key = inputs
        view = StepView(problem_of(scm), buffer, fit, t)
        variable, value = jax.lax.switch(method, branches, method_params, view, scm, step_key)
        value = jnp.clip(value, scm.lo[variable], scm.hi[variable])
        x = sampler.intervene(scm, sampler.from_noise(scm, eps), variable, value)
        buffer = append(scm, buffer, n_obs + t, x, variable)
        fit = fit_surrogate(scm, buffer)
        record = StepRecord(variable, value, x[scm.target], *step_metrics(scm, variable, value, fit))
        return (buffer, fit), record

    return start, step


def make_run_suite(acts: tuple[Act, ...], n_obs: int, n_interventions: int, n_episodes: int,
                   method_names: tuple[str, ...], reads_truth: tuple[bool, ...] | None = None):
    """Jitted ``run(method_params, scms, base_key, scm_index)`` -> records (M, K, E, T).

    ``scms`` is a stacked chunk (K, ...), ``scm_index`` (K,) the SCMs' indices in their suite (episode keys
    derive from them) and ``base_key`` the protocol seed's key. All M methods run in one compiled program,
    which compiles the shared protocol once instead of once per method. The methods run one after another
    (``lax.map`` over the method index), so ``lax.switch`` stays a real branch and each method pays only for
    itself; vmapped over the method index, the switch became a select that evaluated every method's branch
    in every lane (measured on heldout-L12, 64-variable bucket: the two policy modes 3.5 s of CPU per chunk
    instead of 1.9 s, and ``causal_bo`` needed a program of its own). The K x E episodes form one batch axis
    and the scan over steps is outermost, its step vmapped over that axis: a scan vmapped from outside is
    batched by a fixed-point iteration that traces its body several times (per vmap level), which made
    tracing most of a warm job's program load (3.6 s for the policy modes).
    """
    start, step = make_episode(acts, n_obs, n_interventions, method_names, reads_truth)

    def run(params, scms, base_key, scm_index):
        keys = episode_keys(base_key, scm_index, n_episodes)  # (K, E, key)
        n_scms = keys.shape[0]
        keys = keys.reshape(n_scms * n_episodes, *keys.shape[2:])
        episode_scms = jax.tree.map(lambda x: jnp.repeat(x, n_episodes, axis=0), scms)  # (K * E, ...)

        def one_method(method):
            carry, inputs = jax.vmap(start, (0, 0, None))(episode_scms, keys, method)
            steps = jax.tree.map(lambda x: jnp.moveaxis(x, 1, 0), inputs)  # (T, K * E, ...)
            batched = jax.vmap(lambda scm, c, x: step(params, method, scm, c, x))
            _, records = jax.lax.scan(lambda c, x: batched(episode_scms, c, x), carry, steps)
            return jax.tree.map(lambda r: jnp.moveaxis(r, 0, 1).reshape(n_scms, n_episodes, -1), records)

        return jax.lax.map(one_method, jnp.arange(len(acts)))

    return jax.jit(run)
