"""From a completed config to the objects a run uses: ``build(config, devices) -> Setup``.

The one place that turns a config into a model, an optimizer, SAM groups, a mesh, an
objective and the train and eval steps; the training loop, the benchmarks, the tests
and the TPU preflight all call it, so each runs the step training runs. Every argument
of the step (the SAM groups, every k-th step, the objective, the attack, the trained
parameters, skipping non-finite steps) is derived here from the config, once.

``devices`` may be any list: the run's devices (default: ``jax.devices()``, every
process's), a sub-list, or the devices of a topology description that hold no memory
(``jax.experimental.topologies.get_topology_desc``). ``build`` allocates nothing and asks
JAX for no device beyond the default; ``abstract_state``/``abstract_batch`` give the
shapes and shardings the steps take, for ``step.lower(...).compile()`` ahead of time:

    setup = build(config, devices=topology.devices, num_classes=1000)
    for step in setup.programs().values():
      step.lower(setup.abstract_state(), setup.abstract_batch(train=...)).compile()
"""

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import optax

from sam_jax import models, optim, parallel
from sam_jax.config import validation
from sam_jax.models import param_blocks
from sam_jax.objectives.adversarial import PgdAttack
from sam_jax.objectives.contrastive import NtXent
from sam_jax.objectives.objective import Objective, Supervised
from sam_jax.optim import masks
from sam_jax.training import train_step
from sam_jax.training.train_step import SamGroups, TrainState

Step = Callable[[TrainState, dict], tuple[TrainState, dict]]


@dataclasses.dataclass(frozen=True)
class Setup:
  """A config's run on a list of devices: its objects and its compiled-on-call steps.

  ``train_step(state, batch) -> (state, metrics)`` (jitted, donating ``state``; an
  ``AlternatingStep`` of two programs when SAM runs every k-th step only);
  ``eval_step(state, batch) -> sums`` (None for contrastive pretraining, whose model
  outputs projections). ``programs()`` lists the jitted programs by name.
  """
  config: ml_collections.ConfigDict
  model: nn.Module
  tx: optax.GradientTransformationExtraArgs
  schedule: optax.Schedule
  mesh: Mesh
  groups: SamGroups
  objective: Objective
  attack: PgdAttack | None
  trainable: masks.Mask | None
  every_k_steps: int
  num_classes: int
  train_step: Step
  eval_step: Callable[[TrainState, dict], dict] | None

  def init_state(self, rng: jax.Array) -> TrainState:
    """A fresh state from ``rng`` (jit-able; place it with ``parallel.replicate``)."""
    return train_step.init_state(self.model, self.tx, rng, self.config.image_size)

  def abstract_state(self) -> TrainState:
    """The state's shapes and dtypes, replicated over the mesh as the steps take it."""
    shapes = jax.eval_shape(lambda: self.init_state(jax.random.PRNGKey(self.config.seed)))
    sharding = parallel.replicated(self.mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        shapes)

  def abstract_batch(self, train: bool) -> dict[str, jax.ShapeDtypeStruct]:
    """A global batch as the steps take it (split over the mesh's ``DATA`` axes).

    Global: ``config.batch_size`` (train) or ``config.eval_batch_size`` examples over
    every device of the mesh, whatever the number of hosts (each host feeds its part,
    ``parallel.shard_batch``). Train: ``image`` and ``label`` (int32; float32
    probabilities with mixup), ``image2`` for contrastive pretraining; eval: ``image``,
    ``label`` and ``mask``.
    """
    config = self.config
    size = config.batch_size if train else config.eval_batch_size
    sharding = NamedSharding(self.mesh, P(parallel.DATA))
    spec = lambda shape, dtype: jax.ShapeDtypeStruct((size, *shape), dtype, sharding=sharding)
    image = spec((config.image_size, config.image_size, 3), jnp.float32)
    batch = {"image": image, "label": spec((), jnp.int32)}
    if not train:
      return batch | {"mask": spec((), jnp.float32)}
    if config.augment.mixup_alpha:
      batch["label"] = spec((self.num_classes,), jnp.float32)
    if config.contrastive.method:
      batch["image2"] = image
    return batch

  def programs(self) -> dict[str, Callable]:
    """The jitted programs by name: "train" (or "train_sam" and "train_plain"), "eval"."""
    step = self.train_step
    found = ({"train_sam": step.sam_step, "train_plain": step.plain_step}
             if isinstance(step, train_step.AlternatingStep) else {"train": step})
    return found | ({"eval": self.eval_step} if self.eval_step is not None else {})


