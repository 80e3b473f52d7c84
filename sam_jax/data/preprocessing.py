"""The paper's per-example image preprocessing, as TensorFlow ops for tf.data.

Training: Inception crop (a random window of the image with area fraction in
``crop_area_range``, width/height in ``aspect_ratio_range`` and at least
``min_object_covered`` of the image, from ``crop_attempts`` draws; decoded together
with the crop for JPEGs), resize to ``image_size`` x ``image_size``, random
horizontal flip (then, if configured, RandAugment on these [0, 255] pixels:
``sam_jax.data.randaugment``, applied by ``tf_pipeline``). When no draw fits, the window
is the whole image, or with ``crop_fallback="central_crop"`` the evaluation window below.
Evaluation (``eval_crop``): ``"resize_crop"`` resizes the smaller side to S' =
``eval_resize`` (256 for 224), then takes the central S x S crop (big_vision);
``"crop_resize"`` takes the central square of side floor(S / S' * min(H, W)) at offset
floor((H - side + 1) / 2), then resizes it to S x S (google-research/sam);
``"resize"`` resizes the whole image to S x S (vit_jax's fine-tuning). ``normalize`` maps
pixels p in [0, 255]: ``"signed_unit"`` to p / 127.5 - 1 in [-1, 1], ``"mean_std"`` to
(p - 255 mean) / (255 std) per channel with ImageNet's mean and std (``MEAN_RGB``,
``STD_RGB``). ``resize_method="bicubic_tf1"`` is TF1's ``resize_bicubic`` (no half-pixel
centres), which google-research/sam uses.

Randomness is stateless: each example's crop and flip are a function of a seed
``[key, position]``, so a stream is reproducible and can be resumed anywhere.
"""

import dataclasses
from typing import Any

import tensorflow as tf

RESIZE_METHODS = ("bilinear", "bicubic", "area", "nearest", "lanczos3", "bicubic_tf1")
EVAL_CROPS = ("resize_crop", "crop_resize", "resize")
CROP_FALLBACKS = ("image", "central_crop")
NORMALIZATIONS = ("signed_unit", "mean_std")
MEAN_RGB = (0.485, 0.456, 0.406)  # ImageNet's, of pixels in [0, 1] (google-research/sam).
STD_RGB = (0.229, 0.224, 0.225)


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
  min_object_covered: float = 0.0
  crop_attempts: int = 100
  crop_fallback: str = "image"
  eval_crop: str = "resize_crop"
  normalize: str = "signed_unit"

  def __post_init__(self):
    for name, valid in (("resize_method", RESIZE_METHODS), ("eval_crop", EVAL_CROPS),
                        ("crop_fallback", CROP_FALLBACKS), ("normalize", NORMALIZATIONS)):
      if getattr(self, name) not in valid:
        raise ValueError(f"config.pp.{name}={getattr(self, name)!r} must be one of {valid}.")
    if not 0 <= self.min_object_covered <= 1 or self.crop_attempts < 1:
      raise ValueError(f"config.pp.min_object_covered={self.min_object_covered} must be in "
                       f"[0, 1] and config.pp.crop_attempts={self.crop_attempts} >= 1.")
    lo, hi = self.crop_area_range
    if not 0 < lo <= hi <= 1:
      raise ValueError(f"config.pp.crop_area_range={self.crop_area_range} must satisfy "
                       "0 < min <= max <= 1 (fractions of the image area).")
    lo, hi = self.aspect_ratio_range
    if not 0 < lo <= hi:
      raise ValueError(f"config.pp.aspect_ratio_range={self.aspect_ratio_range} must satisfy "
                       "0 < min <= max (width / height).")
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


def normalize(image: tf.Tensor, options: PreprocessOptions) -> tf.Tensor:
  """Pixels in [0, 255] -> the model's input (``options.normalize``)."""
  if options.normalize == "signed_unit":
    return to_signed_unit(image)
  mean, std = (tf.constant([255 * v for v in vs], tf.float32) for vs in (MEAN_RGB, STD_RGB))
  return (tf.cast(image, tf.float32) - mean) / std


