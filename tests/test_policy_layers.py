"""The policy's layers written for XLA's CPU backend against the plain compositions they replace."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from workflow_src.policy.layers import LayerNorm, head_major_attention
from workflow_src.policy.sample_pooling import pooled_embedding


def plain_pooling(x, sample_mask, kernel, bias):
    """Dense layer, GELU, masked mean and maximum over samples, as JAX composes and differentiates them."""
    e = jax.nn.gelu(x @ kernel + bias)
    w = sample_mask[:, None, None]
    mean = jnp.where(w, e, 0.0).sum(0) / jnp.maximum(w.sum(0), 1.0)
    peak = jnp.where(w, e, -1e9).max(0)
    return mean, jnp.where(sample_mask.any(), peak, 0.0)


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(5, 9, 6, 7)), jnp.float32)  # (batch, samples, variables, channels)
    filled = np.array([9, 4, 1, 0, 7])  # the fourth observation has no samples at all
    sample_mask = jnp.asarray(np.arange(9)[None, :] < filled[:, None])
    kernel = jnp.asarray(rng.normal(size=(7, 16)) * 0.5, jnp.float32)
    bias = jnp.asarray(rng.normal(size=16) * 0.1, jnp.float32)
    return x, sample_mask, kernel, bias


def _loss(pool, x, sample_mask, kernel, bias):
    mean, peak = jax.vmap(pool, (0, 0, None, None))(x, sample_mask, kernel, bias)
    weights = jnp.linspace(-1.0, 2.0, mean.shape[-1])
    return (jnp.sin(mean) * weights).sum() + (peak**2 * weights).sum()


def test_outputs_match_the_plain_layer(batch):
    fused = jax.jit(jax.vmap(pooled_embedding, (0, 0, None, None)))(*batch)
    plain = jax.vmap(plain_pooling, (0, 0, None, None))(*batch)
    for got, want in zip(fused, plain):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.any(np.asarray(fused[1][3]))  # no samples: both pools are 0
    assert not np.any(np.asarray(fused[0][3]))


def test_gradients_match_the_plain_layer(batch):
    """Gradients for the kernel, the bias and the inputs, with padded samples and an empty observation."""
    x, sample_mask, kernel, bias = batch
    args = (0, 2, 3)
    fused = jax.jit(jax.grad(lambda *a: _loss(pooled_embedding, *a), args))(x, sample_mask, kernel, bias)
    plain = jax.grad(lambda *a: _loss(plain_pooling, *a), args)(x, sample_mask, kernel, bias)
    for got, want in zip(fused, plain):
        assert float(jnp.abs(want).max()) > 0
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    assert not np.any(np.asarray(fused[0][3]))  # nothing flows to padded samples
    assert not np.any(np.asarray(fused[0][1, 4:]))


def test_head_major_attention_matches_flax():
    rng = np.random.default_rng(4)
    query, key, value = (jnp.asarray(rng.normal(size=(3, 6, 2, 4)), jnp.float32) for _ in range(3))
    node_mask = jnp.asarray(np.arange(6)[None, :] < np.array([6, 3, 1])[:, None])
    mask = nn.make_attention_mask(node_mask, node_mask)
    got = head_major_attention(query, key, value, mask=mask)
    want = nn.dot_product_attention(query, key, value, mask=mask)
    assert got.shape == want.shape == (3, 6, 2, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_layer_norm_matches_flax_with_the_same_parameters():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(4, 5, 8)) * 3.0 + 1.0, jnp.float32)
    params = nn.LayerNorm().init(jax.random.PRNGKey(0), x)
    params = jax.tree.map(lambda p: p + jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    assert jax.tree.structure(LayerNorm().init(jax.random.PRNGKey(0), x)) == jax.tree.structure(params)

    def loss(module, params, x):
        return (jnp.tanh(module.apply(params, x)) * jnp.arange(8.0)).sum()

    np.testing.assert_allclose(LayerNorm().apply(params, x), nn.LayerNorm().apply(params, x), rtol=1e-5, atol=1e-5)
    got = jax.grad(loss, (1, 2))(LayerNorm(), params, x)
    want = jax.grad(loss, (1, 2))(nn.LayerNorm(), params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), got, want)
