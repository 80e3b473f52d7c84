"""Training and evaluation loop: ``train_and_evaluate(config, workdir)``.

Data-parallel over all devices of all processes with the shard_map steps of
``sam_jax.training.train_step``. The config is completed (``config.defaults``) and
checked (``config.validation``) first. Writes TensorBoard summaries (clu metric
writers), the completed ``config.json`` and Orbax checkpoints to ``workdir``. A run on
a workdir that holds a checkpoint resumes from the newest complete one and continues
exactly: batches and dropout keys are functions of the step. SIGTERM (preemption) saves
a checkpoint and exits; a non-finite loss or gradient stops the run naming the step (or
skips the step).
"""

import signal
import time
from typing import Iterator

from absl import logging
from clu import metric_writers, metrics, parameter_overview, periodic_actions
from etils import epath
import flax
import jax
import ml_collections
import numpy as np

from sam_jax import metrics as metrics_lib
from sam_jax import models, optim, parallel
from sam_jax.checkpoints import checkpointing
from sam_jax.config import defaults, validation
from sam_jax.data import input_pipeline
from sam_jax.training import train_step


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("accuracy")
  grad_norm: metrics.Average.from_output("grad_norm")
  learning_rate: metrics.LastValue.from_output("learning_rate")
  rho: metrics.LastValue.from_output("rho")
  skipped_steps: metrics.Average.from_output("skipped")


@jax.jit
def accumulate_metrics(total: TrainMetrics | None, step_metrics: dict) -> TrainMetrics:
  """``total`` merged with one step's metrics: one compiled call, not ~20 eager operations."""
  update = TrainMetrics.single_from_model_output(**step_metrics)
  return update if total is None else total.merge(update)


class Preemption:
  """Remembers a SIGTERM so the loop can checkpoint and stop at the next step."""

  def __init__(self):
    self.received = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and stopping.")
    self.received = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def sam_groups(config: ml_collections.ConfigDict) -> train_step.SamGroups:
  """m examples per SAM perturbation: ``config.sam.m``, else by ``config.sam.sync``."""
  m = config.sam.m
  if m is None and config.sam.sync == "global":
    m = config.batch_size
  return train_step.sam_groups(m, config.batch_size, jax.device_count())


def eval_metrics(eval_step, state: train_step.TrainState,
                 batches: Iterator[dict[str, np.ndarray]], mesh) -> dict[str, float]:
  """Loss and accuracy over one pass of ``batches`` (padding masked out)."""
  totals = metrics_lib.sum_over(lambda b: eval_step(state, parallel.shard_batch(b, mesh)),
                                batches)
  count = totals["count"]
  return {"loss": totals["loss_sum"] / count, "accuracy": totals["correct"] / count,
          "num_examples": count}


def state_initializer(config, model, tx):
  """A function of no arguments that builds the run's fresh TrainState."""
  return lambda: train_step.init_state(model, tx, jax.random.PRNGKey(config.seed),
                                       config.image_size)


def initial_state(config, model, tx, mesh) -> train_step.TrainState:
  """Fresh replicated state, with parameters from ``config.init_from`` (.npz) if set."""
  state = jax.jit(state_initializer(config, model, tx))()
  if config.init_from:
    from sam_jax.checkpoints import npz  # pylint: disable=g-import-not-at-top
    params = npz.load_params(config.init_from, config.model.name,
                                        jax.device_get(state.params))
    logging.info("Initialised parameters from %s.", config.init_from)
    state = state.replace(params=params, opt_state=tx.init(params))
  return parallel.replicate(state, mesh)


def _check_finite(metrics_of_step: dict, step: int, config, manager) -> None:
  """Raises FloatingPointError naming ``step`` if its loss or gradient was not finite."""
  if config.nonfinite == "stop" and not bool(metrics_of_step["finite"]):
    raise FloatingPointError(
        f"Non-finite loss or gradient at step {step} (loss={float(metrics_of_step['loss'])}, "
        f"grad_norm={float(metrics_of_step['grad_norm'])}). The last good checkpoint is step "
        f"{manager.latest_step()} in {manager.directory}; set config.nonfinite='skip' to skip "
        "such steps instead.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_step.TrainState:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint); returns the final state."""
  config = defaults.complete(config)
  validation.validate(config, jax.device_count())
  info = input_pipeline.get_info(config)  # Fails fast when the data is missing.
  groups = sam_groups(config)
  mesh = parallel.create_mesh(devices_per_group=groups.devices_per_group)
  model = models.from_config(config.model, info.num_classes)
  tx, schedule = optim.create_optimizer(config, axis_name=groups.axis_name,
                                        sync_axis_name=groups.sync_axis_name)
  manager = checkpointing.Checkpoints(workdir, keep=config.keep_checkpoints,
                                      every_steps=config.checkpoint_every_steps)
  abstract = jax.eval_shape(state_initializer(config, model, tx))
  state = manager.restore(abstract, mesh) or initial_state(config, model, tx, mesh)
  start_step = int(state.step)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if jax.process_index() == 0:
    parameter_overview.log_parameter_overview(state.params)
    (epath.Path(workdir) / checkpointing.CONFIG_FILE).write_text(
        config.to_json_best_effort(indent=2))

  p_train_step = train_step.make_train_step(
      model, tx, mesh, schedule, groups, skip_nonfinite=config.nonfinite == "skip",
      every_k_steps=config.sam.every_k_steps if config.sam.rho > 0 else 1)
  p_eval_step = train_step.make_eval_step(model, mesh)
  local_batch = config.batch_size // jax.process_count()
  train_iter = input_pipeline.train_iterator(config, local_batch_size=local_batch,
                                             seed=config.seed, start_step=start_step)
  progress = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                             writer=writer, every_steps=config.log_every_steps)
  preemption = Preemption()
  logging.info("Training %s/%s (%s rho=%s, %s) for steps %d..%d on %d devices.",
               config.model.name, config.model.variant, config.sam.kind,
               config.sam.rho, groups, start_step, config.num_train_steps, jax.device_count())
  train_metrics, previous, log_time = None, None, time.time()
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, step_metrics = p_train_step(state, parallel.shard_batch(next(train_iter), mesh))
      if previous is not None:  # Checked one step late: no wait for the step just queued.
        _check_finite(previous, step - 1, config, manager)
      previous = step_metrics
      train_metrics = accumulate_metrics(train_metrics, step_metrics)
      progress(step)
      last = step == config.num_train_steps
      if step % config.log_every_steps == 0 or last:
        summary = {f"train_{k}": v for k, v in train_metrics.compute().items()}
        now = time.time()
        summary["examples_per_sec"] = (config.batch_size * config.log_every_steps /
                                       max(now - log_time, 1e-9))
        writer.write_scalars(step, summary)
        train_metrics, log_time = None, now
      eval_results = None
      if step % config.eval_every_steps == 0 or last:
        eval_batches = input_pipeline.eval_iterator(
            config, local_batch_size=config.eval_batch_size // jax.process_count())
        eval_results = eval_metrics(p_eval_step, state, eval_batches, mesh)
        writer.write_scalars(step, {f"eval_{k}": v for k, v in eval_results.items()})
      stop = preemption.received or manager.reached_preemption(step)
      if step % config.checkpoint_every_steps == 0 or last or stop or eval_results:
        _check_finite(step_metrics, step, config, manager)  # Never save a non-finite state.
        manager.save(step, state, eval_results, last=last, force=stop)
      if stop:
        logging.warning("Stopped at step %d for preemption; rerun to resume.", step)
        break
  finally:
    preemption.restore()
    manager.close()
    writer.flush()
  return state
