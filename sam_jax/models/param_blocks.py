"""The paper's parameter blocks: embedding, each attention / token-mixing / MLP block, head.

The per-block analyses (Table 3: diagonal Hessian blocks, weight norms) split the
parameters into named blocks by matching their "/"-joined paths against ordered
regular expressions; the first match names the block (``\\1`` is the block number).
A LayerNorm belongs to the sub-block it normalises the input of. Blocks come out in
network order: embedding, then by block number, then head.

    ViT:    embedding (patch embedding, cls, position embedding),
            block_{i}/attention, block_{i}/mlp, head (final LayerNorm, pre_logits, head)
    Mixer:  embedding (stem), block_{i}/token_mlp, block_{i}/channel_mlp,
            head (pre-head LayerNorm, head)
    ResNet: embedding (stem conv + BN), block_{i} (one residual block), head

Other model names group by the top-level module.
"""

import re
from typing import Any, Mapping

from flax import traverse_util

# (pattern, block name). A pattern without a block-number group "(\d+)" names a block that
# comes before or after all numbered blocks, according to its place in the list.
RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "vit": (
        (r"^(?:embedding|cls|Transformer/posembed_input)/", "embedding"),
        (r"^Transformer/encoderblock_(\d+)/(?:LayerNorm_0|MultiHeadDotProductAttention_0)/",
         r"block_\1/attention"),
        (r"^Transformer/encoderblock_(\d+)/(?:LayerNorm_1|MlpBlock_0)/", r"block_\1/mlp"),
        (r"^(?:Transformer/encoder_norm|pre_logits|head)/", "head"),
    ),
    "mixer": (
        (r"^stem/", "embedding"),
        (r"^MixerBlock_(\d+)/(?:LayerNorm_0|token_mixing)/", r"block_\1/token_mlp"),
        (r"^MixerBlock_(\d+)/(?:LayerNorm_1|channel_mixing)/", r"block_\1/channel_mlp"),
        (r"^(?:pre_head_layer_norm|head)/", "head"),
    ),
    "resnet": (
        (r"^(?:conv_init|bn_init)/", "embedding"),
        (r"^(?:Bottleneck)?ResNetBlock_(\d+)/", r"block_\1"),
        (r"^head/", "head"),
    ),
}


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
  """A nested dict as ``{"a/b/c": leaf}``, in the dict's own order."""
  return traverse_util.flatten_dict(dict(tree), sep="/")


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of ``flatten``."""
  return traverse_util.unflatten_dict(dict(flat), sep="/")


def natural_key(name: str) -> tuple:
  """Sort key that orders ``block_2`` before ``block_10``."""
  return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def partition(params: Mapping[str, Any], model_name: str) -> dict[str, tuple[str, ...]]:
  """Block name -> the flat paths (see ``flatten``) of its parameters, in network order.

  Raises:
    ValueError: a parameter of a known model family matches no rule.
  """
  paths = list(flatten(params))
  blocks: dict[str, list[str]] = {}
  if model_name not in RULES:
    for path in paths:
      blocks.setdefault(path.split("/")[0], []).append(path)
    return {b: tuple(p) for b, p in blocks.items()}
  rules = RULES[model_name]
  first_numbered = min(i for i, (pattern, _) in enumerate(rules) if r"(\d+)" in pattern)
  keys: dict[str, tuple[int, int, int]] = {}
  for path in paths:
    for i, (pattern, name) in enumerate(rules):
      match = re.match(pattern, path + "/")
      if match:
        block = match.expand(name)
        keys[block] = ((1, int(match.group(1)), i) if match.groups() else
                       (0 if i < first_numbered else 2, 0, i))
        blocks.setdefault(block, []).append(path)
        break
    else:
      raise ValueError(f"param_blocks: parameter {path!r} of model {model_name!r} matches no "
                       f"block rule; rules: {[p for p, _ in rules]}.")
  return {b: tuple(blocks[b]) for b in sorted(blocks, key=keys.__getitem__)}
