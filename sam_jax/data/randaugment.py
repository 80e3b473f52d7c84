r"""RandAugment (Cubuk et al., 2020) as stateless TensorFlow ops on one training image.

Why written here: the training stream is a pure function of (seed, process, position)
(``tf_pipeline``), so a run resumes exactly at any step. The maintained implementations
draw with stateful random ops (``tf.random.uniform`` in tensorflow/tpu and in
tensorflow/models ``official/vision/ops/augment.py``, Python's ``random`` in timm), so a
resumed run would see other augmentations; the TF ones also need tensorflow-addons
(big_vision archived its ``randaug`` op for that reason). Every draw here is a
``tf.random.stateless_*`` of the example's own seed; the ops use core TF only.

Reference followed: ``distort_image_with_randaugment`` of tensorflow/tpu
``models/official/efficientnet/autoaugment.py``, which big_vision's pp op
``randaug(N, M)`` calls (``big_vision/pp/autoaugment.py``, a fork of it; docs/paper.md
§10). N layers; each picks one of the 16 ``OPS`` uniformly and applies it. (The
reference also draws a probability U(0.2, 0.8) per op but passes it to none of the ops:
the chosen op is always applied, here too.) Ops act on uint8 [H, W, 3]; the training
view's float pixels are rounded to uint8 first.

Arguments, with l = M / 10 (M = ``magnitude``, the reference's _MAX_LEVEL = 10 scale,
M in [0, 30]), s = +-1 a fair random sign per layer, S the image size:

    op                        argument                           M = 15
    AutoContrast, Equalize,   none
      Invert
    Rotate                    s * 30 l degrees                   +-45
    ShearX, ShearY            s * 0.3 l                          +-0.45
    TranslateX, TranslateY    s * 100 l * S / 224 pixels         +-150 at 224, +-21.4 at 32
    Posterize                 keep min(floor(4 l), 8) high bits  6
    Solarize                  p >= floor(256 l) -> 255 - p       384: no pixel
    SolarizeAdd               p < 128 -> min(p + floor(110 l), 255)   +165
    Color, Contrast,          blend factor f = 1.8 l + 0.1       2.8
      Brightness, Sharpness
    Cutout                    a square of side 2 floor(40 l * S / 224) at a uniform
                              centre pixel set to 128            120 at 224, 16 at 32

Blend: out = floor(clip(d + f (p - d), 0, 255)) with d the degenerate image: grey
(``tf.image.rgb_to_grayscale``) for Color, the mean grey level for Contrast, 0 for
Brightness, the image smoothed by [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (its 1-pixel
border kept) for Sharpness. AutoContrast maps each channel's [min, max] onto [0, 255];
Equalize is PIL's per-channel histogram equalisation (``equalize``). Geometric ops:
output pixel (x, y) takes the input pixel nearest to A(x, y), 128 outside the image;
A is a rotation about the image centre ((W - 1) / 2, (H - 1) / 2), (x + k y, y),
(x, y + k x), (x + t, y) or (x, y + t).

The constants are the reference's (translate 100 px and cutout 40 px are its values at
224 px). Differences, each deliberate: translate and cutout scale with S / 224 (the
reference's pixel constants at 32 px would move or cover the whole image); Contrast's d
is the mean grey level, as PIL's (the reference divides the pixel *count* by 256);
Posterize keeps at most 8 bits (above M = 20 the reference shifts by a negative
amount); Solarize compares as integers, so a threshold above 255 changes nothing (the
reference compares uint8 pixels with the threshold cast to uint8, which TensorFlow
wraps modulo 256: 384 -> 128 at M = 15).
"""

import dataclasses
import math
from typing import Sequence

import tensorflow as tf

OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color",
       "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
       "Cutout", "SolarizeAdd")
MAX_LEVEL = 10.0
MAX_MAGNITUDE = 30.0
REFERENCE_SIZE = 224  # The image size of the reference's pixel constants.
TRANSLATE_CONST = 100.0
CUTOUT_CONST = 40.0
FILL = 128


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: float) -> tf.Tensor:
  d = tf.cast(degenerate, tf.float32)
  mixed = d + factor * (tf.cast(image, tf.float32) - d)
  return tf.cast(tf.clip_by_value(mixed, 0.0, 255.0), tf.uint8)  # The cast floors.


def autocontrast(image: tf.Tensor) -> tf.Tensor:
  """Each channel's [lo, hi] -> [0, 255]: floor((p - lo) 255 / (hi - lo)); constant kept."""
  x = tf.cast(image, tf.float32)
  lo = tf.reduce_min(x, axis=[0, 1])
  hi = tf.reduce_max(x, axis=[0, 1])
  scaled = (x - lo) * 255.0 / tf.maximum(hi - lo, 1.0)
  return tf.where(hi > lo, tf.cast(tf.clip_by_value(scaled, 0.0, 255.0), tf.uint8), image)


