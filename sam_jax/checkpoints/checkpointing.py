"""Orbax checkpoints of the TrainState in ``<workdir>/checkpoints``, verified when read.

Kept (one Orbax ``preservation_policy``): the newest ``keep`` saves, the save with
the best eval accuracy and the save with the lowest training loss (mean over the
steps since the previous save), so a run that diverges still holds a checkpoint
from before. The loop saves every ``checkpoint_every_steps``, at eval steps, at the
end and on a signal; a save is asynchronous and atomic (Orbax writes a temporary directory
and renames it), so a save cut short by a crash leaves a ``*.orbax-checkpoint-tmp``
directory that resuming skips with a warning. A background save that fails
(e.g. a full disk) is raised by ``check_saves``, which the loop calls every step, and its
temporary directory is removed.

Each save records a CRC-32 of every array (``integrity``) in the step's Orbax
metadata, and a non-finite state is never saved. ``restore`` takes the newest
checkpoint that reads back intact (same checksums, finite values); the damaged
ones newer than it (unreadable, truncated, altered) are moved to
``<workdir>/checkpoints_damaged/`` with a warning naming each and why. If none
reads back intact nothing is moved (an error common to all may not be damage).
Arrays whose names or shapes differ from the config's model are not damage but a
``ModelMismatch`` (a config error), raised before anything is read; a partial read
(``read_params``: the params and model state) is exact in the same way.
"""

import contextlib
import json
import math
import threading
import time
from typing import Any

from absl import logging
from etils import epath
import jax
from jax.sharding import Mesh
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies
import tensorstore as ts

from sam_jax import parallel
from sam_jax.checkpoints import integrity

TMP_SUFFIX = ".orbax-checkpoint-tmp"
REMOVE_TRIES, REMOVE_PAUSE = 5, 0.5  # A failed save's temporary directory (_remove_incomplete).
LATEST, DAMAGED = "checkpoints", "checkpoints_damaged"  # Subdirectories of the workdir.
CONFIG_FILE = "config.json"  # The run's completed config, in the workdir.
CRC_KEY = "crc32"  # Of the step's Orbax custom metadata.


def workdir_path(workdir: str | epath.PathLike) -> epath.Path:
  """The workdir as an epath: gs:// (any remote) paths as they are, local ones absolute."""
  root = epath.Path(workdir)
  return root if "://" in str(workdir) else root.absolute()


def read_json(path: epath.Path) -> Any:
  """The JSON value in ``path`` (a run's config.json...); ValueError naming the file if it
  does not parse."""
  try:
    return json.loads(path.read_text())
  except ValueError as e:
    raise ValueError(f"{path} is not valid JSON ({e}): the file is damaged; restore it or "
                     "move it away.") from None


REMOTE_TIMEOUT_S = 20.0  # For a first answer of a remote store (gs://): else it is unreachable.


def check_reachable(path: str, timeout_s: float = REMOTE_TIMEOUT_S, *,
                    tensorstore: bool = False) -> None:
  """Raises ValueError within ``timeout_s`` if a remote ``path`` (``gs://...``) does not answer
  through ``etils.epath`` (and TensorStore, which Orbax and the workdir lock use, if
  ``tensorstore``): without credentials their clients retry for minutes. Local paths are
  not checked."""
  if "://" not in str(path):
    return
  failure: list[str] = []

  def probe() -> None:
    try:
      epath.Path(path).exists()
      if tensorstore:
        ts.KvStore.open(str(path).rstrip("/") + "/").result().read(CONFIG_FILE).result()
    except Exception as e:  # pylint: disable=broad-except
      failure.append(_last_line(e))

  thread = threading.Thread(target=probe, name="check_reachable", daemon=True)
  thread.start()
  thread.join(timeout_s)
  if thread.is_alive() or failure:
    why = failure[0] if failure else f"no answer within {timeout_s:.0f} s"
    raise ValueError(f"{path} cannot be reached ({why[:300]}): a gs:// path needs Google Cloud "
                     "credentials (gcloud auth application-default login, or "
                     "GOOGLE_APPLICATION_CREDENTIALS) and access to the bucket.")


class CheckpointSaveFailed(RuntimeError):
  """A background save did not complete."""


