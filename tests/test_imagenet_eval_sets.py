"""ImageNet-ReaL accuracy, the ImageNet-R 200-class mapping, ImageNet-C averaging, the catalog."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sam_jax.data import catalog, imagenet_c, imagenet_r, imagenet_real


def test_real_accuracy_by_hand():
  logits = np.array([[0.1, 0.9, 0.0, 0.0],    # predicts 1, real {1, 2}: correct
                     [0.8, 0.1, 0.1, 0.0],    # predicts 0, real {3}: wrong
                     [0.0, 0.0, 0.2, 0.1],    # predicts 2, real {}: left out
                     [0.0, 0.0, 0.0, 1.0],    # predicts 3, real {3}: correct
                     [0.0, 0.0, 0.0, 1.0]])   # predicts 3, real {3}, but padding
  real = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]], bool)
  mask = np.array([1, 1, 1, 1, 0], np.float32)
  correct, counted = imagenet_real.correct_counts(logits, real, mask)
  assert (int(correct), int(counted)) == (2, 3)
  assert imagenet_real.accuracy(logits, real, mask) == pytest.approx(2 / 3)
  assert imagenet_real.accuracy(logits, real) == pytest.approx(3 / 4)
  with pytest.raises(ValueError, match="no example has a real label"):
    imagenet_real.accuracy(logits[2:3], real[2:3])


def test_imagenet_r_classes_match_the_tfds_imagenet_label_names():
  """The indices (from the ImageNet-R authors) point at the same wnids in TFDS's order."""
  assert len(imagenet_r.CLASS_INDICES) == len(set(imagenet_r.CLASS_INDICES)) == 200
  assert list(imagenet_r.CLASS_INDICES) == sorted(imagenet_r.CLASS_INDICES)
  names = tfds.builder("imagenet2012").info.features["label"].names
  assert [names[i] for i in imagenet_r.CLASS_INDICES] == list(imagenet_r.WNIDS)
  assert names[1] == "n01443537" and names[988] == "n12267677"  # First and last of the 200.


def test_imagenet_r_restricts_logits_to_the_200_classes_by_hand():
  logits = np.full((3, 1000), -5.0, np.float32)
  logits[0, 0] = 9.0      # Best overall is class 0 (not in ImageNet-R) ...
  logits[0, 2] = 1.0      # ... so the prediction is class 2, ImageNet-R's 2nd class.
  logits[1, 988] = 3.0    # The last ImageNet-R class.
  logits[2, 1] = 0.5      # Class 1 (ImageNet-R's first) beats -5 elsewhere.
  labels = np.array([2, 987, 1])
  restricted = np.asarray(imagenet_r.restrict_logits(logits))
  assert restricted.shape == (3, 200)
  assert restricted[0, 1] == 1.0 and restricted[1, 199] == 3.0 and restricted[2, 0] == 0.5
  np.testing.assert_array_equal(imagenet_r.predict(logits), [2, 988, 1])
  np.testing.assert_array_equal(imagenet_r.subset_labels(np.array([1, 2, 988, 0, 3])),
                                [0, 1, 199, -1, -1])
  correct, counted = imagenet_r.correct_counts(logits, labels, np.array([1.0, 1.0, 0.0]))
  assert (int(correct), int(counted)) == (1, 2)


def test_imagenet_c_lists_the_19_tfds_corruptions_at_5_severities():
  names = imagenet_c.dataset_names()
  assert len(imagenet_c.CORRUPTIONS) == 19 and len(names) == 95 == len(set(names))
  configs = {c.name for c in tfds.builder_cls("imagenet2012_corrupted").BUILDER_CONFIGS}
  assert {n.split("/")[1] for n in names} == configs
  with pytest.raises(ValueError, match="severity 6"):
    imagenet_c.dataset_name("fog", 6)


def test_imagenet_c_summary_by_hand():
  accuracies = {imagenet_c.dataset_name(c, s): (i + 1) / 100 + s / 1000
                for i, c in enumerate(imagenet_c.CORRUPTIONS) for s in imagenet_c.SEVERITIES}
  summary = imagenet_c.summarize(accuracies)
  # Corruption i: mean over s of (i + 1) / 100 + s / 1000 = (i + 1) / 100 + 0.003.
  for i, c in enumerate(imagenet_c.CORRUPTIONS):
    assert summary[c] == pytest.approx((i + 1) / 100 + 0.003)
  assert summary["mean"] == pytest.approx(np.mean(np.arange(1, 20)) / 100 + 0.003)
  benchmark = imagenet_c.summarize(accuracies, imagenet_c.BENCHMARK_CORRUPTIONS)
  assert benchmark["mean"] == pytest.approx(np.mean(np.arange(1, 16)) / 100 + 0.003)
  del accuracies["imagenet2012_corrupted/fog_3"]
  with pytest.raises(ValueError, match="fog_3"):
    imagenet_c.summarize(accuracies)


def test_catalog_entries():
  assert catalog.spec("imagenet2012_corrupted/fog_3").central_crop is False
  assert catalog.spec("imagenet_v2/topimages").eval_split == "test"
  assert catalog.spec("imagenet2012_real").label_key == "original_label"
  assert catalog.spec("some_other_dataset") == catalog.DatasetSpec()
  assert {s.metric for s in catalog.DATASETS.values()} <= {"top1", "real", "imagenet_r"}
  assert len(catalog.PAPER_EVAL_SETS) == 5 + 95
  assert catalog.PAPER_EVAL_SETS["imagenet_minival"] == ("imagenet2012", "train[99%:]")


def test_metric_modules_import_without_tensorflow():
  probe = ("import importlib.abc, sys\n"
           "class Block(importlib.abc.MetaPathFinder):\n"
           "  def find_spec(self, name, path=None, target=None):\n"
           "    if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets'):\n"
           "      raise ImportError(name)\n"
           "sys.meta_path.insert(0, Block())\n"
           "from sam_jax.data import catalog, imagenet_c, imagenet_r, imagenet_real\n")
  out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
