"""Runs killed (SIGKILL), preempted (SIGTERM) or interrupted (SIGINT) resume to the
uninterrupted result; a second run on a held workdir is refused; a failed save stops the run;
a non-finite step stops the run naming it; a diverging run keeps a checkpoint from before."""

import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from sam_jax import cli
from sam_jax.checkpoints import checkpointing
from sam_jax.data import digits
from sam_jax.models import param_blocks
from sam_jax.training import config_history, loop
from tests import tiny_digits_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 40
OVERRIDES = dict(batch_size=16, eval_batch_size=40, image_size=8, num_train_steps=STEPS,
                 log_every_steps=1, eval_every_steps=1000, checkpoint_every_steps=2,
                 keep_checkpoints=50)
MODEL = dict(hidden_size=16, mlp_dim=32, num_heads=2, num_layers=1)


def _command(workdir, **overrides):
  flags = [f"--config.{k}={v}" for k, v in {**OVERRIDES, **overrides}.items()]
  flags += [f"--config.model.{k}={v}" for k, v in MODEL.items()]
  flags += ["--config.optimizer.warmup_steps=2"]
  return [sys.executable, "-m", "sam_jax.main", "--config=configs/default.py",
          f"--workdir={workdir}", *flags]


def _steps(workdir):
  ckpt = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(ckpt) if d.isdigit()) if os.path.isdir(ckpt) else []


def _final_params(workdir):
  restored = ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(STEPS), "default"))
  return param_blocks.flatten(restored["params"])


def _assert_same_params(workdir, reference):
  ref, got = _final_params(reference), _final_params(workdir)
  assert sorted(ref) == sorted(got)
  for key in ref:
    np.testing.assert_array_equal(got[key], ref[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 40-step run of the CLI."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  subprocess.run(_command(workdir), cwd=ROOT, check=True, capture_output=True)
  return workdir


class _Run:
  """A CLI run whose logged steps ("[k] train/loss=...") are followed as they come."""

  def __init__(self, workdir, **overrides):
    self.proc = subprocess.Popen(_command(workdir, **overrides), cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    self.lines, self.logged = [], -1
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stderr:
      self.lines.append(line)
      if "train/loss=" in line and "] [" in line:  # clu's logging writer: "[step] name=value".
        self.logged = max(self.logged, int(line.split("] [")[1].split("]")[0]))

  def wait_for(self, condition):
    deadline = time.time() + 300
    while not condition():
      assert self.proc.poll() is None, "".join(self.lines)[-3000:]
      assert time.time() < deadline
      time.sleep(0.02)

  def finish(self):
    code = self.proc.wait(timeout=300)
    self._reader.join()
    return code, "".join(self.lines)


def test_sigkill_and_sigterm_then_resume_equal_an_uninterrupted_run(tmp_path, reference):
  rng = random.Random(0)
  interrupted = str(tmp_path / "interrupted")
  run = _Run(interrupted)
  target = rng.randrange(4, 12)
  run.wait_for(lambda: any(s >= target for s in _steps(interrupted)))
  run.proc.send_signal(signal.SIGKILL)
  assert run.finish()[0] == -signal.SIGKILL
  before = _steps(interrupted)
  # A save cut short leaves a temporary directory: it must be skipped, not fatal.
  os.makedirs(os.path.join(interrupted, "checkpoints", "39.orbax-checkpoint-tmp", "junk"))
  run = _Run(interrupted)  # The killed run's lock is stale: its process is gone.
  target = max(before) + rng.randrange(4, 12)
  run.wait_for(lambda: any(s >= target for s in _steps(interrupted)))
  run.proc.send_signal(signal.SIGTERM)
  code, log = run.finish()
  assert code == cli.EXIT_STOPPED, log[-3000:]
  assert "Skipping incomplete checkpoint" in log and "SIGTERM received" in log
  assert "Took over the stale lock" in log
  after = _steps(interrupted)
  assert set(before) <= set(after)  # Nothing earlier was deleted.
  subprocess.run(_command(interrupted), cwd=ROOT, check=True, capture_output=True)
  _assert_same_params(interrupted, reference)


def test_sigint_saves_the_step_it_stops_at_and_resumes_exactly(tmp_path, reference):
  workdir = str(tmp_path / "w")
  target = random.Random(1).randrange(5, 30)
  run = _Run(workdir, checkpoint_every_steps=1000)  # No periodic save before the signal.
  run.wait_for(lambda: run.logged >= target)
  run.proc.send_signal(signal.SIGINT)
  code, log = run.finish()
  assert code == cli.EXIT_STOPPED, log[-3000:]
  saved = _steps(workdir)
  assert len(saved) == 1 and target <= saved[0] < STEPS  # The step it stopped at.
  assert run.logged == saved[0]  # No step ran past the saved one.
  code, log = _Run(workdir, checkpoint_every_steps=1000).finish()
  assert code == 0, log[-3000:]
  assert f"Resuming from the checkpoint of step {saved[0]}" in log
  _assert_same_params(workdir, reference)


def test_a_second_run_on_a_held_workdir_is_refused_and_the_first_finishes(tmp_path, reference):
  workdir = str(tmp_path / "w")
  first = _Run(workdir)
  first.wait_for(lambda: os.path.exists(os.path.join(workdir, "lock.json")))
  first.proc.send_signal(signal.SIGSTOP)  # Hold it mid-run, lock taken.
  try:
    second = subprocess.run(_command(workdir), cwd=ROOT, capture_output=True, text=True)
  finally:
    first.proc.send_signal(signal.SIGCONT)
  assert second.returncode == cli.EXIT_LOCKED, second.stderr[-3000:]
  assert f"is in use by process {first.proc.pid}" in second.stderr.strip().splitlines()[-1]
  assert "Traceback" not in second.stderr
  code, log = first.finish()
  assert code == 0, log[-3000:]
  assert len(os.listdir(os.path.join(workdir, config_history.HISTORY_DIR))) == 1
  _assert_same_params(workdir, reference)
  assert not os.path.exists(os.path.join(workdir, "lock.json"))  # Released.


def _limit_file_size():
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # Writes past the limit fail with EFBIG.
  resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))


def test_a_failed_save_stops_the_run_at_once_with_one_line(tmp_path):
  """A file-size limit makes the checkpoint writes fail, as a full disk does."""
  workdir = str(tmp_path / "w")
  run = subprocess.run(_command(workdir, checkpoint_every_steps=10), cwd=ROOT,
                       capture_output=True, text=True, preexec_fn=_limit_file_size)
  assert run.returncode == cli.EXIT_SAVE_FAILED, run.stderr[-3000:]
  last = run.stderr.strip().splitlines()[-1]
  assert "Saving the checkpoint of step 10" in last and "File too large" in last, last
  logged = [int(line.split("] [")[1].split("]")[0]) for line in run.stderr.splitlines()
            if "train/loss=" in line and "] [" in line]
  assert 10 <= max(logged) < 20  # Stopped before the next save was due.
  assert _steps(workdir) == []


def _poisoned_digits(steps, poison):
  """digits.train_iterator with ``poison(batch)`` at the (1-based) ``steps``."""
  original = digits.train_iterator

  def train_iterator(config, *, local_batch_size, seed, start_step=0):
    for step, batch in enumerate(original(config, local_batch_size=local_batch_size, seed=seed,
                                          start_step=start_step), start=start_step + 1):
      yield poison(batch) if step in steps else batch

  return train_iterator


def _nan_images(batch):
  return dict(batch, image=np.full_like(batch["image"], np.nan))


def test_nonfinite_loss_stops_naming_the_step_and_the_kept_checkpoints(tmp_path, monkeypatch):
  monkeypatch.setattr(digits, "train_iterator", _poisoned_digits(range(5, 6), _nan_images))
  config = tiny_digits_config.get_config(num_train_steps=10)
  with pytest.raises(FloatingPointError, match=r"step 5\b.*steps \[2, 4\]"):
    loop.train_and_evaluate(config, str(tmp_path))
  restored = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / "4" / "default")
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored["params"]))
  assert _steps(str(tmp_path)) == [2, 4]


