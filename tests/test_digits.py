"""The digits data source: fixed split, value range, exact resumption, process slicing."""

import itertools

import jax
import numpy as np

from configs import default
from sam_jax.data import digits


def test_split_sizes_and_ranges():
  config = default.get_config()
  info = digits.get_info(config)
  assert (info.num_classes, info.eval_num_examples) == (10, 360)
  batch = next(digits.train_iterator(config, local_batch_size=32, seed=0))
  assert batch["image"].shape == (32, 16, 16, 3) and batch["image"].dtype == np.float32
  assert batch["image"].min() >= -1 and batch["image"].max() <= 1
  assert batch["label"].dtype == np.int32


def test_start_step_resumes_the_same_stream():
  config = default.get_config()
  full = list(itertools.islice(digits.train_iterator(config, local_batch_size=128, seed=3), 25))
  late = list(itertools.islice(
      digits.train_iterator(config, local_batch_size=128, seed=3, start_step=20), 5))
  for a, b in zip(full[20:], late):
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_array_equal(a["image"], b["image"])
  # Each epoch (11 steps of 128) sees distinct examples.
  epoch = np.concatenate([b["image"][:, ::2, ::2, 0].reshape(128, -1) for b in full[:11]])
  assert len(np.unique(epoch, axis=0)) >= 0.98 * len(epoch)


def test_eval_sees_every_example_once():
  config = default.get_config()
  batches = list(digits.eval_iterator(config, local_batch_size=96))
  mask = np.concatenate([b["mask"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])[mask > 0]
  assert mask.sum() == 360 and len(mask) == 384
  np.testing.assert_array_equal(labels, digits._load_split("test")[1])
  assert jax.process_count() == 1
