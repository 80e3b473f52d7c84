"""The two-layer GELU MLP of ViT and MLP-Mixer blocks.

    y = dropout(W_1 dropout(gelu(W_0 x + b_0)) + b_1)

``gelu`` is Flax's default (tanh approximation), as in the official models. The
post-GELU hidden units are sown as ``intermediates/.../hidden`` (the paper counts
the active ones, > 0, per block). Parameter names ``Dense_0``/``Dense_1`` match
the official checkpoints.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


class MlpBlock(nn.Module):
  """``Dense(mlp_dim) -> GELU -> Dropout -> Dense(input width) -> Dropout``."""
  mlp_dim: int
  dropout_rate: float = 0.0
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    dense = lambda features, name: nn.Dense(
        features, kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype,
        name=name)
    out_dim = x.shape[-1]
    x = nn.gelu(dense(self.mlp_dim, "Dense_0")(x))
    self.sow("intermediates", "hidden", x)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    x = dense(out_dim, "Dense_1")(x)
    return nn.Dropout(self.dropout_rate)(x, deterministic=not train)
