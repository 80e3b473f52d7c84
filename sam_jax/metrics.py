"""Classification metrics of logits: cross-entropy, top-1, masked sums, and their totals.

For logits z_i [K] and integer labels y_i:

    cross-entropy  l_i = -log softmax(z_i)[y_i]     (computed in float32)
    top-1          c_i = 1[argmax z_i = y_i]

Eval batches are padded to a fixed size; their ``mask`` m_i is 1 on real examples and 0
on padding, so a pass over a split sums ``m_i l_i``, ``m_i c_i`` and ``m_i`` and divides
at the end (``sum_over``), each real example counted exactly once.
"""

from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import optax

Sums = Mapping[str, jax.Array]


def cross_entropies(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels, in float32: [n]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels, in float32."""
  return cross_entropies(logits, labels).mean()


def correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example top-1 correctness (bool [n])."""
  return jnp.argmax(logits, axis=-1) == labels


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean top-1 accuracy."""
  return jnp.mean(correct(logits, labels))


def masked_sums(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
  """``{"loss_sum", "correct", "count"}``: sums over the real (mask 1) examples."""
  return {"loss_sum": jnp.sum(cross_entropies(logits, labels) * mask),
          "correct": jnp.sum(correct(logits, labels) * mask),
          "count": jnp.sum(mask)}


def sum_over(sums_fn: Callable[[Any], Sums], items: Iterable[Any], *,
             stop: Callable[[dict[str, float]], bool] | None = None) -> dict[str, float]:
  """Totals of ``sums_fn(item)`` over ``items``, added on the device and read once at the end.

  ``stop(totals)``, if given, is asked after each item (reading the totals every time)
  and ends the pass when true.
  """
  totals = None
  for item in items:
    sums = sums_fn(item)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if stop is not None and stop(_floats(totals)):
      break
  if totals is None:
    raise ValueError("metrics.sum_over: no batches.")
  return _floats(totals)


def _floats(totals: Sums) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(dict(totals)).items()}