class ModelMismatch(ValueError):
  """A checkpoint's arrays differ in names or shapes from those the config's model has: a
  config error (another model, classes, image size...), not damage."""

  def __init__(self, step: int, directory: str, problems: list[str]):
    self.step, self.directory, self.problems = step, directory, problems
    super().__init__(
        f"the checkpoint of step {step} in {directory} holds another model or optimizer than "
        f"the config builds ({len(problems)} differences, nothing loaded): "
        + "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "") + ".")


def _eval_accuracy(metrics: dict) -> float:
  value = metrics.get("eval_accuracy", -math.inf)
  return value if math.isfinite(value) else -math.inf


def _negative_train_loss(metrics: dict) -> float:
  value = -metrics.get("train_loss", math.inf)
  return value if math.isfinite(value) else -math.inf


def _last_line(error: BaseException) -> str:
  """The error's type and last line without TensorStore's spec (a page of JSON); a long one
  keeps its start and its end (the cause, e.g. "File too large", closes TensorStore's
  messages after long paths)."""
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  last = lines[-1].split(" [tensorstore_spec=")[0] if lines else ""
  line = f"{type(error).__name__}: {last}"
  return line if len(line) <= 500 else f"{line[:200]} ... {line[-280:]}"


def _reason(error: BaseException) -> str:
  """The innermost error's type and first line, without TensorStore's spec: Orbax and
  TensorStore wrap the cause (e.g. a truncated file) in layers whose last line is a repr."""
  while (inner := error.__cause__ or error.__context__) is not None:
    error = inner
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  first = lines[0].split(" [tensorstore_spec=")[0] if lines else ""  # A page of JSON.
  return f"{type(error).__name__}: {first}"[:800]


def _shapes(tree: Any) -> dict[str, tuple]:
  return {integrity.name(path): tuple(x.shape)
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def structure_problems(saved: Any, expected: Any, limit: int = 20) -> list[str]:
  """How the arrays of a checkpoint (``saved`` metadata) differ from ``expected`` (shapes)."""
  a, b = _shapes(saved), _shapes(expected)
  found = ([f"{k}: in the checkpoint, not in the model" for k in sorted(a.keys() - b.keys())] +
           [f"{k}: in the model, not in the checkpoint" for k in sorted(b.keys() - a.keys())] +
           [f"{k}: checkpoint shape {a[k]} != model shape {b[k]}"
            for k in sorted(a.keys() & b.keys()) if a[k] != b[k]])
  return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit else [])


class Checkpoints:
  """The run's checkpoints: save, check the background saves, restore verified."""

  def __init__(self, workdir: str, *, keep: int, read_only: bool = False):
    self.root = workdir_path(workdir)
    # Created here: removed again by ``close`` if nothing was saved (e.g. init_from failed).
    self._created = not read_only and not (self.root / LATEST).exists()
    self._pending: int | None = None  # The step of a background save not yet checked.
    self._failed = False
    self._manager = ocp.CheckpointManager(
        self.root / LATEST,  # Read-only: partial reads (e.g. the params) of PyTrees.
        item_handlers=(ocp.PyTreeCheckpointHandler() if read_only else
                       ocp.StandardCheckpointHandler()),
        options=ocp.CheckpointManagerOptions(
            create=not read_only, read_only=read_only,
            save_interval_steps=0 if read_only else 1,  # Orbax warns unless 0 when read-only.
            best_fn=_eval_accuracy, best_mode="max",  # best_fn: the metrics are written.
            preservation_policy=policies.AnyPreservationPolicy([
                policies.LatestN(n=keep),
                policies.BestN(get_metric_fn=_eval_accuracy, n=1,
                               keep_checkpoints_without_metrics=False),
                policies.BestN(get_metric_fn=_negative_train_loss, n=1,
                               keep_checkpoints_without_metrics=False)])))

  @property
  def directory(self) -> str:
    return str(self._manager.directory)

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def metrics(self, step: int) -> dict | None:
    return self._manager.metrics(step)

  def save(self, step: int, state, *, train_loss: float,
           eval_results: dict[str, float] | None = None) -> None:
    """Saves ``state`` with its metrics and checksums; FloatingPointError if it is not finite."""
    self.check_saves()
    arrays = integrity.host_arrays(state)
    bad = integrity.nonfinite(arrays)
    if bad:
      raise FloatingPointError(f"The state at step {step} holds non-finite values (in "
                               f"{bad[:5]}); it was not saved.")
    metrics = {"train_loss": float(train_loss)}
    if eval_results is not None:
      metrics.update({f"eval_{k}": float(v) for k, v in eval_results.items()})
    try:
      self._manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True,
                         custom_metadata={CRC_KEY: integrity.checksums(arrays)})
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointSaveFailed(f"Saving the checkpoint of step {step} to {self.directory} "
                                 f"failed ({_last_line(e)}){self._remove_incomplete(step)}.") from e
    self._pending = step
    logging.info("Saving the checkpoint of step %d to %s.", step,
                 epath.Path(self.directory) / str(step))

  def check_saves(self) -> None:
    """Raises ``CheckpointSaveFailed`` if the last background save has failed."""
    if self._pending is None or self._manager.is_saving_in_progress():
      return
    self._wait()

  def _wait(self) -> None:
    step, self._pending = self._pending, None
    assert step is not None  # Callers wait only on a pending save.
    try:
      self._manager.wait_until_finished()  # Raises the background save's error.
    except Exception as e:  # pylint: disable=broad-except
      self._failed = True
      raise CheckpointSaveFailed(f"Saving the checkpoint of step {step} to {self.directory} "
                                 f"failed ({_last_line(e)}){self._remove_incomplete(step)}.") from e

  def _remove_incomplete(self, step: int) -> str:
    """Removes what a failed save of ``step`` left (its temporary directory); says so.

    The save's other writes may still be landing there when its first error surfaces (a
    removal then meets "Directory not empty"): it waits for the manager, and tries the
    removal up to ``REMOVE_TRIES`` times, ``REMOVE_PAUSE`` seconds apart.
    """
    incomplete = epath.Path(self.directory) / f"{step}{TMP_SUFFIX}"
    if jax.process_index() != 0 or not incomplete.exists():
      return ""
    with contextlib.suppress(Exception):  # The save's error, reported by the caller.
      self._manager.wait_until_finished()
    error = None
    for _ in range(REMOVE_TRIES):
      try:
        incomplete.rmtree()
        return f"; removed its incomplete {incomplete.name}"
      except OSError as e:
        error = e
        time.sleep(REMOVE_PAUSE)
    return f"; its incomplete {incomplete.name} is left (harmless: resuming skips it; {error})"

  def describe(self) -> str:
    """The kept checkpoints: newest, lowest training loss, best eval accuracy."""
    steps = self.all_steps()
    if not steps:
      return f"No checkpoint is saved in {self.directory} yet."
    metrics = {s: self._manager.metrics(s) or {} for s in steps}
    lowest = max(steps, key=lambda s: _negative_train_loss(metrics[s]))
    text = (f"Checkpoints kept in {self.directory}: steps {steps} (newest {steps[-1]}, lowest "
            f"training loss {lowest}")
    best = self.best_eval_step()
    return text + (f", best eval accuracy {best}" if best is not None else "") + ")."

  def best_eval_step(self) -> int | None:
    """The kept checkpoint with the highest eval accuracy; None if none has an eval."""
    evaluated = {s: m for s in self.all_steps() if "eval_accuracy" in (m := self.metrics(s) or {})}
    return max(evaluated, key=lambda s: _eval_accuracy(evaluated[s])) if evaluated else None

  def _read(self, step: int, target: Any, partial: bool) -> tuple[Any, list[str]]:
    """``target``'s arrays from ``step`` and what is wrong with them (empty: intact).

    ``partial``: ``target`` is a dict of some of the state's entries (e.g. the params), each
    read exactly: every array of those entries in the checkpoint, and only those.
    Raises ``ModelMismatch`` if the arrays differ from the checkpoint's in names or shapes.
    """
    try:
      metadata = self._manager.item_metadata(step)
      if partial:
        metadata = {key: metadata.get(key, {}) for key in target}
    except Exception as e:  # pylint: disable=broad-except
      return None, [f"unreadable ({_reason(e)})"]
    mismatch = structure_problems(metadata, target)
    if mismatch:
      raise ModelMismatch(step, self.directory, mismatch)
    try:
      if partial:
        restored = self._manager.restore(step, args=ocp.args.PyTreeRestore(
            target, ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
      else:
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:  # pylint: disable=broad-except
      return None, [f"unreadable ({_reason(e)})"]
    expected = (self._manager.metadata(step).custom_metadata or {}).get(CRC_KEY)
    problems = integrity.problems(integrity.host_arrays(restored), expected)
    if expected is None and "train_loss" in (self._manager.metrics(step) or {}):
      problems.append("its recorded checksums are unreadable")  # Saved by this module.
    return restored, problems

  def _quarantine(self, step: int) -> str:
    source = epath.Path(self.directory) / str(step)
    target = self.root / DAMAGED / str(step)
    if jax.process_index() == 0:
      target.parent.mkdir(parents=True, exist_ok=True)
      n = 1
      while target.exists():
        target, n = self.root / DAMAGED / f"{step}.{n}", n + 1
      source.rename(target)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes(f"sam_jax_quarantine_{step}")
    self._manager.reload()
    return str(target)

  def restore(self, abstract_state, mesh: Mesh):
    """The newest intact checkpoint, replicated over ``mesh``; None if there is none.

    Checkpoints newer than the one used are moved aside (``DAMAGED``). Raises
    ValueError if none is intact (then nothing is moved), or if they hold another model.
    """
    incomplete = sorted(p.name for p in epath.Path(self.directory).iterdir()
                        if p.name.endswith(TMP_SUFFIX))
    if incomplete:
      logging.warning("Skipping incomplete checkpoint(s) %s in %s (a save was cut short).",
                      incomplete, self.directory)
    replicated = parallel.replicated(mesh)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_state)
    damaged = {}
    for step in sorted(self._manager.all_steps(), reverse=True):
      state, problems = self._read(step, target, partial=False)
      if problems:
        damaged[step] = problems
        continue
      for bad, why in damaged.items():  # Newer than an intact one: damaged, not unreadable.
        logging.warning("The checkpoint of step %d in %s is damaged (%s); moved it to %s.",
                        bad, self.directory, "; ".join(why[:5]), self._quarantine(bad))
      logging.info("Resuming from the checkpoint of step %d in %s.", step, self.directory)
      return state
    if damaged:  # Nothing moved: an error common to all may not be damage.
      raise ValueError(f"No checkpoint in {self.directory} reads back intact: " + "; ".join(
          f"step {s}: {', '.join(why[:3])}" for s, why in damaged.items()) +
          ". If they are damaged, move them away to start afresh.")
    return None

  def read_params(self, target: Any, step: int | None = None) -> tuple[int, Any]:
    """(step, ``target``'s subtree, e.g. params and model state) of the newest intact
    checkpoint, or of ``step`` (ValueError if it is damaged). Reads only, moves nothing."""
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise ValueError(f"{self.directory} holds no checkpoint yet.")
    if step is not None and step not in steps:
      raise ValueError(f"no checkpoint at step {step} in {self.directory}; steps: "
                       f"{sorted(steps)}.")
    for candidate in [step] if step is not None else steps:
      restored, problems = self._read(candidate, target, partial=True)
      if not problems:
        return candidate, restored
      message = (f"The checkpoint of step {candidate} in {self.directory} is damaged: "
                 + "; ".join(problems[:5]))
      if step is not None:
        raise ValueError(message)
      logging.warning("%s; trying the previous one.", message)
    raise ValueError(f"No intact checkpoint in {self.directory} (steps {steps}).")

  def reached_preemption(self, step: int) -> bool:
    """Whether the hosts agreed to stop for a preemption (multi-host TPU/SLURM runs)."""
    return jax.process_count() > 1 and self._manager.reached_preemption(step)

  def close(self) -> None:
    """Waits for the last save; raises ``CheckpointSaveFailed`` if it failed. Removes the
    checkpoint directory if this object created it and nothing was saved in it."""
    try:
      if self._pending is not None:
        self._wait()
    finally:
      if self._failed:  # Orbax would raise the failed save's error again.
        with contextlib.suppress(Exception):
          self._manager.close()
      else:
        self._manager.close()
      directory = epath.Path(self.directory)
      if self._created and jax.process_index() == 0 and directory.is_dir() and not any(
          directory.iterdir()):
        directory.rmdir()
