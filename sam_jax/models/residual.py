"""The residual blocks of ViT and Mixer: two pre-LayerNorm sub-blocks with stochastic depth.

    x' = x + DropPath(f(LN_0(x)))
    y  = x' + DropPath(g(LN_1(x')))

``f`` and ``g`` are the block's two branches (attention then an MLP in ViT, token mixing then
channel mixing in Mixer), ``LN_i`` LayerNorms named ``LayerNorm_{i}`` as in the official
checkpoints and ``DropPath`` stochastic depth (``stochastic_depth.py``) at the block's rate.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_jax.models.stochastic_depth import DropPath

Branch = Callable[[jax.Array], jax.Array]


class PreNormBlock(nn.Module, kw_only=True):
  """The two residual sub-blocks above; a subclass names its branches in ``branches``.

  Records its output ``y`` as ``out`` in ``intermediates``.
  """
  dropout_rate: float = 0.0
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32

  def branches(self, train: bool) -> tuple[Branch, Branch]:
    """``(f, g)``, built inside ``__call__`` (their submodules are the block's)."""
    raise NotImplementedError(f"{type(self).__name__} must define branches(train).")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for i, branch in enumerate(self.branches(train)):
      y = branch(nn.LayerNorm(dtype=self.dtype, name=f"LayerNorm_{i}")(x))
      x = x + DropPath(self.drop_path_rate)(y, train=train)
    self.sow("intermediates", "out", x)
    return x

