"""Reading back the scalars a run wrote (clu writers, and TF1-style simple values)."""

import numpy as np
import pytest
import tensorflow as tf
from clu import metric_writers

from sam_jax.analysis import curves


def test_reads_what_clu_wrote_and_keeps_the_last_value_of_a_step(tmp_path):
  writer = metric_writers.create_default_writer(str(tmp_path))
  for step in (10, 20, 30):
    writer.write_scalars(step, {"train_loss": 1.0 / step, "eval_accuracy": step / 100})
  writer.write_scalars(20, {"train_loss": 0.25})  # As after resuming from step 10.
  writer.flush()
  writer.close()
  scalars = curves.read_scalars(str(tmp_path))
  steps, values = scalars["train_loss"]
  np.testing.assert_array_equal(steps, [10, 20, 30])
  np.testing.assert_allclose(values, [0.1, 0.25, 1 / 30], rtol=1e-6)
  np.testing.assert_allclose(scalars["eval_accuracy"][1], [0.1, 0.2, 0.3], rtol=1e-6)


def test_reads_simple_value_scalars(tmp_path):
  with tf.compat.v1.Graph().as_default():
    writer = tf.compat.v1.summary.FileWriter(str(tmp_path))
    for step in (1, 2):
      summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(
          tag="train_accuracy", simple_value=step / 4)])
      writer.add_summary(summary, step)
    writer.close()
  steps, values = curves.read_scalars(str(tmp_path))["train_accuracy"]
  np.testing.assert_array_equal(steps, [1, 2])
  np.testing.assert_allclose(values, [0.25, 0.5])


def test_no_event_files_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="no TensorBoard event files"):
    curves.read_scalars(str(tmp_path))
