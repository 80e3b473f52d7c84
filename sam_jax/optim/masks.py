"""Which parameters weight decay and ASAM act on, chosen by the name of each leaf.

A leaf is selected when its own name (the last key of its path) is one of a list:

    decay_mask:  "kernel"            -- every Dense / Conv kernel, the patch embedding's too
    weight_mask: "kernel", "scale"   -- kernels and normalisation scales: what PyTorch
                                        names ``weight``; ASAM's T_w acts on these, and
                                        TE-NAS's NTK differentiates with respect to them

Everything else is left out: biases (also the [heads, head_dim] q/k/v biases of
attention, which a rule ``ndim > 1`` would wrongly select), normalisation biases,
the ViT class token and position embedding.

Sources (docs/paper.md, "Weight decay and ASAM masks"): big_vision decays the leaves
matching ``.*/kernel$`` by default (``big_vision/optax.py``, ``wd_mults``); ASAM's
reference code scales the parameters whose PyTorch name contains ``weight`` (linear
and convolution kernels and normalisation scales, not biases; SamsungLabs/ASAM
``asam.py``); TE-NAS's NTK takes the gradients of the same ``weight`` parameters
(VITA-Group/TENAS ``lib/procedures/ntk.py``; ``analysis.ntk.WEIGHT_LEAVES``).
"""

from typing import Callable, Sequence

import jax
import optax

Mask = Callable[[optax.Params], optax.Params]
DECAY_LEAVES = ("kernel",)
WEIGHT_LEAVES = ("kernel", "scale")


def _leaf_name(path) -> str:
  last = path[-1]
  return str(getattr(last, "key", getattr(last, "name", getattr(last, "idx", last))))


def leaf_name_mask(names: Sequence[str]) -> Mask:
  """params -> a tree of bools, True where the leaf's own name is one of ``names``."""
  names = frozenset(names)
  return lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: _leaf_name(path) in names, params)


decay_mask = leaf_name_mask(DECAY_LEAVES)
weight_mask = leaf_name_mask(WEIGHT_LEAVES)
