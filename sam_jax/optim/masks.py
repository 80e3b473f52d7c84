"""Which parameters weight decay and ASAM act on, chosen by the name of each leaf.

A leaf is selected when its own name (the last key of its path) is one of a list:

    decay_mask:  "kernel"            -- every Dense / Conv kernel, the patch embedding's too
    weight_mask: "kernel", "scale"   -- kernels and normalisation scales: what PyTorch
                                        names ``weight``; ASAM's T_w acts on these, and
                                        TE-NAS's NTK differentiates with respect to them

Everything else is left out: biases (also the [heads, head_dim] q/k/v biases of
attention, which a rule ``ndim > 1`` would wrongly select), normalisation biases,
the ViT class token and position embedding.

``path_mask(pattern)`` selects by the whole "/"-joined path instead (``re.search``), e.g.
``"^head/"`` for the classifier of a linear probe (``config.trainable``; ``freeze``).

Sources (docs/paper.md, "Weight decay and ASAM masks"): big_vision decays the leaves
matching ``.*/kernel$`` by default (``big_vision/optax.py``, ``wd_mults``); ASAM's
reference code scales the parameters whose PyTorch name contains ``weight`` (linear
and convolution kernels and normalisation scales, not biases; SamsungLabs/ASAM
``asam.py``); TE-NAS's NTK takes the gradients of the same ``weight`` parameters
(VITA-Group/TENAS ``lib/procedures/ntk.py``; ``analysis.ntk.WEIGHT_LEAVES``).
"""

import re
from typing import Callable, Sequence

import jax
import optax

Mask = Callable[[optax.Params], optax.Params]
DECAY_LEAVES = ("kernel",)
WEIGHT_LEAVES = ("kernel", "scale")


def _key_name(key) -> str:
  return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))


def leaf_name_mask(names: Sequence[str]) -> Mask:
  """params -> a tree of bools, True where the leaf's own name is one of ``names``."""
  wanted = frozenset(names)
  return lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: _key_name(path[-1]) in wanted, params)


def path_mask(pattern: str) -> Mask:
  """params -> a tree of bools, True where ``re.search(pattern, "a/b/kernel")`` finds a match
  in the leaf's path ("" selects every leaf)."""
  regex = re.compile(pattern)
  return lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: regex.search("/".join(map(_key_name, path))) is not None, params)


def both(first: Mask, second: Mask) -> Mask:
  """params -> True where both masks are."""
  return lambda params: jax.tree.map(lambda a, b: a and b, first(params), second(params))


decay_mask = leaf_name_mask(DECAY_LEAVES)
weight_mask = leaf_name_mask(WEIGHT_LEAVES)
