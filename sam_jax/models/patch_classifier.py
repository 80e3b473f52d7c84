"""What ViT and Mixer share around their blocks: patch size, regularisation and the head.

    logits = features W_h + b_h,    W_h = 0 and b_h = head_bias_init at initialisation

as the official ``vit_jax`` heads; ``num_classes=0`` builds the headless backbone, which
returns ``features``.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class PatchClassifier(nn.Module, kw_only=True):
  """The fields both families take; ``head`` ends a subclass's ``__call__``.

  ``stochastic_depth`` is the drop rate of the last block (linear from 0, see
  ``stochastic_depth.py``); ``head_bias_init`` the initial head bias; ``remat``
  rematerialises the blocks (``remat.py``).
  """
  num_classes: int
  patch_size: int | Sequence[int]
  dropout_rate: float = 0.0
  stochastic_depth: float = 0.0
  head_bias_init: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False

  def head(self, features: jax.Array) -> jax.Array:
    """Records ``features`` in ``intermediates``; the logits of the ``head`` Dense layer, or
    ``features`` without one."""
    self.sow("intermediates", "features", features)
    if not self.num_classes:
      return features
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.constant(self.head_bias_init), dtype=self.dtype,
                    name="head")(features)
