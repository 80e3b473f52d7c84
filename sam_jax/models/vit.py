"""Vision Transformer (Dosovitskiy et al., 2021), as in the official ``vit_jax``.

    tokens = [cls; patches W_e + b_e] + pos_embedding
    x_{l+1}' = x_l + DropPath(Dropout(MHSA(LN(x_l))))
    x_{l+1}  = x_{l+1}' + DropPath(MLP(LN(x_{l+1}')))
    logits = head(pre_logits(LN(x_L)[cls] or mean over tokens))

Parameter names follow the official linen checkpoints: ``embedding``, ``cls``,
``Transformer/posembed_input/pos_embedding``, ``Transformer/encoderblock_{i}/
{LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0}``,
``Transformer/encoder_norm``, optional ``pre_logits``, ``head``. LayerNorm uses
Flax's default epsilon 1e-6, GELU the tanh approximation.

Recorded in ``intermediates`` (``mutable=["intermediates"]``): each block's output
(``encoderblock_{i}/out``), post-GELU MLP units (``.../MlpBlock_0/hidden``), the
attention weights [batch, heads, q, k] (``.../MultiHeadDotProductAttention_0/
attention_weights``) and the features fed to the head (``features``).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_jax.models import remat
from sam_jax.models.attention import MultiHeadDotProductAttention
from sam_jax.models.mlp_block import MlpBlock
from sam_jax.models.patches import embed_patches
from sam_jax.models.patch_classifier import PatchClassifier
from sam_jax.models.residual import Branch, PreNormBlock
from sam_jax.models.stochastic_depth import block_rates

# Width letter -> (hidden_size, mlp_dim, num_heads, num_layers).
SIZES = {
    "Ti": dict(hidden_size=192, mlp_dim=768, num_heads=3, num_layers=12),
    "S": dict(hidden_size=384, mlp_dim=1536, num_heads=6, num_layers=12),
    "B": dict(hidden_size=768, mlp_dim=3072, num_heads=12, num_layers=12),
    "L": dict(hidden_size=1024, mlp_dim=4096, num_heads=16, num_layers=24),
    "H": dict(hidden_size=1280, mlp_dim=5120, num_heads=16, num_layers=32),
}
CLASSIFIERS = ("token", "gap")
# The paper's parameter blocks (see ``param_blocks``): a LayerNorm belongs to the sub-block it
# normalises the input of.
PARAM_BLOCKS = (
    (r"^(?:embedding|cls|Transformer/posembed_input)/", "embedding"),
    (r"^Transformer/encoderblock_(\d+)/(?:LayerNorm_0|MultiHeadDotProductAttention_0)/",
     r"block_\1/attention"),
    (r"^Transformer/encoderblock_(\d+)/(?:LayerNorm_1|MlpBlock_0)/", r"block_\1/mlp"),
    (r"^(?:Transformer/encoder_norm|pre_logits|head)/", "head"),
)
NPZ_MARKER = "Transformer/encoder_norm/scale"  # A key only ViT checkpoints (.npz) have.


class AddPositionEmbs(nn.Module):
  """x + pos_embedding, a learned [1, tokens, width] table (init N(0, 0.02^2))."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pos = self.param("pos_embedding", nn.initializers.normal(stddev=0.02), (1,) + x.shape[1:])
    return x + pos.astype(x.dtype)


class Encoder1DBlock(PreNormBlock):
  """Pre-LayerNorm transformer block: self-attention then the MLP (``PreNormBlock``)."""
  mlp_dim: int
  num_heads: int
  attention_dropout_rate: float = 0.0

  def branches(self, train: bool) -> tuple[Branch, Branch]:
    def attention(y):
      y = MultiHeadDotProductAttention(self.num_heads, self.attention_dropout_rate, self.dtype,
                                       name="MultiHeadDotProductAttention_0")(y, train=train)
      return nn.Dropout(self.dropout_rate)(y, deterministic=not train)

    mlp = MlpBlock(self.mlp_dim, self.dropout_rate, kernel_init=nn.initializers.xavier_uniform(),
                   bias_init=nn.initializers.normal(stddev=1e-6), dtype=self.dtype,
                   name="MlpBlock_0")
    return attention, functools.partial(mlp, train=train)


class _Layers(nn.Module):
  """What every block of an ``Encoder`` is built with."""
  mlp_dim: int
  num_heads: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Any = jnp.float32


class Encoder(_Layers, kw_only=True):
  """Position embedding, ``num_layers`` blocks (stochastic depth rising linearly to
  ``stochastic_depth``) and the final LayerNorm."""
  num_layers: int
  stochastic_depth: float = 0.0
  remat: bool = False  # Rematerialise the blocks (``remat.py``).

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = AddPositionEmbs(name="posembed_input")(x)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    block = remat.block(Encoder1DBlock, self.remat)
    for i, rate in enumerate(block_rates(self.stochastic_depth, self.num_layers)):
      x = block(mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                         dropout_rate=self.dropout_rate,
                         attention_dropout_rate=self.attention_dropout_rate, dtype=self.dtype,
                         drop_path_rate=rate, name=f"encoderblock_{i}")(x, train)
    return nn.LayerNorm(dtype=self.dtype, name="encoder_norm")(x)


class VisionTransformer(PatchClassifier):
  """ViT classifier on NHWC images; returns logits [batch, num_classes]
  (0: no head, the features).

  Attributes:
    classifier: ``"token"`` (class token, official default) or ``"gap"`` (mean of
      the patch tokens, no class token).
    representation_size: width of the tanh ``pre_logits`` layer, or None for none.
  """
  hidden_size: int
  mlp_dim: int
  num_heads: int
  num_layers: int
  classifier: str = "token"
  representation_size: int | None = None
  attention_dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    if self.classifier not in CLASSIFIERS:
      raise ValueError(f"VisionTransformer: classifier={self.classifier!r} is not one of "
                       f"{CLASSIFIERS}.")
    x = embed_patches(images, self.patch_size, self.hidden_size, name="embedding",
                      dtype=self.dtype)
    if self.classifier == "token":
      cls = self.param("cls", nn.initializers.zeros, (1, 1, self.hidden_size))
      cls = jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, self.hidden_size))
      x = jnp.concatenate([cls, x], axis=1)
    x = Encoder(num_layers=self.num_layers, mlp_dim=self.mlp_dim, num_heads=self.num_heads,
                dropout_rate=self.dropout_rate,
                attention_dropout_rate=self.attention_dropout_rate,
                stochastic_depth=self.stochastic_depth, dtype=self.dtype, remat=self.remat,
                name="Transformer")(x, train=train)
    x = x[:, 0] if self.classifier == "token" else jnp.mean(x, axis=1)
    if self.representation_size is not None:
      x = jnp.tanh(nn.Dense(self.representation_size, dtype=self.dtype, name="pre_logits")(x))
    return self.head(x)
