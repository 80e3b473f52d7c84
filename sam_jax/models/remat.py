"""Rematerialisation of a model's residual blocks (the models' ``remat`` field).

A rematerialised block keeps only its input for the backward pass and recomputes its
activations there (``jax.checkpoint`` with the policy ``nothing_saveable``): activation
memory falls from every block's intermediates to one input per block, for one more forward
pass of the blocks (about a third more FLOPs per step). Values and gradients are unchanged;
parameter names too (the blocks keep theirs).
"""

from typing import TypeVar

import flax.linen as nn
import jax

POLICY = jax.checkpoint_policies.nothing_saveable
Block = TypeVar("Block", bound=type[nn.Module])


def block(cls: Block, remat: bool) -> Block:
  """``cls``, rematerialised if ``remat``; call it as ``block(x, train)`` (``train`` is static)."""
  return nn.remat(cls, static_argnums=(2,), policy=POLICY) if remat else cls