def sam_groups(config: ml_collections.ConfigDict, num_devices: int) -> SamGroups:
  """m examples per SAM perturbation: ``config.sam.m``, else by ``config.sam.sync``."""
  m = config.sam.m
  if m is None and config.sam.sync == "global":
    m = config.batch_size
  return train_step.sam_groups(m, config.batch_size, num_devices, config.accumulation_steps)


def objective(config: ml_collections.ConfigDict) -> Objective:
  """What the steps minimise: NT-Xent (``config.contrastive``) or the cross-entropy."""
  if config.contrastive.method == "simclr":
    return NtXent(config.contrastive.temperature)
  return Supervised(config.loss)


def trainable(config: ml_collections.ConfigDict, params: Any) -> masks.Mask | None:
  """The mask of ``config.trainable`` (None: every parameter, in training mode).

  Raises:
    ValueError: it selects no parameter of ``params``, naming some.
  """
  if not config.trainable:
    return None
  mask = masks.path_mask(config.trainable)
  if not any(jax.tree.leaves(mask(params))):
    names = list(param_blocks.flatten(params))[:8]
    raise ValueError(f"config.trainable={config.trainable!r} matches no parameter; the "
                     f"parameters are {names}... (e.g. '^head/' for a linear probe).")
  return mask


def build(config: ml_collections.ConfigDict, devices: Sequence[Any] | None = None, *,
          num_classes: int | None = None, model: nn.Module | None = None,
          alternate: bool = True) -> Setup:
  """The ``Setup`` of a completed config (``config.defaults.complete``) on ``devices``.

  ``num_classes``: the head's width (None: ``config.num_classes``, which must then be
  set; the loop passes the dataset's). ``model``: a module to train instead of
  ``config.model``'s (tests of small networks). ``alternate``: with SAM every k-th step
  only, compile the SAM and the plain step apart and alternate them on the host (what
  training runs); False: one program in which the optimizer chooses by its own
  ``lax.cond`` (the reference the tests compare against, and the cost alternation avoids).

  Raises:
    ValueError: the config is invalid for this many devices (``config.validation``),
      its m-sharpness does not fit them, or ``config.trainable`` matches no parameter.
  """
  devices = jax.devices() if devices is None else list(devices)
  validation.validate(config, len(devices))
  num_classes = num_classes or config.num_classes
  if model is None:
    if not num_classes:
      raise ValueError("build: config.num_classes is None; pass num_classes (the dataset's, "
                       "data.input_pipeline.num_classes(config)).")
    model = models.from_config(config.model, num_classes)
  groups = sam_groups(config, len(devices))
  mesh = parallel.create_mesh(devices, groups.devices_per_group)
  tx, schedule = optim.create_optimizer(config, axis_name=groups.axis_name,
                                        sync_axis_name=groups.sync_axis_name)
  shapes = jax.eval_shape(lambda: train_step.init_state(
      model, tx, jax.random.PRNGKey(config.seed), config.image_size))
  every_k_steps = config.sam.every_k_steps if config.sam.rho > 0 and alternate else 1
  attack = PgdAttack.from_pixels(**config.adversarial_training)
  goal, trained = objective(config), trainable(config, shapes.params)
  gradient_tx = None if groups.micro_batches == 1 else optim.create_optimizer(
      config, axis_name=groups.group_axis_name, sync_axis_name=groups.sync_axis_name,
      gradient_only=True)[0]
  step = train_step.make_train_step(
      model, tx, mesh, schedule, groups, skip_nonfinite=config.nonfinite == "skip",
      every_k_steps=every_k_steps, attack=attack, objective=goal, trainable=trained,
      gradient_tx=gradient_tx)
  eval_step = (None if config.contrastive.method
               else train_step.make_eval_step(model, mesh, loss=config.loss))
  return Setup(config=config, model=model, tx=tx, schedule=schedule, mesh=mesh, groups=groups,
               objective=goal, attack=attack, trainable=trained, every_k_steps=every_k_steps,
               num_classes=num_classes or 0, train_step=step, eval_step=eval_step)
