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

Each family's rules are ``param_blocks`` in its ``sam_jax.models.Family`` entry (defined
in its module); with no rules, parameters group by their top-level module.

``flatten`` / ``unflatten`` are the "/"-joined parameter paths used everywhere (the
official ``.npz`` keys are the same paths). ``module_blocks`` names a module (e.g. one
whose output the analyses measure) by the blocks of its parameters, so every figure
labels blocks the same way.
"""

import os
import re
from typing import Any, Mapping, Sequence

from flax import traverse_util


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
  """A nested dict as ``{"a/b/c": leaf}``, in the dict's own order."""
  return traverse_util.flatten_dict(dict(tree), sep="/")


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of ``flatten``."""
  return traverse_util.unflatten_dict(dict(flat), sep="/")


def natural_key(name: str) -> tuple:
  """Sort key that orders ``block_2`` before ``block_10``."""
  return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def partition(params: Mapping[str, Any], rules: Sequence[tuple[str, str]]
              ) -> dict[str, tuple[str, ...]]:
  """Block name -> the flat paths (see ``flatten``) of its parameters, in network order.

  ``rules``: (pattern, block name) pairs; a pattern without a block-number group
  "(\\d+)" names a block that comes before or after all numbered blocks, according to
  its place in the list. No rules: group by top-level module.

  Raises:
    ValueError: a parameter matches no rule.
  """
  paths = list(flatten(params))
  blocks: dict[str, list[str]] = {}
  if not rules:
    for path in paths:
      blocks.setdefault(path.split("/")[0], []).append(path)
    return {b: tuple(p) for b, p in blocks.items()}
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
      raise ValueError(f"param_blocks: parameter {path!r} matches no block rule; rules: "
                       f"{[p for p, _ in rules]}.")
  return {b: tuple(blocks[b]) for b in sorted(blocks, key=keys.__getitem__)}


def module_blocks(modules: Sequence[str], blocks: Mapping[str, Sequence[str]]
                  ) -> dict[str, str]:
  """Each module path -> the block name of its parameters (``blocks``: ``partition``'s
  output), in the blocks' (network) order: their one block, else the leading "/"-parts
  their blocks share (an encoder block holding ``block_0/attention`` and ``block_0/mlp``
  is ``block_0``). A module with no parameters in ``blocks``, or whose blocks share
  nothing, keeps its path and comes last."""
  rank = {path: (i, name) for i, (name, paths) in enumerate(blocks.items()) for path in paths}
  found = {m: sorted(rank[p] for p in rank if p.startswith(m + "/")) for m in modules}
  names = {m: "/".join(os.path.commonprefix([n.split("/") for _, n in f])) or m
           for m, f in found.items()}
  return {m: names[m] for m in sorted(modules, key=lambda m: found[m][:1] or [(len(rank), m)])}
