"""The response model's targets and scoring rule: the exact ``E[Y | do(X_i = v)]`` at positions of each range in
units of the buffer's standardized Y, and the Gaussian negative log likelihood and RMSE of a predictive
distribution of it. Read by the model's training (``train.response``) and by its measurement beside the
response-curve GP (``evaluate.response_eval``). The truth is a target of a loss or a score here, never an input.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from . import sampler
from .buffer import Buffer
from .scm import SCMArrays
from .surrogate import masked_standardize

POINTS = 16  # positions per variable at which the truth is compared with the prediction in training
TARGET_CLIP = 10.0  # targets in units of Y's observed spread (as the policy's inputs are clipped)
LOG_SQRT_2PI = 0.5 * jnp.log(2 * jnp.pi)


class ResponseStats(NamedTuple):
    nll: jnp.ndarray  # Gaussian negative log likelihood per (variable, position), standardized Y
    rmse: jnp.ndarray  # root mean squared error of the predicted mean, standardized Y


def expected_curves(scm: SCMArrays, points: jnp.ndarray) -> jnp.ndarray:
    """(N, P) the exact ``E[Y | do(X_i = v)]`` at the positions ``points`` (N, P) of each range, in Y's units."""
    value = scm.lo[:, None] + points * (scm.hi - scm.lo)[:, None]
    return sampler.expected_target(scm, jnp.arange(points.shape[0])[:, None], value)


def target_scale(scm: SCMArrays, buffer: Buffer) -> jnp.ndarray:
    """(2,) the mean and standard deviation of Y over the buffer: the model's scale."""
    _, mean, std = masked_standardize(buffer.values, buffer.sample_mask)
    return jnp.stack([mean[scm.target], std[scm.target]])


def standardized_targets(curves: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
    """``curves`` in units of Y standardized by ``scale`` (``target_scale``), clipped to ``TARGET_CLIP``."""
    return jnp.clip((curves - scale[0]) / scale[1], -TARGET_CLIP, TARGET_CLIP)


def response_targets(scm: SCMArrays, buffer: Buffer, points: jnp.ndarray) -> jnp.ndarray:
    """(N, P) ``expected_curves`` in units of Y standardized over the buffer (the model's scale), clipped to
    ``TARGET_CLIP``."""
    return standardized_targets(expected_curves(scm, points), target_scale(scm, buffer))


def response_loss(prediction: tuple, target: jnp.ndarray, intervenable: jnp.ndarray) -> ResponseStats:
    """The Gaussian NLL and RMSE of ``prediction`` (mean, sd), each (N, P), against ``target``, over the
    intervenable variables."""
    mean, sd = prediction
    mask = jnp.broadcast_to(intervenable[:, None], target.shape)
    count = jnp.maximum(mask.sum(), 1)
    nll = 0.5 * ((target - mean) / sd) ** 2 + jnp.log(sd) + LOG_SQRT_2PI
    return ResponseStats(jnp.where(mask, nll, 0.0).sum() / count,
                         jnp.sqrt(jnp.where(mask, (target - mean) ** 2, 0.0).sum() / count))


def grid_points(n_vars: int, points: int = POINTS) -> jnp.ndarray:
    """(N, points) positions evenly spaced over every range, ends included."""
    return jnp.broadcast_to(jnp.linspace(0.0, 1.0, points), (n_vars, points))
