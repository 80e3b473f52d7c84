"""Weight decay as an L2 penalty in the loss, so that it is part of the SAM ascent.

    L_reg(w)  = L(w) + wd/2 Σ_{masked} ||w||²
    ∇L_reg(w) = ∇L(w) + wd · w          (on the masked leaves)

google-research/sam adds this penalty to the training loss (``train_step`` of
``sam_jax/training_utils/flax_training.py``), so SAM normalises ∇L(w) + wd·w and takes
the perturbed gradient ∇L(w+e) + wd·(w+e). ``l2_in_loss(tx, wd)`` hands ``tx`` exactly
these gradients from those of the data loss: it adds wd·w to the incoming gradient
and wraps the ``grad_fn`` extra argument likewise. Decoupled decay (``optax.adamw``,
``optax.add_decayed_weights`` after SAM) instead leaves the ascent to the data loss.
"""

import jax
import jax.numpy as jnp
import optax

from sam_jax.optim import masks


def l2_in_loss(inner: optax.GradientTransformationExtraArgs, weight_decay: float,
               mask: masks.Mask = masks.decay_mask) -> optax.GradientTransformationExtraArgs:
  """``inner`` applied to the gradients of L + wd/2 ||w||² (masked leaves).

  Raises:
    ValueError: ``weight_decay`` < 0; at update, no ``params``.
  """
  if not weight_decay >= 0:
    raise ValueError(f"l2_in_loss: weight_decay must be >= 0, got {weight_decay!r}.")

  def penalty_gradient(grads, params):
    return jax.tree.map(
        lambda g, w, m: (g.astype(jnp.float32) + weight_decay * w.astype(jnp.float32)
                         ).astype(g.dtype) if m else g, grads, params, mask(params))

  def update_fn(updates, state, params=None, *, grad_fn=None, **extra):
    if params is None:
      raise ValueError("l2_in_loss: update() needs params (the penalty's gradient is wd * w).")
    if extra.get("sam_gradient"):  # Its micro-batches' gradients held the penalty already.
      return inner.update(updates, state, params, grad_fn=grad_fn, **extra)
    regularised_fn = None if grad_fn is None else (
        lambda p: penalty_gradient(grad_fn(p), p))
    return inner.update(penalty_gradient(updates, params), state, params,
                        grad_fn=regularised_fn, **extra)

  return optax.GradientTransformationExtraArgs(inner.init, update_fn)
