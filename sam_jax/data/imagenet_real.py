"""ImageNet-ReaL accuracy (Beyer et al. 2020, "Are we done with ImageNet?").

ReaL re-annotates each of the 50,000 ImageNet validation images with the set S_i
of classes that are correct for it (TFDS ``imagenet2012_real``, feature
``real_label``; the input pipeline gives it as a multi-hot ``batch["real_label"]``
[B, 1000]). A prediction is correct if it lies in the set; images whose set is
empty are left out:

  ReaL accuracy = sum_i [S_i nonempty] [argmax logits_i in S_i] / sum_i [S_i nonempty].
"""

import jax
import jax.numpy as jnp


def correct_counts(logits: jax.Array, real_labels: jax.Array,
                   mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """``(correct, counted)`` over a batch: sums, so batches and devices add up.

  Args:
    logits: [B, C] scores.
    real_labels: [B, C] multi-hot (bool or 0/1) sets of correct classes.
    mask: optional [B]; entries with mask 0 (padding) are left out.
  """
  real = jnp.asarray(real_labels).astype(bool)
  counted = jnp.any(real, axis=-1)
  if mask is not None:
    counted &= jnp.asarray(mask) > 0
  pred = jnp.argmax(logits, axis=-1)
  hit = jnp.take_along_axis(real, pred[:, None], axis=-1)[:, 0]
  return jnp.sum(hit & counted), jnp.sum(counted)


def accuracy(logits: jax.Array, real_labels: jax.Array, mask: jax.Array | None = None) -> float:
  """ReaL accuracy of one set of predictions (see ``correct_counts``)."""
  correct, counted = correct_counts(logits, real_labels, mask)
  if int(counted) == 0:
    raise ValueError("ReaL accuracy: no example has a real label (all sets empty or masked).")
  return float(correct) / float(counted)
