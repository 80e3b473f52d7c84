"""ResNet v1 with BatchNorm (He et al., 2016), the paper's convolutional baseline.

As in the Flax ImageNet example (torchvision layout): the stride of a downsampling
bottleneck is on its 3x3 convolution, the shortcut is a strided 1x1 convolution +
BatchNorm when the shape changes, and the last BatchNorm scale of every block starts
at zero (each residual block starts as the identity, Goyal et al., 2017). Stem
(``stem="imagenet"``): 7x7/2 convolution, BatchNorm, ReLU, 3x3/2 max-pool;
``stem="cifar"`` (He et al.'s small-image stem): 3x3/1 convolution, BatchNorm,
ReLU, no pooling, so 32 px inputs keep their resolution in the first stage. Head:
global mean pool, Dense.

BatchNorm normalises with the batch statistics and updates the running averages in
the ``batch_stats`` collection when ``train=True`` (``mutable=["batch_stats"]``), and
uses the running averages when ``train=False``. With ``bn_axis_name`` set, batch
statistics are averaged over that named (device) axis; otherwise each device uses
its own batch. Each block's output is sown as ``intermediates/.../out``.
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_jax.models import conv_matmul, remat

# Depth -> (blocks per stage, block type).
SIZES = {
    "18": dict(stage_sizes=(2, 2, 2, 2), block="basic"),
    "34": dict(stage_sizes=(3, 4, 6, 3), block="basic"),
    "50": dict(stage_sizes=(3, 4, 6, 3), block="bottleneck"),
    "101": dict(stage_sizes=(3, 4, 23, 3), block="bottleneck"),
    "152": dict(stage_sizes=(3, 8, 36, 3), block="bottleneck"),
}
BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")
# The paper's parameter blocks (see ``param_blocks``): the stem, each residual block, the head.
PARAM_BLOCKS = (
    (r"^(?:conv_init|bn_init)/", "embedding"),
    (r"^(?:Bottleneck)?ResNetBlock_(\d+)/", r"block_\1"),
    (r"^head/", "head"),
)


def _layers(train: bool, bn_axis_name: str | None, dtype: Any):
  """Bias-free He-initialised convolution and BatchNorm (momentum 0.9, eps 1e-5).

  The 1x1 convolutions (two of three in a bottleneck, and the projection shortcuts) run as
  matrix products (``conv_matmul``); parameters and outputs are those of ``nn.Conv``.
  """
  conv = functools.partial(nn.Conv, use_bias=False, dtype=dtype,
                           conv_general_dilated=conv_matmul.conv_general_dilated,
                           kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"))
  norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, axis_name=bn_axis_name, dtype=dtype)
  return conv, norm


class ResNetBlock(nn.Module):
  """Basic block: 3x3 (stride) -> 3x3, for ResNet-18/34."""
  filters: int
  strides: int = 1
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv, norm = _layers(train, self.bn_axis_name, self.dtype)
    s = (self.strides, self.strides)
    y = nn.relu(norm()(conv(self.filters, (3, 3), s)(x)))
    y = norm(scale_init=nn.initializers.zeros)(conv(self.filters, (3, 3))(y))
    return self._join(x, y, conv, norm)

  def _join(self, x: jax.Array, y: jax.Array, conv: Callable[..., nn.Module],
            norm: Callable[..., nn.Module]) -> jax.Array:
    """relu(shortcut(x) + y), projecting x when its shape differs from y's."""
    if x.shape != y.shape:
      s = (self.strides, self.strides)
      x = norm(name="norm_proj")(conv(y.shape[-1], (1, 1), s, name="conv_proj")(x))
    out = nn.relu(x + y)
    self.sow("intermediates", "out", out)
    return out


class BottleneckResNetBlock(ResNetBlock):
  """Bottleneck block: 1x1 -> 3x3 (stride) -> 1x1 (4 x filters), for ResNet-50/101/152."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv, norm = _layers(train, self.bn_axis_name, self.dtype)
    s = (self.strides, self.strides)
    y = nn.relu(norm()(conv(self.filters, (1, 1))(x)))
    y = nn.relu(norm()(conv(self.filters, (3, 3), s)(y)))
    y = norm(scale_init=nn.initializers.zeros)(conv(4 * self.filters, (1, 1))(y))
    return self._join(x, y, conv, norm)


class ResNet(nn.Module):
  """ResNet v1 classifier on NHWC images; returns logits [batch, num_classes] (0: no head,
  the pooled features)."""
  num_classes: int
  stage_sizes: Sequence[int]
  block: str = "bottleneck"
  num_filters: int = 64
  stem: str = "imagenet"
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  remat: bool = False  # Rematerialise the blocks (``remat.py``).

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    if self.block not in BLOCKS:
      raise ValueError(f"ResNet: block={self.block!r} is not one of {BLOCKS}.")
    if self.stem not in STEMS:
      raise ValueError(f"ResNet: stem={self.stem!r} is not one of {STEMS}.")
    block_cls = ResNetBlock if self.block == "basic" else BottleneckResNetBlock
    block = remat.block(block_cls, self.remat)
    conv, norm = _layers(train, self.bn_axis_name, self.dtype)
    if self.stem == "imagenet":
      x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)],
               name="conv_init")(images)
      x = nn.max_pool(nn.relu(norm(name="bn_init")(x)), (3, 3), strides=(2, 2), padding="SAME")
    else:
      x = nn.relu(norm(name="bn_init")(conv(self.num_filters, (3, 3), name="conv_init")(images)))
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = 2 if i > 0 and j == 0 else 1
        name = f"{block_cls.__name__}_{sum(self.stage_sizes[:i]) + j}"  # Flax's own names.
        x = block(self.num_filters * 2**i, strides, self.bn_axis_name, self.dtype,
                  name=name)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    self.sow("intermediates", "features", x)
    if not self.num_classes:  # Headless (a contrastive backbone): the pooled features.
      return x
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
