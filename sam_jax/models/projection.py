"""A projection head on a headless backbone: the model of contrastive pretraining (SimCLR).

    h = backbone features (ViT: class token or mean; Mixer: mean; ResNet: pooled)
    z = W_L relu(... relu(W_1 h)) ...)          widths ``projection`` = (d_1, ..., d_L)

Each layer is a Dense followed (``batch_norm``) by a BatchNorm (momentum 0.9, eps 1e-5),
hidden layers with a ReLU, as SimCLR's head (google-research/simclr ``model_util.py``
``projection_head``: ``num_proj_layers`` layers, the hidden ones as wide as h, the last
``proj_out_dim`` wide, no ReLU after it). With a BatchNorm the Dense has no bias.

The backbone shares this module's scope (``nn.share_scope``), so its parameter names are
exactly those of the classifier of the same family and size, without its ``head``; the
head's layers live under the top-level ``projection``. A fine-tune or linear probe loads
the backbone into the classifier and gives it a fresh ``head``.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

PROJECTION = "projection"  # The top-level parameter subtree of the head.
# The head's parameters as one block after the backbone's (``param_blocks.partition``), in
# every family's rules.
PARAM_BLOCKS = ((rf"^{PROJECTION}/", PROJECTION),)


class ProjectionHead(nn.Module):
  """``len(widths)`` Dense(+BatchNorm) layers, ReLU between them."""
  widths: Sequence[int]
  batch_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for i, width in enumerate(self.widths):
      x = nn.Dense(width, use_bias=not self.batch_norm, dtype=self.dtype)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype)(x)
      if i < len(self.widths) - 1:
        x = nn.relu(x)
    return x


class Projected(nn.Module):
  """``backbone`` (built without a head, ``num_classes=0``) then a ``ProjectionHead``.

  Returns the projections z [batch, widths[-1]], not normalised.
  """
  backbone: nn.Module
  widths: Sequence[int]
  batch_norm: bool = True

  def setup(self):
    nn.share_scope(self, self.backbone)  # The backbone's parameters stay at the top level.
    self.head = ProjectionHead(self.widths, self.batch_norm, self.backbone.dtype, name=PROJECTION)

  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    return self.head(self.backbone(images, train=train), train=train)
