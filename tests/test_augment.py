"""Strong augmentation (config.augment): RandAugment's ops against closed forms and PIL, its
stateless draws, mixup's weights and mixing, soft-label losses and metrics, and training with
both (one step of configs/cifar10_augment.py is in tests/test_configs.py): 1 vs 8 devices,
exact resume."""

import dataclasses
import itertools
import math
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image, ImageOps
import pytest
import tensorflow as tf

from configs import cifar10_augment
from sam_jax import metrics, parallel
from sam_jax.config import defaults
from sam_jax.data import image_folder, input_pipeline, mixup, preprocessing, randaugment
from sam_jax.data import tf_pipeline
from sam_jax.objectives import adversarial
from sam_jax.training import loop, setup
from tests import tiny_digits_config
from tests.test_input_pipeline import make_folder, shrink_folder_config

CLASSES = [f"c{i}" for i in range(6)]
IDENTITY_AT_0 = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout",
                 "SolarizeAdd")  # Magnitude 0: angle, shear, shift, cutout, addition 0.
S = 32


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
  """6 classes x 4 training images (PNG and JPEG, 10 x 13), 1 test image per class."""
  root = str(tmp_path_factory.mktemp("folder"))
  make_folder(root, "train", CLASSES, 4)
  make_folder(root, "test", CLASSES, 1)
  return root


def _config(root, **augment) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      dataset="folder", data_dir=root, train_split="train", eval_split="test", image_size=16,
      pp=dict(eval_resize=16), augment=augment))


def _batches(config, n, **kwargs):
  kwargs.setdefault("local_batch_size", 4)
  return list(itertools.islice(input_pipeline.train_iterator(config, seed=3, **kwargs), n))


def _image(seed=0, size=S, low=0, high=256):
  return np.random.default_rng(seed).integers(low, high, (size, size, 3)).astype(np.uint8)


def _records(root, keys, n):
  """The first ``n`` (position, image bytes) of process 0 of 1's training stream."""
  source = image_folder.ImageFolder(root, class_split="train")
  records = source.train_records("train", process_index=0, process_count=1,
                                 seed_key=keys.order, start=0, shuffle_buffer=0)
  return [(int(p), tf.io.read_file(r["path"])) for p, r in itertools.islice(records, n)]


# Mixup.


def test_mixup_mixes_each_batch_with_itself_rolled_by_one(root):
  plain = _batches(_config(root), 6)
  mixed = _batches(_config(root, mixup_alpha=0.5), 6)
  key = tf_pipeline.stream_keys(3, 0).mixup
  weights = []
  for step, (x, m) in enumerate(zip(plain, mixed)):
    labels = m["label"]
    assert labels.dtype == np.float32 and labels.shape == (4, len(CLASSES))
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-6)
    a = mixup.weight(tf.constant([key, step], tf.int64), 0.5).numpy()
    assert 0.5 <= a <= 1.0
    y, y_prev = x["label"], np.roll(x["label"], 1)
    differ = y != y_prev
    np.testing.assert_array_equal(labels[differ, y[differ]], a)  # The label's own weight.
    np.testing.assert_array_equal(labels[differ, y_prev[differ]], np.float32(1) - a)
    onehot = np.eye(len(CLASSES), dtype=np.float32)[y]
    np.testing.assert_array_equal(labels, a * onehot + (np.float32(1) - a) * np.roll(onehot, 1, 0))
    np.testing.assert_array_equal(
        m["image"], a * x["image"] + (np.float32(1) - a) * np.roll(x["image"], 1, axis=0))
    weights.append(a)
  assert len(set(weights)) == len(weights)  # One weight per batch.


