"""Training a part of the parameters (a linear probe): the others get exactly zero updates.

``freeze(inner, trainable)`` hands ``inner`` (SAM, clipping, the base optimizer) gradients
that are zero on the frozen leaves (those ``trainable`` marks False), wraps the
``grad_fn`` extra argument likewise, and zeroes ``inner``'s updates there. So a frozen
parameter takes no part in SAM's ascent (its perturbation is 0 and the gradient norm is
that of the trained ones), gets no weight decay, momentum or Adam moment, and never
moves. The mask is a function of the parameter names (``masks.path_mask``), known when
the step is traced: the zeros are constants, and XLA drops the frozen parameters' backward
pass where nothing else reads it.

Frozen updates are -0.0, the exact identity of floating-point addition (w + (-0.0) = w
for every w, -0.0 included), so ``optax.apply_updates`` leaves them bitwise unchanged.
Decayed weights are better masked at their source too (``optimizer.create_optimizer``
restricts the decay mask to the trained leaves), so that no optimizer state accumulates
on frozen leaves.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from sam_jax.optim import masks


def zero_frozen(tree: Any, mask: Any) -> Any:
  """``tree`` with zeros (constants, not a function of the leaf) where ``mask`` is False."""
  return jax.tree.map(lambda x, m: x if m else jnp.zeros_like(x), tree, mask)


def freeze(inner: optax.GradientTransformationExtraArgs,
           trainable: masks.Mask) -> optax.GradientTransformationExtraArgs:
  """``inner`` on the leaves ``trainable(params)`` marks True; the others never change.

  Raises:
    ValueError: at update, no ``params`` (the mask is a function of their names).
  """

  def update_fn(updates, state, params=None, *, grad_fn=None, **extra):
    if params is None:
      raise ValueError("freeze: update() needs params (the trained leaves are chosen by name).")
    mask = trainable(params)
    frozen_fn = None if grad_fn is None else (lambda p: zero_frozen(grad_fn(p), mask))
    updates, state = inner.update(zero_frozen(updates, mask), state, params,
                                  grad_fn=frozen_fn, **extra)
    return jax.tree.map(lambda u, m: u if m else jnp.full_like(u, -0.0), updates, mask), state

  return optax.GradientTransformationExtraArgs(inner.init, update_fn)