def equalize(image: tf.Tensor) -> tf.Tensor:
  """PIL's equalisation per channel of n pixels with histogram h: step = (n - h[max p]) // 255,
  lut[v] = (sum_{u < v} h[u] + step // 2) // step clipped to 255; unchanged if step = 0."""
  channels = tf.reshape(tf.transpose(tf.cast(image, tf.int32), [2, 0, 1]), [3, -1])
  hist = tf.math.bincount(channels, minlength=256, maxlength=256, axis=-1)
  last = tf.gather(hist, tf.reduce_max(channels, axis=1), batch_dims=1)
  step = (tf.shape(channels)[1] - last) // 255
  safe = tf.maximum(step, 1)[:, None]
  below = tf.cumsum(hist, axis=1, exclusive=True)
  lut = tf.minimum((below + safe // 2) // safe, 255)
  mapped = tf.where(step[:, None] > 0, tf.gather(lut, channels, batch_dims=1), channels)
  return tf.cast(tf.transpose(tf.reshape(mapped, tf.concat([[3], tf.shape(image)[:2]], 0)),
                              [1, 2, 0]), tf.uint8)


def invert(image: tf.Tensor) -> tf.Tensor:
  return 255 - image


def posterize(image: tf.Tensor, bits: int) -> tf.Tensor:
  """Keeps the ``bits`` high bits of each pixel (0 bits: black)."""
  return tf.bitwise.bitwise_and(image, tf.constant((0xFF << (8 - bits)) & 0xFF, tf.uint8))


def solarize(image: tf.Tensor, threshold: int) -> tf.Tensor:
  """p >= threshold -> 255 - p (compared as integers: a threshold > 255 changes nothing)."""
  return tf.where(tf.cast(image, tf.int32) < threshold, image, 255 - image)


def solarize_add(image: tf.Tensor, addition: int) -> tf.Tensor:
  """p < 128 -> min(p + addition, 255)."""
  added = tf.cast(tf.minimum(tf.cast(image, tf.int32) + addition, 255), tf.uint8)
  return tf.where(image < 128, added, image)


def color(image: tf.Tensor, factor: float) -> tf.Tensor:
  return _blend(tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image)), image, factor)


def contrast(image: tf.Tensor, factor: float) -> tf.Tensor:
  mean = tf.reduce_mean(tf.cast(tf.image.rgb_to_grayscale(image), tf.float32))
  return _blend(tf.fill(tf.shape(image), tf.cast(mean, tf.uint8)), image, factor)


def brightness(image: tf.Tensor, factor: float) -> tf.Tensor:
  return _blend(tf.zeros_like(image), image, factor)


def sharpness(image: tf.Tensor, factor: float) -> tf.Tensor:
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(tf.cast(image, tf.float32)[None], kernel, [1, 1, 1, 1],
                                  "VALID")[0]
  smooth = tf.cast(tf.clip_by_value(smooth, 0.0, 255.0), tf.uint8)
  inner = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
  degenerate = tf.where(inner, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)
  return _blend(degenerate, image, factor)


def affine(image: tf.Tensor,
           matrix: tf.Tensor | Sequence[Sequence[tf.Tensor | float]]) -> tf.Tensor:
  """Output (x, y) <- input nearest to ``matrix`` [[a, b, c], [d, e, f]] (x, y, 1); 128 outside."""
  transform = tf.concat([tf.reshape(tf.cast(matrix, tf.float32), [6]), tf.zeros([2])], 0)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=transform[None], output_shape=tf.shape(image)[:2],
      fill_value=float(FILL), interpolation="NEAREST", fill_mode="CONSTANT")[0]


