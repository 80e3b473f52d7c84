r"""Mixup (Zhang et al., 2018) of a batch with itself rolled by one, as big_vision does.

For a batch of B images x_i and one-hot labels e_{y_i} (indices mod B):

    x'_i = a x_i + (1 - a) x_{i-1},    y'_i = a e_{y_i} + (1 - a) e_{y_{i-1}},

one weight a per batch: b ~ Beta(alpha, alpha) drawn as G1 / (G1 + G2), G1, G2 ~
Gamma(alpha, 1) (float64, stateless from the batch's seed), and a = max(b, 1 - b), so
the example's own image dominates and a >= 1/2. Its mean is

    E[a] = 1/2 + E|b - 1/2| = 1/2 + 4^(-alpha) / (alpha B(alpha, alpha))

(1/2 as alpha -> inf, 3/4 at alpha = 1, 1 as alpha -> 0). Source: big_vision
``big_vision/utils.py`` ``get_mixup`` (docs/paper.md §10): its ``p`` is this alpha; it
mixes ``jnp.roll(x, 1, axis=0)`` of the global batch inside the step, images and labels.
Here the mixing runs on the host, in tf.data, on each process's batch (one process: the
same as big_vision; several: each process rolls and draws on its own part).
"""

import tensorflow as tf


def weight(seed: tf.Tensor, alpha: float) -> tf.Tensor:
  """a = max(b, 1 - b), b ~ Beta(alpha, alpha) from ``seed`` [2] (float32 scalar; alpha > 0)."""
  g = tf.random.stateless_gamma([2], seed=seed, alpha=tf.constant(alpha, tf.float64),
                                dtype=tf.float64)
  total = g[0] + g[1]
  b = tf.where(total > 0, g[0] / tf.where(total > 0, total, 1.0), 1.0)  # Both 0: underflow.
  return tf.cast(tf.maximum(b, 1.0 - b), tf.float32)


def mix(batch: dict[str, tf.Tensor], a: tf.Tensor, num_classes: int) -> dict[str, tf.Tensor]:
  """``{"image": a x + (1 - a) roll(x), "label": float32 [B, num_classes]}`` of int labels."""
  onehot = tf.one_hot(batch["label"], num_classes, dtype=tf.float32)
  mixed = lambda v: a * v + (1.0 - a) * tf.roll(v, shift=1, axis=0)
  return {**batch, "image": mixed(batch["image"]), "label": mixed(onehot)}
