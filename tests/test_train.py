"""train_and_evaluate end to end on the digits: resume is exact, bad configs fail fast."""

import os
import shutil

import jax
import numpy as np
import pytest

from sam_jax import models
from sam_jax.training import loop
from tests import tiny_digits_config


def _tiny_config(num_train_steps, **overrides):
  return tiny_digits_config.get_config(num_train_steps, **overrides)


@pytest.mark.parametrize("kind", ["sam", "looksam", "msam", "aesam", "adversarial",
                                  "accumulation"])
def test_resume_continues_exactly(tmp_path, kind):
  """N steps, then M more from the step-N checkpoint, equal N + M steps in one go (LookSAM:
  k = 3, so the resumed run starts between full steps and reuses the stored direction;
  adversarial: SAM on PGD examples, whose random starts follow the step; accumulation: two
  micro-batches per step)."""
  total, first = 7, 4
  config = _tiny_config(total, checkpoint_every_steps=first)
  if kind == "adversarial":
    config.adversarial_training = dict(epsilon=8.0, step_size=2.0, num_steps=2)
  elif kind == "accumulation":
    config.accumulation_steps = 2
  else:
    config.sam.kind, config.sam.every_k_steps = kind, 3 if kind == "looksam" else None
  straight = loop.train_and_evaluate(config, str(tmp_path / "straight"))
  shutil.copytree(tmp_path / "straight" / "checkpoints" / str(first),
                  tmp_path / "resumed" / "checkpoints" / str(first))
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert int(resumed.step) == total
  assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints")) == [str(first), str(total)]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight.params),
               jax.device_get(resumed.params))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight.opt_state),
               jax.device_get(resumed.opt_state))


@pytest.mark.parametrize("key, value, match", [
    ("batch_size", 12, "divisible by the number of devices"),
    ("num_train_steps", 0, "positive integer"),
    ("optimizer.name", "lamb", "adamw"),
    ("sam.sync", "host", "device"),
    ("sam.rho", -1.0, "rho"),
    ("model.dtype", "float16", "bfloat16"),
    ("adversarial_training.step_size", 0.0, "step_size=0.0 must be > 0"),
])
def test_bad_config_fails_before_any_work(tmp_path, key, value, match):
  config = _tiny_config(3)
  config.adversarial_training = dict(epsilon=8.0, step_size=2.0, num_steps=2)
  parent, _, leaf = key.rpartition(".")
  (config[parent] if parent else config)[leaf] = value
  with pytest.raises(ValueError, match=match):
    loop.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_bfloat16_activations_keep_float32_parameters_and_optimizer_state(tmp_path):
  config = _tiny_config(3)
  config.model.dtype = "bfloat16"
  state = loop.train_and_evaluate(config, str(tmp_path))
  leaves = jax.tree.leaves(jax.device_get((state.params, state.opt_state)))
  float_leaves = [x for x in leaves if np.issubdtype(x.dtype, np.floating)]
  assert float_leaves and all(x.dtype == np.float32 for x in float_leaves)
  assert all(np.all(np.isfinite(x)) for x in float_leaves)
  model = models.from_config(config.model, 10)
  logits = model.apply({"params": state.params}, np.zeros((1, 8, 8, 3), np.float32), train=False)
  assert logits.dtype == np.dtype("bfloat16")


def test_accumulated_metrics_equal_clu_merge():
  """The compiled per-step accumulation gives what clu's eager merge of the steps gives."""
  rng = np.random.default_rng(0)
  steps = [{k: jax.numpy.asarray(rng.uniform(), jax.numpy.float32)
            for k in ("loss", "accuracy", "grad_norm", "learning_rate", "rho", "skipped")}
           for _ in range(3)]
  eager = loop.TrainMetrics.single_from_model_output(**steps[0])
  for step in steps[1:]:
    eager = eager.merge(loop.TrainMetrics.single_from_model_output(**step))
  total = None
  for step in steps:
    total = loop.accumulate_metrics(total, step)
  want, got = eager.compute(), total.compute()
  assert set(got) == set(want)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-6)
  np.testing.assert_allclose(got["loss"], np.mean([float(s["loss"]) for s in steps]), rtol=1e-6)
  np.testing.assert_allclose(got["rho"], float(steps[-1]["rho"]))
