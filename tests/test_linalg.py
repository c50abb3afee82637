"""The plain-XLA linear algebra used inside compiled programs matches LAPACK."""

import jax
import jax.numpy as jnp
import numpy as np

from workflow_src.core import linalg


def spd(rng, batch, n):
    a = rng.normal(size=(*batch, n, n))
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


def test_cholesky_and_solves_match_numpy_on_a_batch():
    rng = np.random.default_rng(0)
    a = spd(rng, (3, 4), 7)
    b = rng.normal(size=(3, 4, 7, 2))
    low = np.asarray(jax.jit(linalg.cholesky)(jnp.asarray(a, jnp.float32)))
    np.testing.assert_allclose(low, np.linalg.cholesky(a), rtol=1e-4, atol=1e-4)
    assert np.all(np.triu(low, 1) == 0.0)
    y = np.asarray(jax.jit(linalg.solve_lower)(jnp.asarray(low), jnp.asarray(b, jnp.float32)))
    np.testing.assert_allclose(np.einsum("...ij,...jk->...ik", low, y), b, atol=1e-4)
    np.testing.assert_allclose(y, np.linalg.solve(np.linalg.cholesky(a), b), rtol=1e-3, atol=1e-4)


def test_identity_rows_of_padded_matrices_stay_identity():
    a = np.eye(5)
    a[:2, :2] = [[4.0, 2.0], [2.0, 3.0]]
    low = np.asarray(linalg.cholesky(jnp.asarray(a, jnp.float32)))
    np.testing.assert_allclose(low[2:, 2:], np.eye(3))
    np.testing.assert_allclose(low[:2, :2], np.linalg.cholesky(a[:2, :2]), rtol=1e-6)


def test_no_lapack_call_in_the_compiled_program():
    program = jax.jit(lambda a, b: linalg.solve_lower(linalg.cholesky(a), b)).lower(
        jnp.eye(4)[None].repeat(8, 0), jnp.ones((8, 4, 1))).as_text()
    assert "lapack" not in program.lower() and "custom_call" not in program
