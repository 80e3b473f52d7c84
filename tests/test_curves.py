"""Reading back the scalars a run wrote (clu writers, and TF1-style simple values), older
runs' flat tags under the grouped ones."""

import numpy as np
import pytest
import tensorflow as tf
from clu import metric_writers

from sam_jax import metrics
from sam_jax.analysis import curves


def test_reads_what_clu_wrote_and_keeps_the_last_value_of_a_step(tmp_path):
  writer = metric_writers.create_default_writer(str(tmp_path))
  for step in (10, 20, 30):
    writer.write_scalars(step, {"train/loss": 1.0 / step, "eval/accuracy": step / 100})
  writer.write_scalars(20, {"train/loss": 0.25})  # As after resuming from step 10.
  writer.flush()
  writer.close()
  scalars = curves.read_scalars(str(tmp_path))
  steps, values = scalars["train/loss"]
  np.testing.assert_array_equal(steps, [10, 20, 30])
  np.testing.assert_allclose(values, [0.1, 0.25, 1 / 30], rtol=1e-6)
  np.testing.assert_allclose(scalars["eval/accuracy"][1], [0.1, 0.2, 0.3], rtol=1e-6)


def test_an_older_runs_flat_tags_give_the_same_curves_as_grouped_ones(tmp_path):
  """A run written before the grouping (``train_loss``...) reads as one written after it."""
  train = {"loss": [2.0, 1.5, 0.75], "accuracy": [0.25, 0.5, 0.875], "skipped_steps": [0, 0, 0]}
  evals = {"loss": [0.5], "accuracy": [0.75], "num_examples": [360]}
  read = {}
  for form, separator in (("flat", "_"), ("grouped", "/")):
    writer = metric_writers.create_default_writer(str(tmp_path / form))
    for i, step in enumerate((2, 4, 6)):
      writer.write_scalars(step, {f"train{separator}{k}": v[i] for k, v in train.items()} |
                           {"steps_per_sec": 10.0 + i, "examples_per_sec": 100.0 + i})
    writer.write_scalars(6, {f"eval{separator}{k}": v[0] for k, v in evals.items()})
    writer.close()
    read[form] = curves.read_scalars(str(tmp_path / form))
  assert sorted(read["flat"]) == sorted(read["grouped"]) == sorted(
      ["steps_per_sec", "examples_per_sec"] + [f"train/{k}" for k in train] +
      [f"eval/{k}" for k in evals])
  for tag, (steps, values) in read["grouped"].items():
    np.testing.assert_array_equal(read["flat"][tag][0], steps)
    np.testing.assert_array_equal(read["flat"][tag][1], values)
  np.testing.assert_allclose(read["flat"]["train/accuracy"][1], train["accuracy"])


@pytest.mark.parametrize("tag, grouped", [
    ("train_loss", "train/loss"), ("eval_num_examples", "eval/num_examples"),
    ("train/loss", "train/loss"), ("steps_per_sec", "steps_per_sec"),
    ("examples_per_sec", "examples_per_sec"), ("training_x", "training_x")])
def test_grouped_tag(tag, grouped):
  assert metrics.grouped_tag(tag) == grouped
  assert metrics.grouped_tag(grouped) == grouped


def test_reads_simple_value_scalars(tmp_path):
  with tf.compat.v1.Graph().as_default():
    writer = tf.compat.v1.summary.FileWriter(str(tmp_path))
    for step in (1, 2):
      summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(
          tag="train_accuracy", simple_value=step / 4)])
      writer.add_summary(summary, step)
    writer.close()
  steps, values = curves.read_scalars(str(tmp_path))["train/accuracy"]
  np.testing.assert_array_equal(steps, [1, 2])
  np.testing.assert_allclose(values, [0.25, 0.5])


def test_no_event_files_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="no TensorBoard event files"):
    curves.read_scalars(str(tmp_path))
