"""Per-example image ops: Inception crop bounds, flip rate, exact eval crops, option checks."""

import io

import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from sam_jax.data import preprocessing

DRAWS = 2000


def _encode(image: np.ndarray, fmt: str, **kwargs) -> tf.Tensor:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, fmt, **kwargs)
  return tf.constant(buffer.getvalue())


def _windows(shape, options, draws=DRAWS) -> np.ndarray:
  """[draws, 4] (y, x, h, w) crop windows for seeds (1, 0..draws-1)."""
  def window(i):
    offset, size = preprocessing.inception_crop_window(
        tf.constant(shape), tf.stack([tf.constant(1, tf.int64), i]), options)
    return tf.concat([offset, size], 0)
  return next(iter(tf.data.Dataset.range(draws).map(window).batch(draws))).numpy()


@pytest.mark.parametrize("shape,area,aspect", [
    ((60, 80, 3), (0.08, 1.0), (3 / 4, 4 / 3)),    # The paper's bounds.
    ((37, 23, 3), (0.08, 1.0), (3 / 4, 4 / 3)),    # An image outside the aspect range.
    ((64, 64, 3), (0.3, 0.5), (0.5, 2.0)),
])
def test_crop_obeys_area_and_aspect_bounds(shape, area, aspect):
  options = preprocessing.PreprocessOptions(image_size=8, crop_area_range=area,
                                            aspect_ratio_range=aspect)
  y, x, h, w = _windows(shape, options).T
  height, width = shape[:2]
  assert (y >= 0).all() and (x >= 0).all() and (y + h <= height).all() and (x + w <= width).all()
  fraction = h * w / (height * width)
  assert (fraction >= area[0]).all() and (fraction <= area[1]).all()
  # w = round(h * r) for a drawn ratio r in the range, so w / h is within 0.5 / h of it.
  assert (w / h >= aspect[0] - 0.5 / h).all() and (w / h <= aspect[1] + 0.5 / h).all()
  # The draws spread over the allowed range rather than sticking to one window.
  span = area[1] - area[0]
  assert fraction.min() < area[0] + 0.1 * span and fraction.max() > area[1] - 0.3 * span
  assert len({tuple(v) for v in zip(y, x, h, w)}) > DRAWS // 4


def test_jpeg_fused_crop_matches_the_decode_then_slice_path():
  """JPEGs go through decode_and_crop_jpeg, PNGs through decode + slice: same window."""
  rng = np.random.default_rng(0)
  # Flat 8 x 8 blocks (JPEG's DCT blocks) survive quality 100 almost exactly.
  image = np.repeat(np.repeat(rng.integers(0, 256, (6, 8, 3), np.uint8), 8, 0), 8, 1)
  options = preprocessing.PreprocessOptions(image_size=16)
  png, jpeg = _encode(image, "PNG"), _encode(image, "JPEG", quality=100, subsampling=0)
  previous = None
  for i in range(20):
    seed = tf.constant([3, i], tf.int64)
    a = preprocessing.decode_and_inception_crop(png, seed, options).numpy()
    b = preprocessing.decode_and_inception_crop(jpeg, seed, options).numpy()
    assert a.shape == (16, 16, 3) and a.dtype == np.float32
    assert np.abs(a - b).mean() < 0.01
    if previous is not None:  # Another window differs by far more.
      assert np.abs(a - previous).mean() > 0.1
    previous = a


