"""Gradient accumulation (``config.accumulation_steps``): k micro-batches of whole SAM
groups, each with its own ascent and descent gradient, then one update from their mean.

A step over k micro-batches equals the step over the whole batch at once, to float
rounding: parameters, optimizer state, BatchNorm statistics (their running averages are
linear in each micro-batch's statistics, so the micro-batches' mean equals the groups'
mean without accumulation) and metrics, on 1 and 8 devices, for every SAM kind that takes
accumulation; the others are refused by name before any work.
"""

import jax
import numpy as np
import pytest

from sam_jax import parallel
from sam_jax.config import defaults
from sam_jax.training import setup
from tests import tiny_digits_config
from tests.test_train_step import TinyNet

BATCH, STEPS = 64, 3
M = 4  # Examples per SAM group (and dropout key): 8 per device, 4 per micro-batch at k = 2.


def _config(accumulation_steps: int, m: int | None, **sam):
  config = tiny_digits_config.get_config(num_train_steps=10)
  config.num_classes, config.batch_size, config.image_size = 4, BATCH, 4
  config.accumulation_steps = accumulation_steps
  config.sam.update(dict(rho=0.1, m=m) | sam)
  return config


MODEL = TinyNet(batch_norm=True, dropout=0.2)  # BatchNorm statistics and dropout keys.


def _train(config, num_devices: int):
  """``STEPS`` steps of ``setup.build(config)`` on the first ``num_devices`` devices."""
  run = setup.build(defaults.complete(config), jax.devices()[:num_devices], model=MODEL)
  state = parallel.replicate(jax.jit(run.init_state)(jax.random.PRNGKey(0)), run.mesh)
  rng = np.random.default_rng(0)
  for _ in range(STEPS):
    batch = {"image": rng.normal(size=(BATCH, 4, 4, 3)).astype(np.float32),
             "label": rng.integers(0, 4, BATCH).astype(np.int32)}
    state, metrics = run.train_step(state, parallel.shard_batch(batch, run.mesh))
  return jax.device_get(state), jax.device_get(metrics)


def _assert_same_run(a, b, tolerance: float = 1e-4):
  """Each leaf of the states within ``tolerance`` times its largest magnitude, the metrics
  within ``tolerance`` relatively."""
  (state_a, metrics_a), (state_b, metrics_b) = a, b
  close = lambda x, y: np.testing.assert_allclose(
      x, y, rtol=0, atol=tolerance * float(np.abs(y).max()) + 1e-12)
  for part in ("params", "opt_state", "model_state"):
    jax.tree.map(close, getattr(state_a, part), getattr(state_b, part))
  for key in ("loss", "accuracy", "grad_norm", "rho"):
    np.testing.assert_allclose(metrics_a[key], metrics_b[key], rtol=tolerance)


CASES = {  # name -> (m, config.sam keys, other config keys)
    "sam": (M, {}, {}),
    "asam": (M, {"kind": "asam"}, {}),
    "gsam": (M, {"kind": "gsam", "gsam": {"alpha": 0.3, "rho_min": 0.05}}, {}),
    "msam": (M, {"kind": "msam", "rho": 1.0}, {}),
    "base": (M, {"rho": 0.0}, {}),
    "every_2nd_step": (M, {"every_k_steps": 2}, {}),
    "l2_in_loss_sgd": (M, {}, {"optimizer.name": "sgd", "optimizer.weight_decay_in_loss": True,
                               "optimizer.weight_decay": 0.01}),
}


def _case_config(case: str, k: int):
  m, sam, other = CASES[case]
  config = _config(k, m, **sam)
  for key, value in other.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


@pytest.mark.parametrize("case", list(CASES))
def test_k_micro_batches_equal_one_batch_on_1_and_8_devices(case):
  """1 device with 8 micro-batches == 1 device without; 8 devices with 2 == 8 without (m
  dividing the micro-batch: the same groups, the same dropout keys)."""
  assert jax.device_count() == 8
  for num_devices, k in [(1, 8), (8, 2)]:
    _assert_same_run(_train(_case_config(case, 1), num_devices),
                     _train(_case_config(case, k), num_devices))


def test_one_device_with_8_micro_batches_runs_the_8_device_step():
  """What a user with one device runs is the paper slice's step (m = the per-device batch of
  8 devices = the micro-batch of 8 on one device): the same groups and keys,
  apart only as far as the reduction order moves 1 device from 8 without accumulation
  (3 AdamW steps; Adam's moments are the loosest at 2e-3 of their largest value)."""
  _assert_same_run(_train(_config(8, None), 1), _train(_config(1, None), 8), tolerance=2e-3)


def test_the_comparison_sees_a_small_change():
  with pytest.raises(AssertionError):
    _assert_same_run(_train(_config(1, M), 1), _train(_config(8, M, rho=0.1001), 1))


def test_a_group_larger_than_a_micro_batch_is_refused():
  """A SAM group takes one ascent: it cannot be split over micro-batches."""
  with pytest.raises(ValueError, match=r"m=16 examples \(larger than a micro-batch of 8"):
    setup.build(defaults.complete(_config(8, 16)), jax.devices()[:1], model=TinyNet())


@pytest.mark.parametrize("sam, match", [
    ({"kind": "looksam"}, "kind='looksam'"),
    ({"kind": "aesam"}, "kind='aesam'"),
    ({"kind": "gsam", "gsam": {"decompose": "global"}}, "decompose='global'"),
    ({"sync": "global", "m": None}, "m=64 examples"),
])
def test_kinds_that_need_the_whole_batch_are_refused_by_name(sam, match):
  config = _config(2, 2)
  config.sam.update(sam)
  with pytest.raises(ValueError, match=rf"config.accumulation_steps=2 cannot run .*{match}"):
    setup.build(defaults.complete(config), jax.devices(), model=TinyNet())


def test_a_batch_the_micro_batches_do_not_divide_is_refused():
  with pytest.raises(ValueError, match=r"batch_size=64 must be divisible by the devices times "
                                       r"config.accumulation_steps \(8 x 3\)"):
    setup.build(defaults.complete(_config(3, 2)), jax.devices(), model=TinyNet())