@pytest.mark.parametrize("alpha", [0.2, 0.5, 1.0, 4.0])
def test_mixup_weights_have_the_folded_beta_mean(alpha):
  """E max(b, 1 - b) = 1/2 + 4^-alpha / (alpha B(alpha, alpha)), b ~ Beta(alpha, alpha);
  Var = Var b - (E|b - 1/2|)^2 with Var b = 1 / (4 (2 alpha + 1))."""
  n = 4000
  weights = tf.data.Dataset.range(n).map(
      lambda s: mixup.weight(tf.stack([tf.constant(17, tf.int64), s]), alpha)).batch(n)
  a = weights.get_single_element().numpy().astype(np.float64)
  beta = math.exp(2 * math.lgamma(alpha) - math.lgamma(2 * alpha))
  spread = 4.0**-alpha / (alpha * beta)
  std = math.sqrt(1 / (4 * (2 * alpha + 1)) - spread**2)
  assert np.all((a >= 0.5) & (a <= 1.0))
  assert abs(a.mean() - (0.5 + spread)) < 5 * std / math.sqrt(n)
  assert abs(a.std() - std) < 0.1 * std


def test_without_augmentation_the_stream_is_the_one_from_before(root):
  """Order and crop keys are SeedSequence's first two words as before; each image is the
  Inception crop of its record with seed [crop key, position], labels stay int32; layers 0
  (whatever the magnitude) and alpha 0 are off."""
  for seed, process in [(3, 0), (3, 1), (12345, 7)]:
    words = np.random.SeedSequence([seed, process]).generate_state(2, np.uint64)
    keys = tf_pipeline.stream_keys(seed, process)
    assert (keys.order, keys.crop) == (int(words[0] >> 1), int(words[1] >> 1))
  plain = _batches(_config(root), 3)
  off = _batches(_config(root, randaugment_layers=0, randaugment_magnitude=15.0,
                         mixup_alpha=0.0), 3)
  keys = tf_pipeline.stream_keys(3, 0)
  options = preprocessing.PreprocessOptions(image_size=16, eval_resize=16)
  for k, ((p, image_bytes), a, b) in enumerate(zip(_records(root, keys, 12)[::4], plain, off)):
    assert p == 4 * k
    expected = preprocessing.decode_and_inception_crop(
        image_bytes, tf.constant([keys.crop, p], tf.int64), options)
    np.testing.assert_array_equal(a["image"][0], expected)
    for key in ("image", "label"):
      np.testing.assert_array_equal(a[key], b[key])
    assert a["label"].dtype == np.int32


# RandAugment: the ops.


@pytest.mark.parametrize("op", IDENTITY_AT_0)
def test_magnitude_0_geometric_and_additive_ops_are_the_identity(op):
  image = tf.constant(_image())
  for sign, center in [(1.0, [3, 7]), (-1.0, [31, 0])]:
    out = randaugment.apply(op, image, randaugment.Levels.of(0.0, S), tf.constant(sign),
                            tf.constant(center))
    np.testing.assert_array_equal(out, image)


def test_levels_follow_the_reference_table():
  at = randaugment.Levels.of
  assert dataclasses.asdict(at(15.0, 224)) == pytest.approx(dict(
      degrees=45, shear=0.45, translate=150, posterize_bits=6, solarize_threshold=384,
      solarize_addition=165, enhance=2.8, cutout_pad=60))
  assert dataclasses.asdict(at(10.0, 224)) == pytest.approx(dict(
      degrees=30, shear=0.3, translate=100, posterize_bits=4, solarize_threshold=256,
      solarize_addition=110, enhance=1.9, cutout_pad=40))
  small = at(15.0, 32)  # Pixel constants scale with the image: 100 and 40 px at 224.
  assert small.translate == pytest.approx(150 * 32 / 224) and small.cutout_pad == 8
  assert at(30.0, 224).posterize_bits == 8 and at(0.0, 224).posterize_bits == 0
  with pytest.raises(ValueError, match="magnitude=31"):
    randaugment.RandAugment(2, 31.0, S)


def test_pixel_ops_equal_pil_and_their_closed_forms():
  x = _image(1)
  t = tf.constant(x)
  np.testing.assert_array_equal(randaugment.invert(t), 255 - x)
  np.testing.assert_array_equal(randaugment.invert(t),
                                np.asarray(ImageOps.invert(Image.fromarray(x))))
  for threshold in (0, 100, 255):
    np.testing.assert_array_equal(randaugment.solarize(t, threshold),
                                  np.asarray(ImageOps.solarize(Image.fromarray(x), threshold)))
  np.testing.assert_array_equal(randaugment.solarize(t, 384), x)  # Above 255: no pixel.
  for bits in (1, 3, 6, 8):
    np.testing.assert_array_equal(randaugment.posterize(t, bits),
                                  np.asarray(ImageOps.posterize(Image.fromarray(x), bits)))
    np.testing.assert_array_equal(randaugment.posterize(t, bits), x & ((0xFF << (8 - bits)) & 0xFF))
  np.testing.assert_array_equal(randaugment.posterize(t, 0), 0)
  np.testing.assert_array_equal(randaugment.solarize_add(t, 165),
                                np.where(x < 128, np.minimum(x.astype(int) + 165, 255), x))


