"""Training and evaluation loop: ``train_and_evaluate(config, workdir)``.

Data-parallel over all devices of all processes with the steps ``training.setup.build``
gives (the shard_map steps of ``sam_jax.training.train_step``), minimising the cross-entropy or, for contrastive
pretraining (``config.contrastive``), NT-Xent, whose run has no classification eval; a
``config.trainable`` regex trains only the parameters it matches (a linear probe). The
config is completed (``config.defaults``) and checked (``config.validation``) first.
Writes TensorBoard summaries (clu metric writers), the completed config
(``config_history``) and Orbax checkpoints to ``workdir``. A run on a workdir that holds
a checkpoint resumes from the newest intact one and continues exactly: batches and
dropout keys are functions of the step.

Faults (docs/faults.md): the run holds the workdir's lock
(``workdir_lock``), so a second run on it fails at once; every input is checked before
the first step (image folders: both splits decoded); a resume uses the newest checkpoint
that reads back intact (``checkpointing``) and stops if the config changes the run
(``config_history``) unless ``allow_config_changes``; SIGTERM (preemption) and SIGINT
(Ctrl-C) save a checkpoint and stop, a second Ctrl-C stops at once; a non-finite loss or
gradient stops the run naming the step (FloatingPointError; or skips the step, and stops
when every step of a log window was skipped); a non-finite state is never saved; a
failed background save stops the run at the next step; an eval error is raised after
the step is saved. The returned state's step tells whether the run finished
(``config.num_train_steps``) or stopped on a signal.
"""

import dataclasses
import signal
import time
from typing import Iterator

from absl import logging
from clu import metric_writers, metrics, periodic_actions
from flax import struct
import jax
import ml_collections
import numpy as np

from sam_jax import metrics as metrics_lib
from sam_jax import parallel
from sam_jax.checkpoints import checkpointing, warm_start
from sam_jax.config import defaults, validation
from sam_jax.data import input_pipeline
from sam_jax.training import config_history, run_log, setup, train_step, workdir_lock


@struct.dataclass
class TrainMetrics(metrics.Collection):
  # clu declares a collection's metrics by calls in the annotations.
  loss: metrics.Average.from_output("loss")               # pyright: ignore[reportInvalidTypeForm]
  accuracy: metrics.Average.from_output("accuracy")       # pyright: ignore[reportInvalidTypeForm]
  grad_norm: metrics.Average.from_output("grad_norm")     # pyright: ignore[reportInvalidTypeForm]
  learning_rate: metrics.LastValue.from_output("learning_rate")  # pyright: ignore[reportInvalidTypeForm]
  rho: metrics.LastValue.from_output("rho")               # pyright: ignore[reportInvalidTypeForm]
  skipped_steps: metrics.Average.from_output("skipped")   # pyright: ignore[reportInvalidTypeForm]


@jax.jit
def accumulate_metrics(total: TrainMetrics | None, step_metrics: dict) -> TrainMetrics:
  """``total`` merged with one step's metrics: one compiled call, not ~20 eager operations."""
  update = TrainMetrics.single_from_model_output(**step_metrics)
  return update if total is None else total.merge(update)