def resize(image: tf.Tensor, size: Any, method: str) -> tf.Tensor:
  """``image`` [H, W, C] resized to ``size`` [h, w] with ``method`` (``RESIZE_METHODS``)."""
  if method == "bicubic_tf1":
    return tf.compat.v1.image.resize_bicubic(image[None], size)[0]
  return tf.image.resize(image, size, method=method)


def central_window(image_shape: tf.Tensor, options: PreprocessOptions
                   ) -> tuple[tf.Tensor, tf.Tensor]:
  """``(offset, size)`` of ``"crop_resize"``'s central square of an image of ``image_shape``."""
  hw = image_shape[:2]
  side = tf.cast(options.image_size / options.eval_smaller_side
                 * tf.cast(tf.reduce_min(hw), tf.float32), tf.int32)
  return (hw - side + 1) // 2, tf.stack([side, side])


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
  (tiny images), it is the whole image, or ``central_window`` with
  ``crop_fallback="central_crop"``.
  """
  offset, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape, bounding_boxes=tf.zeros([0, 0, 4], tf.float32), seed=seed,
      min_object_covered=options.min_object_covered,
      aspect_ratio_range=options.aspect_ratio_range, area_range=options.crop_area_range,
      max_attempts=options.crop_attempts, use_image_if_no_bounding_boxes=True)
  offset, size = offset[:2], size[:2]
  if options.crop_fallback == "central_crop":  # As google-research/sam: the whole image means
    whole = tf.reduce_all(tf.equal(size, image_shape[:2]))  # no draw fitted.
    return tf.cond(whole, lambda: central_window(image_shape, options), lambda: (offset, size))
  return offset, size


def inception_crop_pixels(image_bytes: tf.Tensor, seed: tf.Tensor,
                          options: PreprocessOptions) -> tf.Tensor:
  """Training view before the value map: float32 [S, S, 3] pixels in [0, 255] (up to the
  resize's overshoot) from encoded bytes and a seed [2].

  JPEGs decode only the crop window (``tf.image.decode_and_crop_jpeg``); other
  formats decode fully, then slice. One random draw gives the crop's seed and the
  flip (the sign of a uniform int64: probability exactly 1/2).
  """
  # minval=maxval=None: the full int64 range (tf's stubs do not allow None).
  bits = tf.random.stateless_uniform([3], seed, minval=None,  # pyright: ignore[reportArgumentType]
                                     maxval=None, dtype=tf.int64)
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
  image = resize(tf.cast(crop, tf.float32), [options.image_size] * 2, options.resize_method)
  if options.flip:
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
  return image


def decode_and_inception_crop(image_bytes: tf.Tensor, seed: tf.Tensor,
                              options: PreprocessOptions) -> tf.Tensor:
  """Training view: float32 [S, S, 3] (``inception_crop_pixels``, ``normalize``d)."""
  return normalize(inception_crop_pixels(image_bytes, seed, options), options)


def resize_smaller_side(image: tf.Tensor, smaller_side: int, method: str) -> tf.Tensor:
  """Scales [H, W, C] by s = smaller_side / min(H, W) to [round(s H), round(s W), C]."""
  hw = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = smaller_side / tf.reduce_min(hw)
  new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), smaller_side)
  return resize(image, new_hw, method)


def decode_and_central_crop(image_bytes: tf.Tensor, options: PreprocessOptions, *,
                            central_crop: bool = True) -> tf.Tensor:
  """Evaluation view: float32 [S, S, 3] by ``options.eval_crop`` (module docstring), then
  ``normalize``. ``central_crop=False``: ``"resize"`` whatever the option, for images already
  cropped when the dataset was made (ImageNet-C)."""
  image = decode_image(image_bytes)
  size = options.image_size
  method = options.eval_crop if central_crop else "resize"
  if method == "crop_resize":
    offset, window = central_window(tf.shape(image), options)
    image = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([window, [3]], 0))
  if method != "resize_crop":
    return normalize(resize(tf.cast(image, tf.float32), [size, size], options.resize_method),
                     options)
  image = resize_smaller_side(image, options.eval_smaller_side, options.resize_method)
  hw = tf.shape(image)[:2]
  top, left = (hw[0] - size) // 2, (hw[1] - size) // 2
  image = image[top:top + size, left:left + size]
  image.set_shape([size, size, 3])
  return normalize(image, options)
