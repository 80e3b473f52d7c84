"""An infinite training stream made of epochs, that can start at any position.

Epoch e is a dataset of n records (each a fresh shuffle, seeded by e). The
stream is epoch 0, epoch 1, ... with positions 0, 1, 2, ...; started at
position p it begins with epoch p // n, skipping its first p mod n records, and
never builds the epochs before it.
"""

from typing import Callable

import tensorflow as tf

FOREVER = 2**62  # Epochs or positions: an infinite stream in practice.


def stream_from(start: int, epoch_size: int,
                epoch: Callable[[tf.Tensor], tf.data.Dataset]) -> tf.data.Dataset:
  """``(position, record)`` pairs from position ``start`` on; ``epoch(e)`` gives epoch e."""
  first_epoch, offset = divmod(start, epoch_size)

  def from_offset(e: tf.Tensor) -> tf.data.Dataset:
    return epoch(e).skip(tf.where(e == first_epoch, tf.constant(offset, tf.int64), 0))

  records = tf.data.Dataset.range(first_epoch, FOREVER).flat_map(from_offset)
  return tf.data.Dataset.zip(tf.data.Dataset.range(start, FOREVER), records)
