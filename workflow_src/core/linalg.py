"""Small dense linear algebra in plain XLA operations, batched over leading axes.

Used by ``causal_bo``'s GP: jaxlib's CPU LAPACK triangular solve spreads a batched call over XLA's
intra-op thread pool and waits for it from a thread of that same pool; with the GP's batches (one
Gram matrix per variable, SCM and episode) every pool thread ended up waiting and baseline jobs idled at
0% CPU forever (native stacks: ``lapack_strsm_ffi`` -> ``ParallelBatchMap`` -> ``BlockingCounter::Wait``).
The Gram matrices are small (one row per intervention), so a loop over columns costs little, never calls
LAPACK, and gives the same numbers on every machine. Its inner products are ``einsum`` (a batched dot): against
multiplying and summing, a ``causal_bo`` step on a 32-SCM nonlinear suite took 103 ms instead of 170 (one core).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-12  # floor of a pivot before its square root


def cholesky(a: jnp.ndarray) -> jnp.ndarray:
    """Lower-triangular ``L`` with ``L @ L.T == a`` for symmetric positive definite ``a`` (..., n, n)."""
    n = a.shape[-1]
    rows = jnp.arange(n)

    def column(j, low):
        row_j = low[..., j, :]  # L[j, :j], zeros from column j on
        pivot = jnp.sqrt(jnp.maximum(a[..., j, j] - (row_j * row_j).sum(-1), EPS))
        below = (a[..., :, j] - jnp.einsum("...ik,...k->...i", low, row_j)) / pivot[..., None]
        col = jnp.where(rows > j, below, jnp.where(rows == j, pivot[..., None], 0.0))
        return low.at[..., :, j].set(col)

    return jax.lax.fori_loop(0, n, column, jnp.zeros_like(a))


def solve_lower(low: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``x`` with ``low @ x == b`` for lower-triangular ``low`` (..., n, n) and ``b`` (..., n, m)."""
    n = low.shape[-1]

    def row(i, x):
        xi = (b[..., i, :] - jnp.einsum("...k,...km->...m", low[..., i, :], x)) / low[..., i, i][..., None]
        return x.at[..., i, :].set(xi)

    return jax.lax.fori_loop(0, n, row, jnp.zeros_like(b))
