"""The response model measured as a model, beside the response-curve GP that ``causal_bo`` uses.

On every SCM of a suite, ``replicates`` buffers of ``n_obs`` observational samples plus ``k`` random
interventions (a uniformly random intervenable variable at a uniform value) for each ``k`` of ``sizes``: the
buffers of one replicate are nested (the first ``k`` interventions of the same draw), and both models see the
same buffers. Each model predicts standardized ``E[Y | do(X_i = v)]`` at ``GRID`` positions of every
intervenable variable's range; the scores, against the exact curve (``core.response_scoring``):

- ``rmse``: root mean squared error of the predicted mean, in units of Y's spread over the buffer;
- ``nll``: the Gaussian negative log likelihood of the truth under the predictive distribution;
- ``best_improvement``: the normalized improvement (``sampler.norm_improvement``) of the (variable, value)
  whose predicted mean is lowest: what a method that trusted the model would do next.

A ``flat`` prediction (the buffer's mean of Y everywhere, standard deviation 1) is scored beside them: the
reference a model must beat to have learnt anything.

A suite runs in its shape bucket, in chunks of the evaluation's size (``rollout.chunk_size``), one compiled program.
``write_response_quality`` writes a suite's rows as a table (``tables.RESPONSE_QUALITY_SCHEMA``, the protocol in its
metadata): the ``acbo response-quality`` command and its workflow rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..core import response_gp, sampler
from ..core.buffer import fit_surrogate, random_buffer
from ..core.problem import problem_of
from ..core.response_scoring import grid_points, response_loss, response_targets
from ..core.scm import bucket_size, stack_scms, term_bucket
from ..errors import CheckpointError
from ..provenance import git_commit, package_version
from ..suites.suite_io import Suite
from ..tables import RESPONSE_PROTOCOL_KEY, RESPONSE_QUALITY_SCHEMA, write_table
from .rollout import chunk_size

GRID = 33  # positions per range where the predictions are scored (ends included)
SIZES = (0, 5, 10)  # interventions in the buffers, beside the observational samples
SCORES = ("rmse", "nll", "best_improvement")
MODELS = ("response_model", "response_gp", "flat")  # flat: the buffer's mean of Y everywhere, spread 1


def _scores(scm, prediction, target):
    """(rmse, nll, normalized improvement of the predicted best) of ``prediction`` (mean, sd) (N, G)."""
    stats = response_loss(prediction, target, scm.intervenable)
    mean = jnp.where(scm.intervenable[:, None], prediction[0], jnp.inf)
    variable, point = jnp.unravel_index(jnp.argmin(mean), mean.shape)
    value = scm.lo[variable] + point / (GRID - 1) * (scm.hi[variable] - scm.lo[variable])
    best = sampler.norm_improvement(scm, sampler.expected_target(scm, variable, value))
    return jnp.stack([stats.rmse, stats.nll, best])


def make_measure(policy, n_obs: int, max_size: int):
    """Jitted ``measure(params, scms, keys, k) -> (K, MODELS, SCORES)`` on a stack of SCMs with (K,) buffer keys
    and buffers of ``k`` interventions (traced: one program serves every size)."""
    from ..policy.network import policy_observation, response_predictions

    def one(params, scm, key, k):
        buffer = random_buffer(scm, key, n_obs, max_size, k)
        fit = fit_surrogate(scm, buffer)
        problem = problem_of(scm)  # what the models see: the problem and the buffer, never the truth
        points = grid_points(scm.bias.shape[0], GRID)
        target = response_targets(scm, buffer, points)
        model = response_predictions(policy, params, policy_observation(policy, problem, buffer, fit), points)
        gp = response_gp.posterior_at(problem, response_gp.fit_gp(problem, buffer, fit, causal=True), points)
        flat = (jnp.zeros_like(target), jnp.ones_like(target))
        return jnp.stack([_scores(scm, model, target), _scores(scm, gp, target), _scores(scm, flat, target)])

    def measure(params, scms, keys, k):
        return jax.vmap(one, (None, 0, 0, None))(params, scms, keys, k)

    return jax.jit(measure)


def measure_suite(policy, params, suite: Suite, n_obs: int = 10, replicates: int = 4, seed: int = 0,
                  sizes: tuple[int, ...] = SIZES) -> pd.DataFrame:
    """One row per (SCM, replicate, size, model) with its ``rmse``, ``nll`` and ``best_improvement``."""
    scms = list(suite.scms)
    bucket, n_terms = bucket_size(max(s.n for s in scms)), term_bucket(scms)
    chunk = chunk_size(bucket)
    measure, base = make_measure(policy, n_obs, max(sizes)), jax.random.PRNGKey(seed)
    pieces = []
    for start in range(0, len(scms), chunk):  # in chunks of the evaluation's size, the last one filled
        real = scms[start:start + chunk]
        arrays = stack_scms(real + real[:1] * (chunk - len(real)), bucket, n_terms)
        index = jnp.arange(start, start + chunk)
        per_replicate = []
        for replicate in range(replicates):
            keys = jax.vmap(lambda i, r=replicate: jax.random.fold_in(jax.random.fold_in(base, i), r))(index)
            per_replicate.append([np.asarray(measure(params, arrays, keys, k))[:len(real)] for k in sizes])
        pieces.append(np.stack([np.stack(p, 1) for p in per_replicate], 1))  # (K, R, Z, MODELS, SCORES)
    scores = np.concatenate(pieces)
    index = pd.MultiIndex.from_product([[s.id for s in scms], range(replicates), list(sizes), MODELS],
                                       names=["scm_id", "replicate", "interventions", "model"])
    frame = pd.DataFrame(scores.reshape(-1, len(SCORES)), index=index, columns=list(SCORES))
    return frame.reset_index().assign(suite=suite.name)


def check_response_model(policy_config: dict, source) -> None:
    """Refuse a policy without a response model: there is nothing to measure (one line naming ``source``)."""
    if not policy_config["response_model"]:
        raise CheckpointError(f"{source}: this checkpoint has no response model (policy.response_model: false), so "
                              "there is nothing to measure")


def write_response_quality(policy, params, suite: Suite, protocol: dict, identity: dict,
                           out: str | Path) -> pd.DataFrame:
    """Measure the suite (``measure_suite`` under ``protocol``: the ``response_quality`` stage's slice) and write its
    table atomically, the protocol in its metadata; ``identity``: config, seed, checkpoint_hash. Returns the rows."""
    sizes = tuple(protocol["response_sizes"])
    frame = measure_suite(policy, params, suite, protocol["n_obs"], protocol["response_replicates"],
                          protocol["seed"], sizes)
    by_id = {scm.id: scm for scm in suite.scms}
    frame = frame.assign(
        config=identity.get("config"), seed=identity.get("seed"),
        family=[by_id[i].family for i in frame["scm_id"]], level=[by_id[i].level for i in frame["scm_id"]],
        package_version=package_version(), git_commit=git_commit(), checkpoint_hash=identity.get("checkpoint_hash"))
    meta = {"n_obs": protocol["n_obs"], "replicates": protocol["response_replicates"], "sizes": list(sizes),
            "seed": protocol["seed"], "grid": GRID}
    write_table(frame, RESPONSE_QUALITY_SCHEMA, out, "response quality table",
                metadata={RESPONSE_PROTOCOL_KEY: json.dumps(meta, sort_keys=True).encode()})
    return frame
