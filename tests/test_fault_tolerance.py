"""Runs killed (SIGKILL) or preempted (SIGTERM) resume to the uninterrupted result;
a non-finite step stops the run naming it, keeping the last good checkpoint."""

import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from sam_jax.data import digits
from sam_jax.models import param_blocks
from sam_jax.training import loop
from tests import tiny_digits_config

STEPS = 40
OVERRIDES = dict(batch_size=16, eval_batch_size=40, image_size=8, num_train_steps=STEPS,
                 log_every_steps=5, eval_every_steps=1000, checkpoint_every_steps=2,
                 keep_checkpoints=50)
MODEL = dict(hidden_size=16, mlp_dim=32, num_heads=2, num_layers=1)


def _command(workdir):
  flags = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  flags += [f"--config.model.{k}={v}" for k, v in MODEL.items()]
  flags += ["--config.optimizer.warmup_steps=2"]
  return [sys.executable, "-m", "sam_jax.main", "--config=configs/default.py",
          f"--workdir={workdir}", *flags]


def _steps(workdir):
  ckpt = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(ckpt) if d.isdigit()) if os.path.isdir(ckpt) else []


def _start_and_signal(workdir, sig, after_step, cwd):
  proc = subprocess.Popen(_command(workdir), cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while not any(s >= after_step for s in _steps(workdir)):
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(sig)
  return proc.wait(timeout=300), proc.stderr.read()


def _final_params(workdir):
  restored = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(STEPS), "default"))
  return param_blocks.flatten(restored["params"])


def test_sigkill_and_sigterm_then_resume_equal_an_uninterrupted_run(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  rng = random.Random(0)
  reference, interrupted = str(tmp_path / "reference"), str(tmp_path / "interrupted")
  subprocess.run(_command(reference), cwd=root, check=True, capture_output=True)

  code, _ = _start_and_signal(interrupted, signal.SIGKILL, rng.randrange(4, 12), root)
  assert code == -signal.SIGKILL
  before = _steps(interrupted)
  # A save cut short leaves a temporary directory: it must be skipped, not fatal.
  os.makedirs(os.path.join(interrupted, "checkpoints", "39.orbax-checkpoint-tmp", "junk"))
  code, log = _start_and_signal(interrupted, signal.SIGTERM, max(before) + rng.randrange(4, 12),
                                root)
  assert code == 0, log[-3000:]
  assert "Skipping incomplete checkpoint" in log and "SIGTERM received" in log
  after = _steps(interrupted)
  assert set(before) <= set(after)  # Nothing earlier was deleted.
  subprocess.run(_command(interrupted), cwd=root, check=True, capture_output=True)

  ref, got = _final_params(reference), _final_params(interrupted)
  assert sorted(ref) == sorted(got)
  for key in ref:
    np.testing.assert_array_equal(got[key], ref[key], err_msg=key)


def _poisoned_digits(poison_step):
  """digits.train_iterator with a NaN image at ``poison_step`` (1-based)."""
  original = digits.train_iterator

  def train_iterator(config, *, local_batch_size, seed, start_step=0):
    for step, batch in enumerate(original(config, local_batch_size=local_batch_size, seed=seed,
                                          start_step=start_step), start=start_step + 1):
      if step == poison_step:
        batch = dict(batch, image=np.full_like(batch["image"], np.nan))
      yield batch

  return train_iterator


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch):
  monkeypatch.setattr(digits, "train_iterator", _poisoned_digits(poison_step=5))
  config = tiny_digits_config.get_config(num_train_steps=10)
  with pytest.raises(FloatingPointError, match=r"step 5\b.*last good checkpoint is step 4"):
    loop.train_and_evaluate(config, str(tmp_path))
  restored = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / "4" / "default")
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored["params"]))
  assert _steps(str(tmp_path)) == [2, 4]


def test_nonfinite_step_is_skipped_when_configured(tmp_path, monkeypatch):
  monkeypatch.setattr(digits, "train_iterator", _poisoned_digits(poison_step=3))
  state = loop.train_and_evaluate(
      tiny_digits_config.get_config(num_train_steps=6, nonfinite="skip"), str(tmp_path))
  assert int(state.step) == 6
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jax.device_get(state.params)))
