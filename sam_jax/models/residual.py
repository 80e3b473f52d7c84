"""The residual sub-blocks of ViT and Mixer: pre-LayerNorm, stochastic depth.

    x <- x + DropPath(f(LN(x)))

``f`` is the sub-block (attention, an MLP, token mixing), ``LN`` a LayerNorm with the
parameter name of the official checkpoints and ``DropPath`` stochastic depth
(``stochastic_depth.py``) at the block's rate.
"""

from typing import Any, Callable

import flax.linen as nn
import jax

from sam_jax.models.stochastic_depth import DropPath


def pre_norm_residual(x: jax.Array, branch: Callable[[jax.Array], jax.Array], *, norm_name: str,
                      drop_path_rate: float, train: bool, dtype: Any) -> jax.Array:
  """x + DropPath(branch(LN(x))); call inside a compact method (the LayerNorm is ``norm_name``)."""
  y = branch(nn.LayerNorm(dtype=dtype, name=norm_name)(x))
  return x + DropPath(drop_path_rate)(y, train=train)


def zero_head(x: jax.Array, num_classes: int, bias_init: float, dtype: Any) -> jax.Array:
  """Logits of the ``head`` Dense layer, kernel initialised to 0 and bias to ``bias_init``;
  ``num_classes=0``: no head, the features ``x``."""
  if not num_classes:
    return x
  return nn.Dense(num_classes, kernel_init=nn.initializers.zeros,
                  bias_init=nn.initializers.constant(bias_init), dtype=dtype, name="head")(x)
