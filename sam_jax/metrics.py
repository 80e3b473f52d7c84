"""Classification metrics of logits: cross-entropy, top-1, masked sums, and their totals.

For logits z_i [K] and labels given either as integers y_i [n] (target t_i = e_{y_i},
the one-hot vector) or as probability vectors t_i [n, K] (soft labels, e.g. of mixup:
t_i = a e_{y_i} + (1 - a) e_{y_j}), s the sigmoid:

    softmax_xent   l_i = -sum_k t_ik log softmax(z_i)_k                        (float32)
                       (= -log softmax(z_i)[y_i] for an integer label)
    sigmoid_xent   l_i = -sum_k [t_ik log s(z_ik) + (1 - t_ik) log s(-z_ik)]   (float32)
    top-1          c_i = 1[argmax z_i = y_i], y_i = argmax_k t_ik for a soft label
                       (the first such k on a tie)

Labels of the same rank as the logits are probability vectors; integer labels take
optax's integer-label softmax cross-entropy (no one-hot vector is formed) and, for the
sigmoid loss, their one-hot vectors.

The cross-entropy is the softmax one unless a ``loss`` name (``LOSSES``) says otherwise:
the ViT/Mixer paper configs train with ``sigmoid_xent``, one sigmoid per class, as the
original ViT pipeline and big_vision (docs/paper.md R18).

Eval batches are padded to a fixed size; their ``mask`` m_i is 1 on real examples and 0
on padding, so a pass over a split sums ``m_i l_i``, ``m_i c_i`` and ``m_i`` and divides
at the end (``sum_over``), each real example counted exactly once.

TensorBoard tags are ``<group>/<name>`` (``tagged``: ``train/loss``, ``eval/accuracy``), so
TensorBoard shows one section per group, as clu's and big_vision's runs do. Runs written
before that hold flat tags (``train_loss``, ``eval_accuracy``); ``grouped_tag`` maps both
forms to the grouped one, for every reader of the event files.
"""

from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import optax

Sums = Mapping[str, jax.Array]
TAG_GROUPS = ("train", "eval")  # The groups of the TensorBoard tags (``tagged``).


def _soft(logits: jax.Array, labels: jax.Array) -> bool:
  """Are ``labels`` probability vectors [..., K] (else integer labels [...])?"""
  return labels.ndim == logits.ndim


def _softmax_xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
  if _soft(logits, labels):
    return optax.softmax_cross_entropy(logits, labels.astype(logits.dtype))
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _sigmoid_xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
  targets = (labels.astype(logits.dtype) if _soft(logits, labels)
             else jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype))
  return optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1)


LOSSES = {"softmax_xent": _softmax_xent, "sigmoid_xent": _sigmoid_xent}


def check_loss(loss: str) -> None:
  """ValueError unless ``loss`` is a ``LOSSES`` name."""
  if loss not in LOSSES:
    raise ValueError(f"loss={loss!r} is not one of {sorted(LOSSES)}.")


def cross_entropies(logits: jax.Array, labels: jax.Array,
                    loss: str = "softmax_xent") -> jax.Array:
  """Per-example cross-entropy (``loss``) of integer labels [n] or probability labels [n, K],
  in float32: [n]."""
  check_loss(loss)
  return LOSSES[loss](logits.astype(jnp.float32), labels)


def cross_entropy(logits: jax.Array, labels: jax.Array, loss: str = "softmax_xent") -> jax.Array:
  """Mean cross-entropy (``loss``) of integer or probability labels, in float32."""
  return cross_entropies(logits, labels, loss).mean()


def correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example top-1 correctness (bool [n]); a probability label counts as its argmax."""
  if _soft(logits, labels):
    labels = jnp.argmax(labels, axis=-1)
  return jnp.argmax(logits, axis=-1) == labels


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean top-1 accuracy."""
  return jnp.mean(correct(logits, labels))


def masked_sums(logits: jax.Array, labels: jax.Array, mask: jax.Array,
                loss: str = "softmax_xent") -> dict[str, jax.Array]:
  """``{"loss_sum", "correct", "count"}``: sums over the real (mask 1) examples."""
  return {"loss_sum": jnp.sum(cross_entropies(logits, labels, loss) * mask),
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


def tagged(group: str, values: Mapping[str, float]) -> dict[str, float]:
  """``values`` under TensorBoard tags ``group/name``; ``group`` one of ``TAG_GROUPS``."""
  return {f"{group}/{name}": value for name, value in values.items()}


def grouped_tag(tag: str) -> str:
  """A flat tag of an older run as ``tagged`` writes it (``train_loss`` -> ``train/loss``);
  any other tag (grouped, or ungrouped as clu's ``steps_per_sec``) as it is."""
  group, sep, name = tag.partition("_")
  return f"{group}/{name}" if sep and group in TAG_GROUPS and "/" not in tag else tag