def test_nonfinite_step_is_skipped_when_configured(tmp_path, monkeypatch):
  monkeypatch.setattr(digits, "train_iterator", _poisoned_digits(range(3, 4), _nan_images))
  state = loop.train_and_evaluate(
      tiny_digits_config.get_config(num_train_steps=6, nonfinite="skip"), str(tmp_path))
  assert int(state.step) == 6
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jax.device_get(state.params)))


def test_skipping_every_step_of_a_log_window_stops_the_run(tmp_path, monkeypatch):
  monkeypatch.setattr(digits, "train_iterator", _poisoned_digits(range(3, 100), _nan_images))
  config = tiny_digits_config.get_config(num_train_steps=10, nonfinite="skip")
  with pytest.raises(FloatingPointError, match=r"Every step of the 2 up to step 4 was skipped"):
    loop.train_and_evaluate(config, str(tmp_path))


def test_a_diverging_run_keeps_a_checkpoint_from_before(tmp_path):
  """Adam at learning rate 3 without clipping: the loss climbs from 2.3 to tens, finite."""
  config = tiny_digits_config.get_config(num_train_steps=14, keep_checkpoints=2)
  config.optimizer.update(learning_rate=3.0, grad_clip_norm=0.0)
  loop.train_and_evaluate(config, str(tmp_path))
  kept = _steps(str(tmp_path))
  manager = checkpointing.Checkpoints(str(tmp_path), keep=2, read_only=True)
  losses = {s: manager.metrics(s)["train_loss"] for s in kept}
  manager.close()
  assert kept == [2, 12, 14]  # The newest two and the lowest training loss, from before.
  assert losses[2] < 2.31 < 10 < min(losses[12], losses[14])
