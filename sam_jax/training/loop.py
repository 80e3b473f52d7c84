"""Training and evaluation loop: ``train_and_evaluate(config, workdir)``.

Data-parallel over all devices of all processes with the shard_map steps of
``sam_jax.training.train_step``. Writes TensorBoard summaries (clu metric writers) and Orbax
checkpoints to ``workdir``. A run on a workdir that holds a checkpoint resumes
from the newest complete one and continues exactly: batches and dropout keys are
functions of the step. SIGTERM (preemption) saves a checkpoint and exits; a
non-finite loss or gradient stops the run naming the step (or skips the step).
"""

import signal
import time
from typing import Iterator

from absl import logging
from clu import metric_writers, metrics, parameter_overview, periodic_actions
from etils import epath
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sam_jax import models, optim
from sam_jax.checkpoints import checkpointing
from sam_jax.config import validation
from sam_jax.data.dataset_info import DatasetInfo
from sam_jax.training import train_step


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("accuracy")
  grad_norm: metrics.Average.from_output("grad_norm")
  learning_rate: metrics.LastValue.from_output("learning_rate")
  rho: metrics.LastValue.from_output("rho")
  skipped_steps: metrics.Average.from_output("skipped")


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


def data_source(config: ml_collections.ConfigDict):
  """The module that reads ``config.dataset``; the digits need no TensorFlow."""
  if config.dataset == "digits":
    from sam_jax.data import digits  # pylint: disable=g-import-not-at-top
    return digits
  from sam_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  return input_pipeline


def create_model(config: ml_collections.ConfigDict, num_classes: int):
  """The model of ``config.model``: name, variant, and field overrides (dtype by name)."""
  overrides = {k: v for k, v in config.model.items() if k not in ("name", "variant")}
  if isinstance(overrides.get("dtype"), str):
    overrides["dtype"] = jnp.dtype(overrides["dtype"])
  return models.create_model(config.model.name, config.model.variant, num_classes=num_classes,
                             **overrides)


def sam_groups(config: ml_collections.ConfigDict) -> train_step.SamGroups:
  """m examples per SAM perturbation: ``config.sam.m``, else by ``config.sam.sync``."""
  m = config.sam.get("m")
  if m is None and config.sam.sync == "global":
    m = config.batch_size
  return train_step.sam_groups(m, config.batch_size, jax.device_count())


def evaluate(eval_step, state: train_step.TrainState, batches: Iterator[dict[str, np.ndarray]],
             mesh) -> dict[str, float]:
  """Loss and accuracy over one pass of ``batches`` (padding masked out)."""
  totals = None
  for batch in batches:
    sums = eval_step(state, train_step.shard_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  totals = jax.device_get(totals)
  count = float(totals["count"])
  return {"loss": float(totals["loss_sum"]) / count, "accuracy": float(totals["correct"]) / count,
          "num_examples": count}


def state_initializer(config, model, tx):
  """A function of no arguments that builds the run's fresh TrainState."""
  image_shape = (config.image_size, config.image_size, 3)
  return lambda: train_step.init_state(model, tx, jax.random.PRNGKey(config.seed), image_shape)


def initial_state(config, model, tx, mesh) -> train_step.TrainState:
  """Fresh replicated state, with parameters from ``config.init_from`` (.npz) if set."""
  state = jax.jit(state_initializer(config, model, tx))()
  if config.get("init_from"):
    from sam_jax.checkpoints import npz  # pylint: disable=g-import-not-at-top
    params = npz.load_params(config.init_from, config.model.name,
                                        jax.device_get(state.params))
    logging.info("Initialised parameters from %s.", config.init_from)
    state = state.replace(params=params, opt_state=tx.init(params))
  return train_step.replicate(state, mesh)


def _check_finite(metrics_of_step: dict, step: int, config, manager) -> None:
  """Raises FloatingPointError naming ``step`` if its loss or gradient was not finite."""
  if config.get("nonfinite", "stop") == "stop" and not bool(metrics_of_step["finite"]):
    raise FloatingPointError(
        f"Non-finite loss or gradient at step {step} (loss={float(metrics_of_step['loss'])}, "
        f"grad_norm={float(metrics_of_step['grad_norm'])}). The last good checkpoint is step "
        f"{manager.latest_step()} in {manager.directory}; set config.nonfinite='skip' to skip "
        "such steps instead.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_step.TrainState:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint); returns the final state."""
  validation.validate(config, jax.device_count())
  source = data_source(config)
  info: DatasetInfo = source.get_info(config)  # Fails fast when the data is missing.
  groups = sam_groups(config)
  mesh = train_step.create_mesh(groups=groups)
  model = create_model(config, info.num_classes)
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
    (epath.Path(workdir) / "config.json").write_text(config.to_json_best_effort(indent=2))

  p_train_step = train_step.make_train_step(
      model, tx, mesh, schedule, groups, skip_nonfinite=config.get("nonfinite") == "skip",
      every_k_steps=config.sam.get("every_k_steps", 1) if config.sam.rho > 0 else 1,
      loss=config.get("loss", "softmax_xent"))
  p_eval_step = train_step.make_eval_step(model, mesh, loss=config.get("loss", "softmax_xent"))
  local_batch = config.batch_size // jax.process_count()
  train_iter = source.train_iterator(config, local_batch_size=local_batch, seed=config.seed,
                                     start_step=start_step)
  progress = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                             writer=writer, every_steps=config.log_every_steps)
  preemption = Preemption()
  logging.info("Training %s/%s (%s rho=%s, %s) for steps %d..%d on %d devices.",
               config.model.name, config.model.variant, config.sam.get("kind", "sam"),
               config.sam.rho, groups, start_step, config.num_train_steps, jax.device_count())
  train_metrics, previous, log_time = None, None, time.time()
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, step_metrics = p_train_step(state, train_step.shard_batch(next(train_iter), mesh))
      if previous is not None:  # Checked one step late: no wait for the step just queued.
        _check_finite(previous, step - 1, config, manager)
      previous = step_metrics
      update = TrainMetrics.single_from_model_output(**step_metrics)
      train_metrics = update if train_metrics is None else train_metrics.merge(update)
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
        eval_batches = source.eval_iterator(
            config, local_batch_size=config.eval_batch_size // jax.process_count())
        eval_results = evaluate(p_eval_step, state, eval_batches, mesh)
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