@pytest.mark.parametrize("low, high", [(0, 256), (40, 90), (200, 210)])
def test_equalize_is_pils_and_flattens_the_histogram(low, high):
  """At 224 px (PIL's integer step clips the top of small images' histograms to 255)."""
  x = _image(2, size=224, low=low, high=high)
  out = randaugment.equalize(tf.constant(x)).numpy()
  np.testing.assert_array_equal(out, np.asarray(ImageOps.equalize(Image.fromarray(x))))
  np.testing.assert_array_equal(randaugment.equalize(tf.constant(x[:32, :32])),
                                np.asarray(ImageOps.equalize(Image.fromarray(x[:32, :32]))))
  if (low, high) == (40, 90):  # Values bunched in 40..89 spread over 0..255, CDF near-linear.
    for c in range(3):
      values = np.sort(out[..., c].ravel())
      assert values[0] == 0 and values[-1] >= 245
      cdf = np.searchsorted(values, np.arange(256), side="right") / values.size
      assert np.max(np.abs(cdf - np.arange(1, 257) / 256)) < 0.05


def test_autocontrast_stretches_each_channel():
  x = _image(3, low=60, high=181)
  x[..., 2] = 77  # A constant channel is kept.
  out = randaugment.autocontrast(tf.constant(x)).numpy()
  x2 = x[..., :2].astype(np.int64)
  lo, hi = x2.min((0, 1)), x2.max((0, 1))
  np.testing.assert_array_equal(out[..., :2], (x2 - lo) * 255 // (hi - lo))
  np.testing.assert_array_equal(out[..., 2], 77)


def test_enhance_ops_blend_towards_their_degenerate_image():
  x = _image(4)
  t = tf.constant(x)
  np.testing.assert_array_equal(randaugment.brightness(t, 0.5), x // 2)
  np.testing.assert_array_equal(randaugment.brightness(t, 2.8),
                                np.floor(np.clip(2.8 * x.astype(np.float32), 0, 255)))
  grey = tf.image.rgb_to_grayscale(t).numpy()
  np.testing.assert_array_equal(randaugment.color(t, 0.0), np.repeat(grey, 3, -1))
  np.testing.assert_array_equal(randaugment.contrast(t, 0.0), np.floor(grey.mean()))
  for op in (randaugment.color, randaugment.contrast, randaugment.brightness,
             randaugment.sharpness):
    np.testing.assert_array_equal(op(t, 1.0), x)
  smooth = randaugment.sharpness(t, 0.0).numpy()
  border = np.ones((S, S), bool)
  border[1:-1, 1:-1] = False
  np.testing.assert_array_equal(smooth[border], x[border])
  kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float64) / 13
  inner = sum(kernel[i, j] * x[i:S - 2 + i, j:S - 2 + j].astype(np.float64)
              for i in range(3) for j in range(3))
  np.testing.assert_allclose(smooth[1:-1, 1:-1], np.floor(inner), atol=1)  # Float32 conv.


def test_geometric_ops_move_pixels_as_stated():
  x = _image(5)
  t = tf.constant(x)
  for k in (1, 2, 3):  # Counter-clockwise quarter turns about the centre.
    np.testing.assert_array_equal(randaugment.rotate(t, 90.0 * k), np.rot90(x, k))
    np.testing.assert_array_equal(randaugment.rotate(t, -90.0 * k), np.rot90(x, -k))
  fill = np.full_like(x, 128)
  shifted = fill.copy()
  shifted[:, :-5] = x[:, 5:]  # Output column c is input column c + 5.
  np.testing.assert_array_equal(randaugment.translate_x(t, 5.0), shifted)
  shifted = fill.copy()
  shifted[5:] = x[:-5]
  np.testing.assert_array_equal(randaugment.translate_y(t, -5.0), shifted)
  rows, cols = np.mgrid[:S, :S]
  for k in (1.0, -1.0):
    source = cols + int(k) * rows  # Shear x: input column x + k y.
    inside = (source >= 0) & (source < S)
    expected = np.where(inside[..., None], x[rows, np.clip(source, 0, S - 1)], 128)
    np.testing.assert_array_equal(randaugment.shear_x(t, k), expected)
    np.testing.assert_array_equal(randaugment.shear_y(tf.constant(np.swapaxes(x, 0, 1)), k),
                                  np.swapaxes(expected, 0, 1))
  cut = randaugment.cutout(t, tf.constant([5, 30]), 4).numpy()
  box = (rows >= 1) & (rows < 9) & (cols >= 26)
  np.testing.assert_array_equal(cut[box], 128)
  np.testing.assert_array_equal(cut[~box], x[~box])


# RandAugment: the draws and the pipeline.


def test_draws_are_uniform_ops_fair_signs_and_centres_inside():
  n, layers = 2000, 2
  augment = randaugment.RandAugment(layers, 15.0, S)
  draws = tf.data.Dataset.range(n).map(
      lambda p: augment.draws(tf.stack([tf.constant(5, tf.int64), p]), S, 24)).batch(n)
  ops, signs, centers = (v.numpy() for v in draws.get_single_element())
  counts = np.bincount(ops.ravel(), minlength=len(randaugment.OPS))
  expected = n * layers / len(randaugment.OPS)
  assert len(counts) == len(randaugment.OPS)
  assert np.all(np.abs(counts - expected) < 5 * math.sqrt(expected))
  assert set(np.unique(signs)) == {-1.0, 1.0}
  assert abs(np.mean(signs)) < 5 / math.sqrt(signs.size)
  assert centers.min() == 0 and centers[..., 0].max() == S - 1 and centers[..., 1].max() == 23
  assert not np.array_equal(ops[:, 0], ops[:, 1])  # The layers draw apart.


def test_randaugment_applies_the_drawn_ops_after_the_crop_and_flip(root):
  """One layer at magnitude 0: each image is its plain training view rounded to whole pixels,
  with the op drawn from [randaugment key, position] applied; where that op is the identity
  at magnitude 0 (7 of 16), the crop and flip are visibly those of the plain pipeline."""
  keys = tf_pipeline.stream_keys(3, 0)
  augmented = _batches(_config(root, randaugment_layers=1, randaugment_magnitude=0.0), 5)
  options = preprocessing.PreprocessOptions(image_size=16, eval_resize=16)
  augment = randaugment.RandAugment(1, 0.0, 16)
  identities = 0
  for p, image_bytes in _records(root, keys, 20):
    pixels = preprocessing.inception_crop_pixels(
        image_bytes, tf.constant([keys.crop, p], tf.int64), options)
    rounded = tf.cast(tf.round(tf.clip_by_value(pixels, 0, 255)), tf.uint8)
    ops, signs, centers = augment.draws(tf.constant([keys.randaugment, p], tf.int64), 16, 16)
    op = randaugment.OPS[int(ops[0])]
    out = randaugment.apply(op, rounded, augment.levels, signs[0], centers[0])
    got = augmented[p // 4]["image"][p % 4]
    np.testing.assert_array_equal(got, preprocessing.to_signed_unit(out))
    if op in IDENTITY_AT_0:
      identities += 1
      np.testing.assert_array_equal(got, preprocessing.to_signed_unit(rounded))
  assert identities > 0


def test_augmented_batches_keep_shape_dtype_and_range(root):
  for batch in _batches(_config(root, randaugment_layers=3, randaugment_magnitude=30.0,
                                mixup_alpha=1.0), 4, local_batch_size=6):
    assert batch["image"].shape == (6, 16, 16, 3) and batch["image"].dtype == np.float32
    assert -1 <= batch["image"].min() and batch["image"].max() <= 1
    assert batch["label"].shape == (6, len(CLASSES))


def test_augmented_stream_resumes_exactly_and_depends_on_the_seed(root):
  config = _config(root, randaugment_layers=2, randaugment_magnitude=15.0, mixup_alpha=0.5)
  for process_index, process_count in [(0, 1), (1, 2)]:
    kwargs = dict(process_index=process_index, process_count=process_count)
    full = _batches(config, 16, **kwargs)
    again = _batches(config, 16, **kwargs)
    late = _batches(config, 7, start_step=9, **kwargs)  # Crosses epochs (24 or 12 images).
    for a, b in zip(full + full[9:], again + late):
      np.testing.assert_array_equal(a["image"], b["image"])
      np.testing.assert_array_equal(a["label"], b["label"])
    other = list(itertools.islice(input_pipeline.train_iterator(
        config, seed=4, local_batch_size=4, **kwargs), 4))
    plain = _batches(_config(root), 4, **kwargs)
    for a, b, c in zip(full, other, plain):
      assert not np.allclose(a["image"], b["image"])  # Another seed, other images.
      assert not np.allclose(a["image"], c["image"])  # Augmented.


@pytest.mark.parametrize("augment, match", [
    (dict(randaugment_layers=-1), "randaugment_layers=-1 must be an integer >= 0"),
    (dict(randaugment_layers=2, randaugment_magnitude=31.0),
     r"magnitude=31.0 must be in \[0, 30\]"),
    (dict(mixup_alpha=-0.5), "mixup_alpha=-0.5 must be >= 0"),
    (dict(mixup=0.5), "config.augment has a key the settings do not"),
])
def test_bad_augment_settings_are_named(root, augment, match):
  with pytest.raises(ValueError, match=match):
    input_pipeline.train_iterator(_config(root, **augment), local_batch_size=4, seed=0)


def test_the_digits_reader_refuses_augmentation(tmp_path):
  config = tiny_digits_config.get_config(3)
  config.augment = dict(mixup_alpha=0.2)
  with pytest.raises(ValueError, match="'digits' reader does not have"):
    input_pipeline.train_iterator(config, local_batch_size=8, seed=0)
  with pytest.raises(ValueError, match="'digits' reader does not have"):
    loop.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()  # Refused before any work.


# Soft labels.


@pytest.mark.parametrize("loss", sorted(metrics.LOSSES))
def test_one_hot_probability_labels_equal_integer_labels(loss):
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(scale=3, size=(16, 5)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 5, 16), jnp.int32)
  onehot = jax.nn.one_hot(labels, 5)
  np.testing.assert_allclose(metrics.cross_entropies(logits, onehot, loss),
                             metrics.cross_entropies(logits, labels, loss), rtol=1e-6)
  np.testing.assert_array_equal(metrics.correct(logits, onehot), metrics.correct(logits, labels))
  mask = jnp.asarray(rng.integers(0, 2, 16), jnp.float32)
  soft, hard = (metrics.masked_sums(logits, y, mask, loss) for y in (onehot, labels))
  for key in hard:
    np.testing.assert_allclose(soft[key], hard[key], rtol=1e-6)


def test_mixed_label_losses_and_accuracy_by_hand():
  z = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
  t = np.array([[0.7, 0.3, 0.0], [0.5, 0.5, 0.0]])  # A mixed label; a tie.
  log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
  softmax = -(t * log_p).sum(1)
  log_s = lambda v: -np.log1p(np.exp(-v))
  sigmoid = -(t * log_s(z) + (1 - t) * log_s(-z)).sum(1)
  logits, labels = jnp.asarray(z, jnp.float32), jnp.asarray(t, jnp.float32)
  np.testing.assert_allclose(metrics.cross_entropies(logits, labels), softmax, rtol=1e-6)
  np.testing.assert_allclose(metrics.cross_entropies(logits, labels, "sigmoid_xent"), sigmoid,
                             rtol=1e-6)
  np.testing.assert_allclose(metrics.cross_entropy(logits, labels), softmax.mean(), rtol=1e-6)
  # Row 0: argmax 0 of both. Row 1: the tie counts as class 0, the logits say 1.
  np.testing.assert_array_equal(metrics.correct(logits, labels), [True, False])
  assert float(metrics.accuracy(logits, labels)) == 0.5


def test_adversarial_attacks_take_probability_labels():
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=(12, 4)), jnp.float32)
  x = jnp.asarray(rng.uniform(-0.8, 0.8, (16, 12)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 4, 16), jnp.int32)
  logits_fn = lambda v: v @ w
  eps = adversarial.to_model_units(8.0)
  np.testing.assert_array_equal(adversarial.fgsm(logits_fn, x, jax.nn.one_hot(y, 4), eps),
                                adversarial.fgsm(logits_fn, x, y, eps))
  mixed = 0.7 * jax.nn.one_hot(y, 4) + 0.3 * jax.nn.one_hot(jnp.roll(y, 1), 4)
  grad, _ = adversarial.input_gradient(logits_fn, x, mixed)
  p = jax.nn.softmax(x @ w)
  np.testing.assert_allclose(grad, (p - mixed) @ w.T, rtol=1e-5, atol=1e-6)  # d CE / dx.