class StopSignals:
  """Remembers SIGTERM (preemption) or SIGINT (Ctrl-C), so the loop saves and stops at the
  next step; a second SIGINT raises KeyboardInterrupt at once."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received: str | None = None
    self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  def _handle(self, signum, frame):
    del frame
    if self.received and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name
    logging.warning("%s received: saving a checkpoint and stopping (Ctrl-C again stops "
                    "without saving).", self.received)

  def restore(self):
    for s, handler in self._previous.items():
      signal.signal(s, handler)


def eval_metrics(eval_step, state: train_step.TrainState,
                 batches: Iterator[dict[str, np.ndarray]], mesh) -> dict[str, float]:
  """Loss and accuracy over one pass of ``batches`` (padding masked out)."""
  totals = metrics_lib.sum_over(lambda b: eval_step(state, parallel.shard_batch(b, mesh)),
                                batches)
  count = totals["count"]
  return {"loss": totals["loss_sum"] / count, "accuracy": totals["correct"] / count,
          "num_examples": count}


def initial_state(run: setup.Setup) -> train_step.TrainState:
  """Fresh replicated state, with the weights of ``config.init_from`` (an .npz or a training
  workdir: ``checkpoints.warm_start``) if set."""
  config = run.config
  state = jax.jit(run.init_state)(jax.random.PRNGKey(config.seed))
  if config.init_from:
    params, model_state = warm_start.load(config, jax.device_get(state.params),
                                          jax.device_get(state.model_state))
    state = state.replace(params=params, opt_state=run.tx.init(params), model_state=model_state)
  return parallel.replicate(state, run.mesh)


def _check_finite(metrics_of_step: dict, step: int, config, manager) -> None:
  """Raises FloatingPointError naming ``step`` if its loss or gradient was not finite."""
  if config.nonfinite == "stop" and not bool(metrics_of_step["finite"]):
    raise FloatingPointError(
        f"Non-finite loss or gradient at step {step} (loss={float(metrics_of_step['loss'])}, "
        f"grad_norm={float(metrics_of_step['grad_norm'])}). {manager.describe()} Set "
        "config.nonfinite='skip' to skip such steps instead.")


def _check_skipped(summary: dict[str, float], step: int, config, manager) -> None:
  """Raises FloatingPointError if every step of the log window ending at ``step`` was skipped."""
  if summary["train/skipped_steps"] >= 1.0:
    raise FloatingPointError(
        f"Every step of the {config.log_every_steps} up to step {step} was skipped (non-finite "
        f"loss or gradient): the run cannot progress. {manager.describe()}")


def _check_steps(step: int, config, manager) -> None:
  """Raises ValueError if the checkpoint's ``step`` is past ``config.num_train_steps``."""
  if step > config.num_train_steps:
    raise ValueError(f"The checkpoint of step {step} in {manager.directory} is past "
                     f"config.num_train_steps={config.num_train_steps}; set it to at least "
                     f"{step} (with --allow_config_changes) or use another --workdir.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_changes: bool = False) -> train_step.TrainState:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint); returns the final state.

  ``allow_config_changes``: resume even if the config changes what the run computes.
  """
  config = defaults.complete(config)
  validation.validate(config, jax.device_count())
  info = input_pipeline.get_info(config)  # Fails fast when the data is missing.
  lock = workdir_lock.WorkdirLock(workdir) if jax.process_index() == 0 else None
  if lock is not None:
    lock.acquire()  # Raises WorkdirLocked at once if another run holds the workdir.
  try:
    return _train(config, workdir, info.num_classes, lock, allow_config_changes)
  finally:
    if lock is not None:
      lock.release()


def _train(config, workdir: str, num_classes: int, lock, allow_config_changes: bool):
  """``train_and_evaluate`` holding the workdir."""
  started = time.time()
  run_log.workdir(workdir)
  input_pipeline.check_readable(config)  # Every image both splits will read, before any step.
  run = setup.build(config, num_classes=num_classes)
  manager = checkpointing.Checkpoints(workdir, keep=config.keep_checkpoints)
  try:
    state = _start(run, workdir, manager, allow_config_changes)
  except BaseException:
    manager.close()
    raise
  if int(state.step) == config.num_train_steps:
    logging.info("The checkpoint of step %d in %s is the last step: nothing to train.",
                 config.num_train_steps, manager.directory)
    manager.close()
    return state
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if jax.process_index() == 0:
    run_log.parameters(state.params, config.model.name, workdir)
  if run.eval_step is None:
    logging.info("Contrastive pretraining (config.contrastive.method=%r): the model outputs "
                 "projections, not logits, so there is no classification eval; a linear probe "
                 "measures the representation (configs/cifar10_contrastive.py:probe).",
                 config.contrastive.method)
  logging.info("Training %s/%s (%s rho=%s, %s) for steps %d..%d on %d devices.",
               config.model.name, config.model.variant, config.sam.kind, config.sam.rho,
               run.groups, int(state.step), config.num_train_steps, run.mesh.size)
  signals = StopSignals()
  try:
    state, last_eval = _loop(run, state, _Run(manager, writer, lock, signals))
  finally:
    signals.restore()
    writer.flush()
    manager.close()  # Waits for the last save; raises CheckpointSaveFailed if it failed.
  logging.info("%s", run_log.summary(int(state.step), config.num_train_steps, last_eval, manager,
                                     time.time() - started, workdir))  # Once all is saved.
  return state


def _start(run: setup.Setup, workdir: str, manager: checkpointing.Checkpoints,
           allow_config_changes: bool) -> train_step.TrainState:
  """The state the run starts from: the newest intact checkpoint (once the config's
  changes are checked, ``config_history``), else a fresh one; the start is recorded."""
  config, changes, latest = run.config, [], manager.latest_step()
  if latest is not None:
    _check_steps(latest, config, manager)
    changes = config_history.check_resume(workdir, config, latest,
                                          allow_changes=allow_config_changes)
  state = manager.restore(jax.eval_shape(run.init_state, jax.random.PRNGKey(config.seed)),
                          run.mesh) or initial_state(run)
  _check_steps(int(state.step), config, manager)
  if jax.process_index() == 0:
    config_history.record(workdir, config, int(state.step), changes)
  return state


@dataclasses.dataclass
class _Run:
  """What the loop writes to and watches: checkpoints, summaries, the lock, the signals."""
  manager: checkpointing.Checkpoints
  writer: metric_writers.MetricWriter
  lock: workdir_lock.WorkdirLock | None
  signals: StopSignals


def _loop(run: setup.Setup, state: train_step.TrainState, out: _Run
          ) -> tuple[train_step.TrainState, tuple[int, dict[str, float]] | None]:
  """Steps from ``state.step`` + 1 to the last (or a stop signal); returns the last state and
  the last eval's (step, results), None if none ran."""
  config, manager = run.config, out.manager
  start_step = int(state.step)
  train_iter = input_pipeline.train_iterator(
      config, local_batch_size=config.batch_size // jax.process_count(), seed=config.seed,
      start_step=start_step)
  progress = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                             writer=out.writer, every_steps=config.log_every_steps)
  window, since_save, previous, last_eval = _Window(config), None, None, None
  for step in range(start_step + 1, config.num_train_steps + 1):
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      state, step_metrics = run.train_step(state, parallel.shard_batch(next(train_iter), run.mesh))
    if previous is not None:  # Checked one step late: no wait for the step just queued.
      _check_finite(previous, step - 1, config, manager)
    previous = step_metrics
    manager.check_saves()  # A failed background save stops the run here.
    if out.lock is not None:
      out.lock.check()  # Another run took the workdir over (this run stalled past the lease).
    loss = metrics.Average.from_model_output(step_metrics["loss"],
                                             mask=step_metrics["finite"][None])
    since_save = loss if since_save is None else since_save.merge(loss)
    progress(step)
    last = step == config.num_train_steps
    window.add(step_metrics, step, last, out.writer, manager)
    eval_results, eval_error = _evaluate(run, state, step, last, out.writer)
    last_eval = (step, eval_results) if eval_results else last_eval
    stop = out.signals.received or manager.reached_preemption(step)
    if (step % config.checkpoint_every_steps == 0 or last or stop or eval_results
        or eval_error):
      _check_finite(step_metrics, step, config, manager)  # Never save a non-finite state.
      manager.save(step, state, train_loss=float(since_save.compute()),
                   eval_results=eval_results)
      since_save = None
    if eval_error is not None:
      raise eval_error
    if stop:
      logging.warning("Stopped at step %d (%s) after saving; rerun to resume.", step,
                      stop if isinstance(stop, str) else "preemption")
      break
  return state, last_eval


