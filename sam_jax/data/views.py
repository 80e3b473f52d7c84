"""The two augmented views of an image for contrastive pretraining (SimCLR), as TensorFlow ops.

Each view is the training crop of ``preprocessing.decode_and_inception_crop`` (Inception
crop + flip, ``config.pp``) followed by SimCLR's colour distortion (google-research/simclr
``data_util.py``, ``random_color_jitter``, ``color_jitter``):

- with probability ``color_jitter_prob`` (0.8), colour jitter of strength s: brightness
  (a factor in [max(0, 1 - 0.8 s), 1 + 0.8 s], SimCLR v2's multiplicative form), contrast
  and saturation (factors in [max(0, 1 - 0.8 s), 1 + 0.8 s]) and hue (a shift in
  [-0.2 s, 0.2 s]), in a random order, each followed by clipping to [0, 1];
- then, with probability ``grayscale_prob`` (0.2), grey (the luma, on all three channels).

No Gaussian blur: SimCLR's CIFAR-10 command omits it (its README, ``--use_blur=False``) at
32 px. Every draw is stateless: view v of the example at position p takes its seeds from
``stateless_split([key, p])[v]`` (split again into crop and colour seeds), so a stream of
views resumes exactly; the single-view stream keeps its seed ``[key, p]`` unchanged.
"""

import dataclasses
from typing import Any

import tensorflow as tf

from sam_jax.data import preprocessing

VIEW_KEYS = ("image", "image2")  # The batch keys of the two views.


@dataclasses.dataclass(frozen=True)
class ViewOptions:
  """``config.contrastive``'s colour distortion (s, and the two probabilities)."""
  color_jitter: float = 0.5
  color_jitter_prob: float = 0.8
  grayscale_prob: float = 0.2

  @classmethod
  def from_config(cls, config: Any) -> "ViewOptions | None":
    """The options of a data-complete config; None unless ``config.contrastive.method`` is set
    (one view per image)."""
    section = config.contrastive
    if not section.method:
      return None
    return cls(section.color_jitter, section.color_jitter_prob, section.grayscale_prob)


def _jitter(image: tf.Tensor, seeds: tf.Tensor, strength: float) -> tf.Tensor:
  """Brightness, contrast, saturation and hue in the order of ``seeds[0]``; op k draws
  from ``seeds[1 + k]``."""
  scale = 0.8 * strength
  low, high = max(0.0, 1.0 - scale), 1.0 + scale
  ops = [
      lambda x, s: x * tf.random.stateless_uniform([], s, low, high),
      lambda x, s: tf.image.stateless_random_contrast(x, low, high, s),
      lambda x, s: tf.image.stateless_random_saturation(x, low, high, s),
      lambda x, s: tf.image.stateless_random_hue(x, 0.2 * strength, s),
  ]
  order = tf.argsort(tf.random.stateless_uniform([len(ops)], seeds[0]))
  for position in range(len(ops)):
    branches = [lambda op=op, k=k, x=image: op(x, seeds[1 + k]) for k, op in enumerate(ops)]
    image = tf.clip_by_value(tf.switch_case(order[position], branches), 0.0, 1.0)
  return image


def color_distortion(image: tf.Tensor, seed: tf.Tensor, views: ViewOptions) -> tf.Tensor:
  """SimCLR's colour distortion of a float image [H, W, 3] in [0, 1], from a seed [2]."""
  seeds = tf.random.split(seed, 6)
  draws = tf.random.stateless_uniform([2], seeds[0])
  if views.color_jitter > 0:
    image = tf.cond(draws[0] < views.color_jitter_prob,
                    lambda: _jitter(image, seeds[1:], views.color_jitter), lambda: image)
  grey = lambda: tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])
  return tf.cond(draws[1] < views.grayscale_prob, grey, lambda: image)


def decode_two_views(image_bytes: tf.Tensor, seed: tf.Tensor,
                     options: preprocessing.PreprocessOptions,
                     views: ViewOptions) -> dict[str, tf.Tensor]:
  """``{"image", "image2"}``: two float32 [S, S, 3] views in [-1, 1] of encoded bytes."""
  out = {}
  for key, view_seed in zip(VIEW_KEYS, tf.unstack(tf.random.split(seed, 2))):
    crop_seed, color_seed = tf.unstack(tf.random.split(view_seed, 2))
    image = preprocessing.decode_and_inception_crop(image_bytes, crop_seed, options)
    image = color_distortion((image + 1.0) * 0.5, color_seed, views)
    out[key] = tf.clip_by_value(image * 2.0 - 1.0, -1.0, 1.0)
  return out
