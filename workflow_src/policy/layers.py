"""The network layers the policy and its response model share: the per-(sample, variable) embedding pooled
over samples, a plain layer norm and a pre-norm transformer block across variables, with padding masks."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from .sample_pooling import pooled_embedding


class SampleEmbedding(nn.Module):
    """A dense layer with GELU on every (sample, variable), pooled over the samples: ``(mean, max)``."""

    features: int

    @nn.compact
    def __call__(self, sample_features, sample_mask):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (sample_features.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return pooled_embedding(sample_features, sample_mask, kernel, bias)


class LayerNorm(nn.Module):
    """Flax's ``nn.LayerNorm`` (the same parameters, names and epsilon) written as the plain formula, whose
    gradient XLA's CPU backend computes about 2.5 times faster than Flax's (measured at (400, 20, 32): 4.0
    vs 1.5 ms forward and backward)."""

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones_init(), x.shape[-1:])
        bias = self.param("bias", nn.initializers.zeros_init(), x.shape[-1:])
        centered = x - x.mean(-1, keepdims=True)
        return centered * jax.lax.rsqrt((centered**2).mean(-1, keepdims=True) + self.epsilon) * scale + bias


def head_major_attention(query, key, value, mask=None):
    """Flax's dot-product attention (no dropout), its value product computed head by head: ``(h, k, d)``
    values, ``(h, q, d)`` outputs. The same numbers; XLA's CPU backend runs Flax's ``...hqk,...khd->...qhd``
    layout as a slow strided loop (measured on a 64-variable evaluation: 1.7 of 5.4 s)."""
    weights = nn.dot_product_attention_weights(query, key, mask=mask)  # (..., h, q, k)
    per_head = jnp.einsum("...hqk,...hkd->...hqd", weights, jnp.swapaxes(value, -3, -2))
    return jnp.swapaxes(per_head, -3, -2)


class VariableBlock(nn.Module):
    """Pre-norm transformer block across variables."""

    hidden_dim: int
    n_heads: int

    @nn.compact
    def __call__(self, h, mask):
        attn_mask = nn.make_attention_mask(mask, mask)
        attention = nn.MultiHeadDotProductAttention(num_heads=self.n_heads, qkv_features=self.hidden_dim,
                                                    attention_fn=head_major_attention)
        a = attention(LayerNorm()(h), mask=attn_mask)
        h = h + a
        m = nn.Dense(2 * self.hidden_dim)(LayerNorm()(h))
        return h + nn.Dense(self.hidden_dim)(nn.gelu(m))
