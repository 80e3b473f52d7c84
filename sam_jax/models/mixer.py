"""MLP-Mixer (Tolstikhin et al., 2021), as in the official ``vit_jax``.

    tokens = patches W_s + b_s                           [n, tokens, channels]
    x' = x + DropPath(MLP_tok(LN(x)^T)^T)                mixes across tokens
    x_{l+1} = x' + DropPath(MLP_ch(LN(x')))              mixes across channels
    logits = head(mean over tokens of LN(x_L))

Parameter names follow the official checkpoints: ``stem``, ``MixerBlock_{i}/
{LayerNorm_0, token_mixing/Dense_{0,1}, LayerNorm_1, channel_mixing/Dense_{0,1}}``,
``pre_head_layer_norm``, ``head``. The token-mixing kernels have the number of
patches as a dimension, so a Mixer is tied to its input resolution.

Recorded in ``intermediates``: each block's output (``MixerBlock_{i}/out``), the
post-GELU units of both MLPs (``.../token_mixing/hidden``, ``.../channel_mixing/
hidden``) and the features fed to the head (``features``).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_jax.models import remat
from sam_jax.models.mlp_block import MlpBlock
from sam_jax.models.patches import embed_patches
from sam_jax.models.patch_classifier import PatchClassifier
from sam_jax.models.residual import Branch, PreNormBlock
from sam_jax.models.stochastic_depth import block_rates

# Width letter -> the fields below (Tolstikhin et al., Table 1).
_SIZE_FIELDS = ("hidden_dim", "num_blocks", "tokens_mlp_dim", "channels_mlp_dim")
SIZES: dict[str, dict[str, int]] = {letter: dict(zip(_SIZE_FIELDS, values)) for letter, values in {
    "S": (512, 8, 256, 2048), "B": (768, 12, 384, 3072),
    "L": (1024, 24, 512, 4096), "H": (1280, 32, 640, 5120)}.items()}
# The paper's parameter blocks (see ``param_blocks``).
PARAM_BLOCKS = (
    (r"^stem/", "embedding"),
    (r"^MixerBlock_(\d+)/(?:LayerNorm_0|token_mixing)/", r"block_\1/token_mlp"),
    (r"^MixerBlock_(\d+)/(?:LayerNorm_1|channel_mixing)/", r"block_\1/channel_mlp"),
    (r"^(?:pre_head_layer_norm|head)/", "head"),
)
NPZ_MARKER = "pre_head_layer_norm/scale"  # A key only Mixer checkpoints (.npz) have.


class MixerBlock(PreNormBlock):
  """Token-mixing MLP then channel-mixing MLP (``PreNormBlock``)."""
  tokens_mlp_dim: int
  channels_mlp_dim: int

  def branches(self, train: bool) -> tuple[Branch, Branch]:
    tokens = MlpBlock(self.tokens_mlp_dim, self.dropout_rate, dtype=self.dtype,
                      name="token_mixing")
    channels = MlpBlock(self.channels_mlp_dim, self.dropout_rate, dtype=self.dtype,
                        name="channel_mixing")
    return (lambda y: jnp.swapaxes(tokens(jnp.swapaxes(y, 1, 2), train=train), 1, 2),
            functools.partial(channels, train=train))


class MlpMixer(PatchClassifier):
  """MLP-Mixer classifier on NHWC images; returns logits [batch, num_classes]
  (0: no head, the features); ``dropout_rate`` applies inside both MLPs."""
  hidden_dim: int
  num_blocks: int
  tokens_mlp_dim: int
  channels_mlp_dim: int

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    x = embed_patches(images, self.patch_size, self.hidden_dim, name="stem", dtype=self.dtype)
    block = remat.block(MixerBlock, self.remat)
    for i, rate in enumerate(block_rates(self.stochastic_depth, self.num_blocks)):
      x = block(self.tokens_mlp_dim, self.channels_mlp_dim, dropout_rate=self.dropout_rate,
                drop_path_rate=rate, dtype=self.dtype, name=f"MixerBlock_{i}")(x, train)
    x = nn.LayerNorm(dtype=self.dtype, name="pre_head_layer_norm")(x)
    return self.head(jnp.mean(x, axis=1))
