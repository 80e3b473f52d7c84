"""What ``python -m sam_jax.main`` tells its user: the workdir at the start, one line per
saved checkpoint, one closing summary; the parameter counts per block group in one line
(the table in ``params.txt``); TensorBoard tags grouped (``train/loss``, ``eval/accuracy``).

One tiny digits run through the program (4 steps, a checkpoint every 2, an eval at the end).
"""

import os
import re
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing import event_accumulator

from sam_jax.analysis import curves
from sam_jax.checkpoints import checkpointing
from tests.test_cli_faults import LOG_RECORD, ROOT, TINY

STEPS = 4
SAVE = re.compile(r"Saving the checkpoint of step (\d+) to (\S+)\.$")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(workdir, the log's records) of the tiny run."""
  workdir = str(tmp_path_factory.mktemp("run"))
  result = subprocess.run(
      [sys.executable, "-m", "sam_jax.main", *TINY, f"--config.num_train_steps={STEPS}",
       "--config.checkpoint_every_steps=2", "--config.log_every_steps=2",
       f"--config.eval_every_steps={STEPS}", f"--workdir={workdir}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert result.returncode == 0, result.stderr[-3000:]
  records = [line for line in result.stderr.splitlines() if LOG_RECORD.match(line)]
  return workdir, [line.split("] ", 1)[1] for line in records]


def test_the_log_names_the_workdir_each_save_and_ends_with_a_summary(run):
  workdir, log = run
  assert any(line.startswith(f"Workdir {workdir}: ") for line in log), log[:8]
  saves = [SAVE.search(line).groups() for line in log if SAVE.search(line)]
  assert saves == [(str(s), f"{workdir}/checkpoints/{s}") for s in (2, STEPS)]
  assert all(os.path.isdir(path) for _, path in saves)
  steps, accuracy = curves.read_scalars(workdir)["eval/accuracy"]
  _, loss = curves.read_scalars(workdir)["eval/loss"]
  manager = checkpointing.Checkpoints(workdir, keep=3, read_only=True)
  best = manager.best_eval_step()
  manager.close()
  assert best == STEPS and list(steps) == [STEPS]
  summary = log[-1]
  assert summary.startswith(f"Finished at step {STEPS} of {STEPS} in "), summary
  assert (f"eval: loss {loss[-1]:.4g}, accuracy {accuracy[-1]:.4g}, num_examples 360; "
          f"best checkpoint: step {best} (eval accuracy {accuracy[-1]:.4g}), "
          f"{workdir}/checkpoints/{best}; TensorBoard event files in {workdir} "
          f"(tensorboard --logdir {workdir}).") in summary, summary


def test_the_parameter_counts_are_one_line_and_the_table_is_in_params_txt(run):
  workdir, log = run
  # The run's ViT (TINY): width 16, MLP 32, 2 blocks, 8x8 images of 4x4 patches, 10 classes.
  embedding = 4 * 4 * 3 * 16 + 16 + 16 + 5 * 16        # Patch kernel and bias, cls, positions.
  attention = 2 * 16 + 4 * (16 * 16 + 16)              # LayerNorm, query, key, value, out.
  mlp = 2 * 16 + (16 * 32 + 32) + (32 * 16 + 16)       # LayerNorm, two dense layers.
  head = 2 * 16 + 16 * 10 + 10                         # Final LayerNorm, head.
  total = embedding + 2 * attention + 2 * mlp + head
  path = os.path.join(workdir, "params.txt")
  assert (f"Parameters: {total:,} (embedding {embedding:,}; block_*/attention {2 * attention:,} "
          f"in 2 blocks; block_*/mlp {2 * mlp:,} in 2 blocks; head {head:,}); every array: "
          f"{path}.") in log
  with open(path) as f:
    table = f.read()
  assert f"Total: {total:,}" in table and "Transformer/encoderblock_1/MlpBlock_0" in table
  assert not any("encoderblock" in line for line in log)  # The table is not in the log.


def test_tensorboard_tags_are_grouped(run):
  workdir, _ = run
  accumulator = event_accumulator.EventAccumulator(workdir)
  accumulator.Reload()
  tags = set(accumulator.Tags()[event_accumulator.TENSORS])
  assert {"train/loss", "train/accuracy", "train/learning_rate", "eval/loss",
          "eval/accuracy"} <= tags, tags
  assert not any(tag.startswith(("train_", "eval_")) for tag in tags), tags
