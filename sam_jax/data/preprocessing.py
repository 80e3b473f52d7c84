"""The paper's per-example image preprocessing, as TensorFlow ops for tf.data.

Training: Inception crop (a random window of the image with area fraction in
``crop_area_range`` and width/height in ``aspect_ratio_range``, decoded together
with the crop for JPEGs), resize to ``image_size`` x ``image_size``, random
horizontal flip (then, if configured, RandAugment on these [0, 255] pixels:
``sam_jax.data.randaugment``, applied by ``tf_pipeline``). Evaluation: resize the
smaller side to ``eval_resize`` (256 for 224), then take the central ``image_size`` x
``image_size`` crop. Both map pixels p in [0, 255] to p / 127.5 - 1 in [-1, 1].

Randomness is stateless: each example's crop and flip are a function of a seed
``[key, position]``, so a stream is reproducible and can be resumed anywhere.
"""

import dataclasses
from typing import Any

import tensorflow as tf

RESIZE_METHODS = ("bilinear", "bicubic", "area", "nearest", "lanczos3")


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
  """``config.pp`` with its defaults; ``eval_resize=None`` means ``image_size * 8 // 7``."""
  image_size: int
  crop_area_range: tuple[float, float] = (0.08, 1.0)
  aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3)
  resize_method: str = "bilinear"
  eval_resize: int | None = None
  flip: bool = True
  skip_corrupt: bool = False

  def __post_init__(self):
    lo, hi = self.crop_area_range
    if not 0 < lo <= hi <= 1:
      raise ValueError(f"config.pp.crop_area_range={self.crop_area_range} must satisfy "
                       "0 < min <= max <= 1 (fractions of the image area).")
    lo, hi = self.aspect_ratio_range
    if not 0 < lo <= hi:
      raise ValueError(f"config.pp.aspect_ratio_range={self.aspect_ratio_range} must satisfy "
                       "0 < min <= max (width / height).")
    if self.resize_method not in RESIZE_METHODS:
      raise ValueError(f"config.pp.resize_method={self.resize_method!r} must be one of "
                       f"{RESIZE_METHODS}.")
    if self.eval_resize is not None and self.eval_resize < self.image_size:
      raise ValueError(f"config.pp.eval_resize={self.eval_resize} must be >= config.image_size="
                       f"{self.image_size} (the central crop is taken after the resize).")

  @property
  def eval_smaller_side(self) -> int:
    return self.eval_resize or self.image_size * 8 // 7

  @classmethod
  def from_config(cls, config: Any) -> "PreprocessOptions":
    """Reads ``config.image_size`` and ``config.pp`` (keys it lacks: the fields' defaults here).

    Unknown keys are an error.
    """
    pp = dict(config.pp)
    fields = {f.name for f in dataclasses.fields(cls)} - {"image_size"}
    unknown = sorted(set(pp) - fields)
    if unknown:
      raise ValueError(f"config.pp has unknown keys {unknown}; valid keys: {sorted(fields)}.")
    for key in ("crop_area_range", "aspect_ratio_range"):
      if key in pp:
        pp[key] = tuple(float(v) for v in pp[key])
    return cls(image_size=config.image_size, **pp)


def to_signed_unit(image: tf.Tensor) -> tf.Tensor:
  """Pixels p in [0, 255] -> p / 127.5 - 1, clipped to [-1, 1] (bicubic overshoots)."""
  return tf.clip_by_value(tf.cast(image, tf.float32) * (1 / 127.5) - 1.0, -1.0, 1.0)


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
  """Any JPEG/PNG/GIF/BMP as uint8 [H, W, 3] (grey and RGBA are converted)."""
  image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def inception_crop_window(image_shape: tf.Tensor, seed: tf.Tensor,
                          options: PreprocessOptions) -> tuple[tf.Tensor, tf.Tensor]:
  """``(offset [y, x], size [h, w])`` of a random crop of an image of ``image_shape`` [H, W, C].

  The window has h * w / (H * W) in ``crop_area_range`` and w / h in
  ``aspect_ratio_range`` (up to rounding to whole pixels); if 100 draws all fail
  (tiny images), it is the whole image.
  """
  offset, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape, bounding_boxes=tf.zeros([0, 0, 4], tf.float32), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=options.aspect_ratio_range,
      area_range=options.crop_area_range, max_attempts=100, use_image_if_no_bounding_boxes=True)
  return offset[:2], size[:2]


def inception_crop_pixels(image_bytes: tf.Tensor, seed: tf.Tensor,
                          options: PreprocessOptions) -> tf.Tensor:
  """Training view before the value map: float32 [S, S, 3] pixels in [0, 255] (up to the
  resize's overshoot) from encoded bytes and a seed [2].

  JPEGs decode only the crop window (``tf.image.decode_and_crop_jpeg``); other
  formats decode fully, then slice. One random draw gives the crop's seed and the
  flip (the sign of a uniform int64: probability exactly 1/2).
  """
  bits = tf.random.stateless_uniform([3], seed, minval=None, maxval=None, dtype=tf.int64)
  crop_seed, flip = bits[:2], bits[2] < 0

  def jpeg():
    offset, size = inception_crop_window(tf.image.extract_jpeg_shape(image_bytes), crop_seed,
                                         options)
    return tf.image.decode_and_crop_jpeg(image_bytes, tf.concat([offset, size], 0), channels=3)

  def other():
    image = decode_image(image_bytes)
    offset, size = inception_crop_window(tf.shape(image), crop_seed, options)
    return tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([size, [3]], 0))

  crop = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
  # Resizing float32 is faster than uint8 in TensorFlow's kernels, and gives the same values.
  image = tf.image.resize(tf.cast(crop, tf.float32), [options.image_size] * 2,
                          method=options.resize_method)
  if options.flip:
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
  return image


def decode_and_inception_crop(image_bytes: tf.Tensor, seed: tf.Tensor,
                              options: PreprocessOptions) -> tf.Tensor:
  """Training view: float32 [S, S, 3] in [-1, 1] (``inception_crop_pixels``, mapped)."""
  return to_signed_unit(inception_crop_pixels(image_bytes, seed, options))


def resize_smaller_side(image: tf.Tensor, smaller_side: int, method: str) -> tf.Tensor:
  """Scales [H, W, C] by s = smaller_side / min(H, W) to [round(s H), round(s W), C]."""
  hw = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = smaller_side / tf.reduce_min(hw)
  new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), smaller_side)
  return tf.image.resize(image, new_hw, method=method)


def decode_and_central_crop(image_bytes: tf.Tensor, options: PreprocessOptions, *,
                            central_crop: bool = True) -> tf.Tensor:
  """Evaluation view: float32 [S, S, 3] in [-1, 1].

  ``central_crop=True``: resize the smaller side to ``eval_smaller_side``, then the
  central S x S window (offset floor((H' - S) / 2)). ``False``: resize straight to
  S x S, for images already cropped when the dataset was made (ImageNet-C).
  """
  image = decode_image(image_bytes)
  size = options.image_size
  if not central_crop:
    return to_signed_unit(tf.image.resize(image, [size, size], method=options.resize_method))
  image = resize_smaller_side(image, options.eval_smaller_side, options.resize_method)
  hw = tf.shape(image)[:2]
  top, left = (hw[0] - size) // 2, (hw[1] - size) // 2
  image = image[top:top + size, left:left + size]
  image.set_shape([size, size, 3])
  return to_signed_unit(image)
