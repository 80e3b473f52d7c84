"""Multi-head self-attention that records its attention weights.

Same parameters, names and shapes as ``flax.linen.MultiHeadDotProductAttention``
(hence the official ViT checkpoints): for inputs ``x`` of shape [b, n, d] and ``h``
heads of size ``k = d / h``,

    q = x W_q + b_q,  K = x W_k + b_k,  v = x W_v + b_v     W_*: [d, h, k], b_*: [h, k]
    A = softmax(q K^T / sqrt(k))                            [b, h, n, n] (over keys)
    y = sum_{h, k} (dropout(A) v) W_o + b_o                 W_o: [h, k, d], b_o: [d]

``A`` (before dropout) is sown as ``intermediates/.../attention_weights``.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class MultiHeadDotProductAttention(nn.Module):
  """Self-attention over axis -2 of ``x`` [batch, tokens, width]."""
  num_heads: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    width = x.shape[-1]
    if width % self.num_heads:
      raise ValueError(f"MultiHeadDotProductAttention: width {width} is not divisible by "
                       f"num_heads={self.num_heads}.")
    head_dim = width // self.num_heads
    init = nn.initializers.xavier_uniform()

    def project(name: str) -> jax.Array:
      return nn.DenseGeneral((self.num_heads, head_dim), kernel_init=init, dtype=self.dtype,
                             name=name)(x)

    query, key, value = project("query"), project("key"), project("value")
    query = query / jnp.sqrt(head_dim).astype(query.dtype)
    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(value.dtype)
    self.sow("intermediates", "attention_weights", weights)
    weights = nn.Dropout(self.dropout_rate)(weights, deterministic=not train)
    mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, value)
    return nn.DenseGeneral(width, axis=(-2, -1), kernel_init=init, dtype=self.dtype,
                           name="out")(mixed)