# Training with augmentation.


def _train_config(root, num_train_steps, **overrides):
  """configs/cifar10_augment.py shrunk: 16 px, a 1-layer ViT, batch 8, SAM groups of 2."""
  config = shrink_folder_config(cifar10_augment.get_config(), root, len(CLASSES), 16,
                                num_train_steps)
  config.sam.m = 2
  config.log_every_steps = config.eval_every_steps = 100
  config.checkpoint_every_steps = 4
  config.update(overrides)
  return config


def _train_on(config, num_devices, batches):
  """The parameters after a train step per batch on the first ``num_devices`` devices."""
  run = setup.build(defaults.complete(config), jax.devices()[:num_devices],
                    num_classes=len(CLASSES))
  state = parallel.replicate(run.init_state(jax.random.PRNGKey(0)), run.mesh)
  step_metrics = None
  for batch in batches:
    state, step_metrics = run.train_step(state, parallel.shard_batch(batch, run.mesh))
  return jax.device_get(state.params), jax.device_get(step_metrics)


def test_augmented_training_is_the_same_on_1_and_8_devices(root):
  """SGD here: Adam turns the rounding noise of gradients that are 0 in exact arithmetic (the
  attention's key bias) into steps of the learning rate's size."""
  config = _train_config(root, 3)
  config.optimizer.update(dict(name="sgd", learning_rate=0.1))
  batches = _batches(defaults.complete_data(config), 3, local_batch_size=8)
  assert batches[0]["label"].shape == (8, len(CLASSES))  # Soft labels reach the step.
  p0, _ = _train_on(config, 1, [])
  p1, m1 = _train_on(config, 1, batches)
  p8, m8 = _train_on(config, 8, batches)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), p1, p8)
  assert np.max(np.abs(p1["head"]["kernel"] - p0["head"]["kernel"])) > 1e-3
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
  np.testing.assert_allclose(m1["accuracy"], m8["accuracy"])


def test_augmented_run_resumes_exactly_after_a_kill(tmp_path, root):
  """7 steps straight, or killed after the step-4 checkpoint (the later ones lost) and rerun:
  the same parameters and optimizer state; without augmentation, other parameters."""
  config = _train_config(root, 7)
  straight = loop.train_and_evaluate(config, str(tmp_path / "straight"))
  os.makedirs(tmp_path / "killed" / "checkpoints")
  shutil.copytree(tmp_path / "straight" / "checkpoints" / "4",
                  tmp_path / "killed" / "checkpoints" / "4")
  shutil.copytree(tmp_path / "straight" / "config_history",
                  tmp_path / "killed" / "config_history")
  resumed = loop.train_and_evaluate(config, str(tmp_path / "killed"))
  assert int(resumed.step) == 7
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight.params),
               jax.device_get(resumed.params))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight.opt_state),
               jax.device_get(resumed.opt_state))
  plain = config.copy_and_resolve_references()
  plain.augment = defaults.augment()
  unaugmented = loop.train_and_evaluate(plain, str(tmp_path / "plain"))
  kernel = lambda s: jax.device_get(s.params)["head"]["kernel"]
  assert not np.allclose(kernel(straight), kernel(unaugmented))
