"""Training and evaluation loop: ``train_and_evaluate(config, workdir)``.

Data-parallel over all devices (of all processes) with the shard_map steps of
``sam_jax.train_step``. Writes TensorBoard summaries (clu metric writers) and Orbax
checkpoints to ``workdir``; a second run on the same workdir resumes from the
newest checkpoint and continues exactly (batches and dropout keys are functions
of the step).
"""

import os
from typing import Any, Iterator

from absl import logging
from clu import metric_writers, metrics, parameter_overview, periodic_actions
import flax
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from sam_jax import config_validation, models, optim, train_step
from sam_jax.dataset_info import DatasetInfo


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("accuracy")
  learning_rate: metrics.LastValue.from_output("learning_rate")
  update_norm: metrics.Average.from_output("update_norm")


def data_source(config: ml_collections.ConfigDict):
  """The module that reads ``config.dataset``; the digits need no TensorFlow."""
  if config.dataset == "digits":
    from sam_jax import digits  # pylint: disable=g-import-not-at-top
    return digits
  from sam_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  return input_pipeline


def create_model(config: ml_collections.ConfigDict, num_classes: int):
  overrides = {k: v for k, v in config.model.items() if k not in ("name", "variant")}
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


def checkpoint_manager(config: ml_collections.ConfigDict, workdir: str) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def restore_or_init(manager: ocp.CheckpointManager, state: train_step.TrainState
                    ) -> train_step.TrainState:
  """The newest checkpoint restored onto ``state``'s structure and shardings, or ``state``."""
  step = manager.latest_step()
  if step is None:
    return state
  logging.info("Resuming from checkpoint at step %d in %s.", step, manager.directory)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_step.TrainState:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint); returns the final state."""
  config_validation.validate(config, jax.device_count())
  source = data_source(config)
  info: DatasetInfo = source.get_info(config)  # Fails fast when the data is missing.
  local_batch = config.batch_size // jax.process_count()
  local_eval_batch = config.eval_batch_size // jax.process_count()

  groups = sam_groups(config)
  mesh = train_step.create_mesh(groups=groups)
  model = create_model(config, info.num_classes)
  tx, schedule = optim.create_optimizer(config, axis_name=groups.axis_name,
                                        sync_axis_name=groups.sync_axis_name)
  image_shape = (config.image_size, config.image_size, 3)
  state = jax.jit(lambda rng: train_step.init_state(model, tx, rng, image_shape))(
      jax.random.PRNGKey(config.seed))
  state = train_step.replicate(state, mesh)
  manager = checkpoint_manager(config, workdir)
  state = restore_or_init(manager, state)
  start_step = int(state.step)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if jax.process_index() == 0:
    parameter_overview.log_parameter_overview(state.params)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  p_train_step = train_step.make_train_step(model, tx, mesh, schedule, groups)
  p_eval_step = train_step.make_eval_step(model, mesh)
  train_iter = source.train_iterator(config, local_batch_size=local_batch, seed=config.seed,
                                     start_step=start_step)
  hooks = []
  if jax.process_index() == 0:
    hooks.append(periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                                 writer=writer, every_steps=config.log_every_steps))

  logging.info("Training %s/%s (%s rho=%s, %s) for steps %d..%d on %d devices.",
               config.model.name, config.model.variant, config.sam.get("kind", "sam"),
               config.sam.rho, groups, start_step, config.num_train_steps, jax.device_count())
  train_metrics = None
  for step in range(start_step + 1, config.num_train_steps + 1):
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      state, step_metrics = p_train_step(state, train_step.shard_batch(next(train_iter), mesh))
    update = TrainMetrics.single_from_model_output(**step_metrics)
    train_metrics = update if train_metrics is None else train_metrics.merge(update)
    for hook in hooks:
      hook(step)
    if step % config.log_every_steps == 0 or step == config.num_train_steps:
      writer.write_scalars(step, {f"train_{k}": v for k, v in train_metrics.compute().items()})
      train_metrics = None
    if step % config.eval_every_steps == 0 or step == config.num_train_steps:
      eval_batches = source.eval_iterator(config, local_batch_size=local_eval_batch)
      results = evaluate(p_eval_step, state, eval_batches, mesh)
      writer.write_scalars(step, {f"eval_{k}": v for k, v in results.items()})
    if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
      manager.save(step, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  manager.close()
  writer.flush()
  return state
