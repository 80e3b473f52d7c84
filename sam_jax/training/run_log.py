"""What a training run logs besides clu's progress lines: where its outputs go, its
parameter counts, and one closing summary line.

- ``workdir``: the workdir and what it holds, at the start.
- ``parameters``: the parameter count per block group (``models.param_blocks``; numbered
  blocks of one kind summed, e.g. ``block_*/mlp``) in one line; the table of every array
  (shape, size, mean, std: clu's ``parameter_overview``) goes to ``<workdir>/params.txt``,
  rewritten at each start (a resume's: the restored parameters).
- ``summary``: the step reached, the last eval's metrics, the best checkpoint (highest eval
  accuracy), the wall time and where the TensorBoard event files are.
"""

import re
from typing import Any

from absl import logging
from clu import parameter_overview
from etils import epath
import numpy as np

from sam_jax import models
from sam_jax.checkpoints import checkpointing
from sam_jax.models import param_blocks

PARAMS_FILE = "params.txt"


def workdir(path: str) -> None:
  """Logs the workdir and what goes there."""
  root = checkpointing.workdir_path(path)
  logging.info("Workdir %s: the config (%s), checkpoints (%s/), TensorBoard event files and the "
               "parameter table (%s).", root, checkpointing.CONFIG_FILE, checkpointing.LATEST,
               PARAMS_FILE)


def block_groups(params: Any, model: str) -> dict[str, tuple[int, int]]:
  """Block group -> (number of blocks, parameter count) of ``params``, in network order:
  ``param_blocks.partition``'s blocks with the block numbers as ``*``."""
  sizes = {path: int(np.size(x)) for path, x in param_blocks.flatten(params).items()}
  groups: dict[str, tuple[int, int]] = {}
  for block, paths in param_blocks.partition(params, models.family(model).param_blocks).items():
    group = re.sub(r"\d+", "*", block)
    blocks, count = groups.get(group, (0, 0))
    groups[group] = (blocks + 1, count + sum(sizes[p] for p in paths))
  return groups


def parameters(params: Any, model: str, path: str) -> None:
  """Writes the parameter table to ``<path>/params.txt`` and logs the counts per block group."""
  target = checkpointing.workdir_path(path) / PARAMS_FILE
  target.write_text(parameter_overview.get_parameter_overview(params) + "\n")
  groups = block_groups(params, model)
  parts = [f"{name} {count:,}" + (f" in {blocks} blocks" if blocks > 1 else "")
           for name, (blocks, count) in groups.items()]
  logging.info("Parameters: %s (%s); every array: %s.",
               f"{sum(c for _, c in groups.values()):,}", "; ".join(parts), target)


def _duration(seconds: float) -> str:
  minutes, secs = divmod(round(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def summary(step: int, num_train_steps: int, last_eval: tuple[int, dict[str, float]] | None,
            manager: checkpointing.Checkpoints, seconds: float, path: str) -> str:
  """The closing line: step reached, last eval, best checkpoint, wall time, event files."""
  root = checkpointing.workdir_path(path)
  state = "Finished" if step == num_train_steps else "Stopped"
  text = f"{state} at step {step} of {num_train_steps} in {_duration(seconds)}; "
  if last_eval is None:
    text += "no eval; "
  else:
    eval_step, results = last_eval
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in results.items())
    text += f"eval{'' if eval_step == step else f' at step {eval_step}'}: {metrics}; "
  best = manager.best_eval_step()
  if best is not None:
    accuracy = (manager.metrics(best) or {})["eval_accuracy"]
    text += (f"best checkpoint: step {best} (eval accuracy {accuracy:.4g}), "
             f"{epath.Path(manager.directory) / str(best)}; ")
  return text + f"TensorBoard event files in {root} (tensorboard --logdir {root})."
