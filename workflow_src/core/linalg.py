"""Small dense linear algebra in plain XLA operations, batched over leading axes.

Used by ``causal_bo``'s GP: jaxlib's CPU LAPACK triangular solve spreads a batched call over XLA's
intra-op thread pool and waits for it from a thread of that same pool; with the GP's batches (one
Gram matrix per variable, SCM and episode) every pool thread ended up waiting and baseline jobs idled at
0% CPU forever (native stacks: ``lapack_strsm_ffi`` -> ``ParallelBatchMap`` -> ``BlockingCounter::Wait``).
The Gram matrices are small (one row per intervention), so a loop over columns costs little, never calls
LAPACK, and gives the same numbers on every machine.
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
        below = (a[..., :, j] - (low * row_j[..., None, :]).sum(-1)) / pivot[..., None]
        col = jnp.where(rows > j, below, jnp.where(rows == j, pivot[..., None], 0.0))
        return low.at[..., :, j].set(col)

    return jax.lax.fori_loop(0, n, column, jnp.zeros_like(a))


def solve_lower(low: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``x`` with ``low @ x == b`` for lower-triangular ``low`` (..., n, n) and ``b`` (..., n, m)."""
    n = low.shape[-1]

    def row(i, x):
        xi = (b[..., i, :] - (low[..., i, :, None] * x).sum(-2)) / low[..., i, i][..., None]
        return x.at[..., i, :].set(xi)

    return jax.lax.fori_loop(0, n, row, jnp.zeros_like(b))


def solve_lower_transposed(low: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``x`` with ``low.T @ x == b`` (back substitution)."""
    n = low.shape[-1]

    def row(k, x):
        i = n - 1 - k
        xi = (b[..., i, :] - (low[..., :, i, None] * x).sum(-2)) / low[..., i, i][..., None]
        return x.at[..., i, :].set(xi)

    return jax.lax.fori_loop(0, n, row, jnp.zeros_like(b))


def cho_solve(low: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``x`` with ``(low @ low.T) @ x == b`` from the Cholesky factor ``low``."""
    return solve_lower_transposed(low, solve_lower(low, b))
