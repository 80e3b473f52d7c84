"""Orbax checkpoints of the TrainState: the newest N, and the best by eval accuracy.

``<workdir>/checkpoints/<step>`` keeps the newest ``keep`` saves (saved every
``every_steps``, at the end, and on preemption), ``<workdir>/checkpoints_best``
the one with the highest eval accuracy. Saves are asynchronous and atomic (Orbax
writes a temporary directory and renames it), so a save cut short by a crash
leaves a ``*.orbax-checkpoint-tmp`` directory that resuming skips with a warning.
"""

from absl import logging
from etils import epath
import jax
from jax.sharding import Mesh
import orbax.checkpoint as ocp

from sam_jax import parallel

TMP_SUFFIX = ".orbax-checkpoint-tmp"
LATEST, BEST = "checkpoints", "checkpoints_best"  # Subdirectories of the workdir.
CONFIG_FILE = "config.json"  # The run's completed config, in the workdir.


def workdir_path(workdir: str | epath.PathLike) -> epath.Path:
  """The workdir as an epath: gs:// (any remote) paths as they are, local ones absolute."""
  root = epath.Path(workdir)
  return root if "://" in str(workdir) else root.absolute()


class Checkpoints:
  """The run's checkpoint directories."""

  def __init__(self, workdir: str, *, keep: int, every_steps: int):
    root = workdir_path(workdir)
    self.every_steps = every_steps
    self.latest = ocp.CheckpointManager(
        root / LATEST, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self.best = ocp.CheckpointManager(
        root / BEST,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m["accuracy"], best_mode="max"))

  @property
  def directory(self) -> str:
    return str(self.latest.directory)

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def restore(self, abstract_state, mesh: Mesh):
    """The newest complete checkpoint, replicated over ``mesh``; None if there is none."""
    incomplete = sorted(p.name for p in epath.Path(self.directory).iterdir()
                        if p.name.endswith(TMP_SUFFIX))
    if incomplete:
      logging.warning("Skipping incomplete checkpoint(s) %s in %s (a save was cut short).",
                      incomplete, self.directory)
    step = self.latest.latest_step()
    if step is None:
      return None
    logging.info("Resuming from the checkpoint of step %d in %s.", step, self.directory)
    replicated = parallel.replicated(mesh)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_state)
    return self.latest.restore(step, args=ocp.args.StandardRestore(target))

  def save(self, step: int, state, eval_results: dict | None = None, *, last: bool = False,
           force: bool = False) -> None:
    """Saves the newest (every ``every_steps``, ``last`` or ``force``) and the best checkpoint."""
    if step % self.every_steps == 0 or last or force:
      self.latest.save(step, args=ocp.args.StandardSave(state), force=force)
    if eval_results is not None:
      self.best.save(step, args=ocp.args.StandardSave(state), metrics=eval_results)

  def reached_preemption(self, step: int) -> bool:
    """Whether the hosts agreed to stop for a preemption (multi-host TPU/SLURM runs)."""
    return jax.process_count() > 1 and self.latest.reached_preemption(step)

  def close(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()
    self.latest.close()
    self.best.close()