def test_flip_mirrors_exactly_about_half_the_time():
  image = np.tile(np.arange(0, 240, 8, dtype=np.uint8)[None, :, None], (24, 1, 3))  # x gradient.
  png = _encode(image, "PNG")
  flip = preprocessing.PreprocessOptions(image_size=8)
  keep = preprocessing.PreprocessOptions(image_size=8, flip=False)
  mirrored = 0
  for i in range(400):
    seed = tf.constant([5, i], tf.int64)
    a = preprocessing.decode_and_inception_crop(png, seed, flip).numpy()
    b = preprocessing.decode_and_inception_crop(png, seed, keep).numpy()
    if np.array_equal(a, b[:, ::-1]):
      mirrored += 1
    else:
      np.testing.assert_array_equal(a, b)
  assert 155 <= mirrored <= 245  # Binomial(400, 1/2): mean 200, sd 10.


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos3"])
def test_train_view_range_and_shape(method):
  rng = np.random.default_rng(1)
  jpeg = _encode(rng.integers(0, 256, (30, 41, 3), np.uint8), "JPEG")
  options = preprocessing.PreprocessOptions(image_size=24, resize_method=method)
  for i in range(10):
    out = preprocessing.decode_and_inception_crop(jpeg, tf.constant([0, i], tf.int64), options)
    assert out.shape == (24, 24, 3) and out.dtype == tf.float32
    assert -1 <= out.numpy().min() and out.numpy().max() <= 1


def test_float_and_uint8_resize_agree():
  crop = tf.constant(np.random.default_rng(2).integers(0, 256, (33, 47, 3), np.uint8))
  np.testing.assert_allclose(tf.image.resize(tf.cast(crop, tf.float32), [16, 16]).numpy(),
                             tf.image.resize(crop, [16, 16]).numpy(), atol=1e-4)


def test_eval_central_crop_is_exact():
  rng = np.random.default_rng(3)
  image = rng.integers(0, 256, (8, 24, 3), np.uint8)
  # Smaller side already 8: no resampling, the central 8 x 8 columns 8..15.
  options = preprocessing.PreprocessOptions(image_size=8, eval_resize=8)
  out = preprocessing.decode_and_central_crop(_encode(image, "PNG"), options).numpy()
  np.testing.assert_allclose(out, image[:, 8:16] / 127.5 - 1, atol=1e-6)
  # Halving with bilinear (half-pixel centres) averages 2 x 2 blocks: 16 x 50 -> 8 x 25,
  # central crop offset (25 - 8) // 2 = 8.
  image = rng.integers(0, 256, (16, 50, 3), np.uint8)
  blocks = image.astype(np.float64).reshape(8, 2, 25, 2, 3).mean(axis=(1, 3))
  out = preprocessing.decode_and_central_crop(_encode(image, "PNG"), options).numpy()
  np.testing.assert_allclose(out, blocks[:, 8:16] / 127.5 - 1, atol=1e-5)


def test_eval_without_central_crop_resizes_the_whole_image():
  image = np.random.default_rng(4).integers(0, 256, (16, 16, 3), np.uint8)
  blocks = image.astype(np.float64).reshape(8, 2, 8, 2, 3).mean(axis=(1, 3))
  options = preprocessing.PreprocessOptions(image_size=8)
  out = preprocessing.decode_and_central_crop(_encode(image, "PNG"), options, central_crop=False)
  np.testing.assert_allclose(out.numpy(), blocks / 127.5 - 1, atol=1e-5)


def test_default_eval_resize_is_256_for_224():
  assert preprocessing.PreprocessOptions(image_size=224).eval_smaller_side == 256


@pytest.mark.parametrize("pp,match", [
    (dict(crop_area_range=(0.0, 1.0)), "crop_area_range"),
    (dict(crop_area_range=(0.5, 0.2)), "crop_area_range"),
    (dict(aspect_ratio_range=(2.0, 1.0)), "aspect_ratio_range"),
    (dict(resize_method="cubic"), "resize_method"),
    (dict(eval_resize=16), "eval_resize"),
    (dict(crop_area=(0.1, 1.0)), "unknown keys"),
    (dict(eval_crop="center"), "eval_crop"),
    (dict(normalize="imagenet"), "normalize"),
    (dict(crop_fallback="eval"), "crop_fallback"),
    (dict(min_object_covered=1.5), "min_object_covered"),
])
def test_bad_options_are_named(pp, match):
  config = ml_collections.ConfigDict(dict(image_size=32, pp=pp))
  with pytest.raises(ValueError, match=match):
    preprocessing.PreprocessOptions.from_config(config)


SAM_PP = dict(eval_crop="crop_resize", resize_method="bicubic_tf1", normalize="mean_std")