class _Window:
  """The training metrics of one log window, written every ``config.log_every_steps``."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config, self.total, self.start = config, None, time.time()

  def add(self, step_metrics: dict, step: int, last: bool, writer, manager) -> None:
    """Adds a step; at the window's end writes the summary and checks that some step of it
    was not skipped."""
    config = self.config
    self.total = accumulate_metrics(self.total, step_metrics)
    if step % config.log_every_steps and not last:
      return
    summary = metrics_lib.tagged("train", self.total.compute())
    now = time.time()
    summary["examples_per_sec"] = (config.batch_size * config.log_every_steps /
                                   max(now - self.start, 1e-9))
    writer.write_scalars(step, summary)
    self.total, self.start = None, now
    _check_skipped(summary, step, config, manager)


def _evaluate(run: setup.Setup, state: train_step.TrainState, step: int, last: bool,
              writer) -> tuple[dict | None, Exception | None]:
  """(results, None) on an eval step, (None, error) if the eval failed (raised once the step
  is saved: an eval failure costs no training), (None, None) otherwise."""
  config = run.config
  if run.eval_step is None or (step % config.eval_every_steps and not last):
    return None, None
  try:
    batches = input_pipeline.eval_iterator(
        config, local_batch_size=config.eval_batch_size // jax.process_count())
    results = eval_metrics(run.eval_step, state, batches, run.mesh)
  except Exception as e:  # pylint: disable=broad-except
    return None, e
  writer.write_scalars(step, metrics_lib.tagged("eval", results))
  return results, None