def rotate(image: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
  """Rotation about the centre, counter-clockwise as displayed (90: ``np.rot90`` of a square)."""
  theta = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
  cos, sin = tf.cos(theta), tf.sin(theta)
  hw = tf.cast(tf.shape(image)[:2], tf.float32)
  cy, cx = (hw[0] - 1) / 2, (hw[1] - 1) / 2
  return affine(image, [[cos, -sin, cx - cos * cx + sin * cy],
                        [sin, cos, cy - sin * cx - cos * cy]])


def shear_x(image: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
  return affine(image, [[1.0, k, 0.0], [0.0, 1.0, 0.0]])


def shear_y(image: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
  return affine(image, [[1.0, 0.0, 0.0], [k, 1.0, 0.0]])


def translate_x(image: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
  """Output column x is input column x + pixels (the content moves left by ``pixels``)."""
  return affine(image, [[1.0, 0.0, pixels], [0.0, 1.0, 0.0]])


def translate_y(image: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
  return affine(image, [[1.0, 0.0, 0.0], [0.0, 1.0, pixels]])


def cutout(image: tf.Tensor, center: tf.Tensor, pad: int) -> tf.Tensor:
  """Rows [cy - pad, cy + pad) x columns [cx - pad, cx + pad) (inside the image) set to 128."""
  rows = tf.range(tf.shape(image)[0])[:, None]
  cols = tf.range(tf.shape(image)[1])[None, :]
  inside = ((rows >= center[0] - pad) & (rows < center[0] + pad)
            & (cols >= center[1] - pad) & (cols < center[1] + pad))
  return tf.where(inside[:, :, None], tf.constant(FILL, image.dtype), image)


@dataclasses.dataclass(frozen=True)
class Levels:
  """The unsigned arguments of the ops at one magnitude and image size (the docstring's table)."""
  degrees: float
  shear: float
  translate: float
  posterize_bits: int
  solarize_threshold: int
  solarize_addition: int
  enhance: float
  cutout_pad: int

  @classmethod
  def of(cls, magnitude: float, image_size: int) -> "Levels":
    level = magnitude / MAX_LEVEL
    scale = image_size / REFERENCE_SIZE
    return cls(degrees=30.0 * level, shear=0.3 * level,
               translate=TRANSLATE_CONST * level * scale,
               posterize_bits=min(int(4 * level), 8), solarize_threshold=int(256 * level),
               solarize_addition=int(110 * level), enhance=1.8 * level + 0.1,
               cutout_pad=int(CUTOUT_CONST * level * scale))


def apply(op: str, image: tf.Tensor, levels: Levels, sign: tf.Tensor,
          center: tf.Tensor) -> tf.Tensor:
  """Op ``op`` (one of ``OPS``) on uint8 ``image``; ``sign`` (+-1) signs the geometric ones."""
  signed = lambda value: sign * value
  return {
      "AutoContrast": lambda: autocontrast(image),
      "Equalize": lambda: equalize(image),
      "Invert": lambda: invert(image),
      "Rotate": lambda: rotate(image, signed(levels.degrees)),
      "Posterize": lambda: posterize(image, levels.posterize_bits),
      "Solarize": lambda: solarize(image, levels.solarize_threshold),
      "Color": lambda: color(image, levels.enhance),
      "Contrast": lambda: contrast(image, levels.enhance),
      "Brightness": lambda: brightness(image, levels.enhance),
      "Sharpness": lambda: sharpness(image, levels.enhance),
      "ShearX": lambda: shear_x(image, signed(levels.shear)),
      "ShearY": lambda: shear_y(image, signed(levels.shear)),
      "TranslateX": lambda: translate_x(image, signed(levels.translate)),
      "TranslateY": lambda: translate_y(image, signed(levels.translate)),
      "Cutout": lambda: cutout(image, center, levels.cutout_pad),
      "SolarizeAdd": lambda: solarize_add(image, levels.solarize_addition),
  }[op]()


@dataclasses.dataclass(frozen=True)
class RandAugment:
  """``num_layers`` random ops at ``magnitude`` M on images of ``image_size``; a function of
  (image, seed)."""
  num_layers: int
  magnitude: float
  image_size: int

  def __post_init__(self):
    if not 0 <= self.magnitude <= MAX_MAGNITUDE or self.num_layers < 0:
      raise ValueError(f"RandAugment: num_layers={self.num_layers} must be >= 0 and "
                       f"magnitude={self.magnitude} in [0, {MAX_MAGNITUDE}].")

  @property
  def levels(self) -> Levels:
    return Levels.of(self.magnitude, self.image_size)

  def draws(self, seed: tf.Tensor, height, width) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per layer: the op's index in ``OPS`` (int32 [N]), the sign (float32 +-1 [N]) and the
    cutout centre (int32 [N, 2], a uniform pixel (y, x)), each from its own part of ``seed``."""
    seeds = tf.random.split(seed, 3)
    n = self.num_layers
    ops = tf.random.stateless_uniform([n], seeds[0], 0, len(OPS), tf.int32)
    signs = 1.0 - 2.0 * tf.cast(tf.random.stateless_uniform([n], seeds[1], 0, 2, tf.int32),
                                tf.float32)
    pixel = tf.random.stateless_uniform([n], seeds[2], 0, height * width, tf.int32)
    return ops, signs, tf.stack([pixel // width, pixel % width], axis=1)

  def __call__(self, pixels: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """float32 [S, S, 3] in [0, 255] -> the same after rounding to uint8 and N random ops."""
    image = tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)
    ops, signs, centers = self.draws(seed, tf.shape(image)[0], tf.shape(image)[1])
    levels = self.levels
    for layer in range(self.num_layers):
      branches = [lambda op=op, image=image, layer=layer: apply(op, image, levels, signs[layer],
                                                                centers[layer]) for op in OPS]
      image = tf.ensure_shape(tf.switch_case(ops[layer], branches), pixels.shape)
    return tf.cast(image, tf.float32)