def _mean_std(pixels: np.ndarray) -> np.ndarray:
  """google-research/sam's normalize_image, by hand."""
  mean = np.array([0.485, 0.456, 0.406]) * 255
  std = np.array([0.229, 0.224, 0.225]) * 255
  return (pixels.astype(np.float64) - mean) / std


def test_sam_code_eval_view_by_hand():
  """crop_resize: side floor(16 / 20 * min(20, 30)) = 16 at offset ((20 - 16 + 1) // 2,
  (30 - 16 + 1) // 2) = (2, 7); resizing 16 -> 16 leaves the pixels as they are."""
  image = np.random.default_rng(5).integers(0, 256, (20, 30, 3), np.uint8)
  options = preprocessing.PreprocessOptions(image_size=16, eval_resize=20, **SAM_PP)
  out = preprocessing.decode_and_central_crop(_encode(image, "PNG"), options).numpy()
  np.testing.assert_allclose(out, _mean_std(image[2:18, 7:23]), atol=1e-4)


def _sam_eval_reference(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
  """google-research/sam sam_jax/datasets/dataset_source_imagenet.py L138-171
  (_decode_and_center_crop, normalize_image) with CROP_PADDING = 32, as written there."""
  shape = tf.image.extract_jpeg_shape(image_bytes)
  side = tf.cast((image_size / (image_size + 32))
                 * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32), tf.int32)
  window = tf.stack([(shape[0] - side + 1) // 2, (shape[1] - side + 1) // 2, side, side])
  image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  image = tf.compat.v1.image.resize_bicubic([image], [image_size, image_size])[0]
  return (image - tf.constant([0.485 * 255, 0.456 * 255, 0.406 * 255])) / tf.constant(
      [0.229 * 255, 0.224 * 255, 0.225 * 255])


def test_sam_code_eval_view_matches_its_reference():
  image = np.random.default_rng(6).integers(0, 256, (45, 61, 3), np.uint8)
  jpeg = _encode(image, "JPEG", quality=100, subsampling=0)
  options = preprocessing.PreprocessOptions(image_size=24, eval_resize=24 + 32, **SAM_PP)
  np.testing.assert_allclose(preprocessing.decode_and_central_crop(jpeg, options).numpy(),
                             _sam_eval_reference(jpeg, 24).numpy(), atol=1e-3)


def test_min_object_covered_bounds_the_crop_area():
  """With the whole image as the box, min_object_covered = 0.1 makes 0.1 the least area."""
  options = preprocessing.PreprocessOptions(image_size=8, crop_area_range=(0.05, 1.0),
                                            min_object_covered=0.1, crop_attempts=10)
  y, x, h, w = _windows((60, 80, 3), options).T
  fraction = h * w / (60 * 80)
  assert fraction.min() >= 0.1 and fraction.min() < 0.15


def test_crop_fallback_is_the_central_window():
  """No draw fits a square image with aspect ratio in [10, 11] and area >= 0.5: the whole
  image, or with crop_fallback the eval window: side floor(8 / 10 * 40) = 32 at (4, 4)."""
  common = dict(image_size=8, eval_resize=10, aspect_ratio_range=(10.0, 11.0),
                crop_area_range=(0.5, 1.0), crop_attempts=1)
  for fallback, expected in (("image", [0, 0, 40, 40]), ("central_crop", [4, 4, 32, 32])):
    options = preprocessing.PreprocessOptions(crop_fallback=fallback, **common)
    np.testing.assert_array_equal(_windows((40, 40, 3), options, draws=5),
                                  np.tile(expected, (5, 1)))


def test_vit_jax_finetune_eval_resizes_the_whole_image():
  image = np.random.default_rng(7).integers(0, 256, (16, 32, 3), np.uint8)
  blocks = image.astype(np.float64).reshape(8, 2, 8, 4, 3).mean(axis=(1, 3))
  options = preprocessing.PreprocessOptions(image_size=8, eval_crop="resize",
                                            resize_method="area")
  out = preprocessing.decode_and_central_crop(_encode(image, "PNG"), options).numpy()
  np.testing.assert_allclose(out, blocks / 127.5 - 1, atol=1e-5)
