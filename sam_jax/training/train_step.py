"""The data-parallel train and eval steps: per-device code under ``jax.shard_map``.

Every config uses these steps unchanged. The state is replicated, the batch is
split over the data-parallel mesh (``sam_jax.parallel``); inside, the code is written for one
device (pmap semantics: ``check_vma=False``, so a gradient is the local one and
nothing is summed implicitly) and averages with ``pmean`` over the named axis. The
optimizer (``sam_jax.optim``) receives the local clean gradient and a ``grad_fn``
for the second SAM pass, and returns the device-averaged update. Both passes minimise
the step's ``Objective`` (``sam_jax.objectives.objective``; default: the cross-entropy of
the logits) on the same group batch with the same dropout key.
"""

import dataclasses
import functools
from typing import Any, Callable, cast

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec as P

from sam_jax import metrics, models, optim
from sam_jax.objectives.adversarial import PgdAttack
from sam_jax.objectives.objective import Forward, Objective, Supervised
from sam_jax.optim import masks
from sam_jax.optim.freeze import zero_frozen
from sam_jax.parallel import DATA, mean_over

GROUP = "group"                  # vmapped SAM groups inside one device.
ATTACK_STREAM = 2**31            # The attack's keys fold from the step's key with this (group
                                 # indices, folded for dropout, stay below it).
Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class SamGroups:
  """How the global batch is cut into SAM perturbation groups of m examples.

  Each group ascends along its own gradient (m-sharpness). A group is either a
  part of one device's batch (``groups_per_device`` > 1, run with ``jax.vmap`` over
  the named axis ``"group"``, as if each were a device holding m examples; with one
  group per device there is no vmap, which XLA:CPU runs about 2% faster) or
  ``devices_per_group`` whole devices (the mesh axis ``"member"``), so the same m
  means the same algorithm on any number of devices. With ``micro_batches`` k > 1
  (gradient accumulation) each device's batch is k micro-batches run one after
  another, each of whole groups (the counts above are per micro-batch).
  """
  groups_per_device: int = 1
  devices_per_group: int = 1
  micro_batches: int = 1

  @property
  def group_axis_name(self) -> str | None:
    """The vmapped axis of one (micro-)batch's groups, if several."""
    return GROUP if self.groups_per_device > 1 else None

  @property
  def axis_name(self) -> tuple | str:
    """Axes the final gradient is averaged over: every group of every device (without
    accumulation; with it, the groups of a micro-batch are averaged before, on the device)."""
    return (GROUP, DATA) if self.groups_per_device > 1 and self.micro_batches == 1 else DATA

  @property
  def sync_axis_name(self) -> str | None:
    """Axes a group's clean gradient is averaged over before its ascent."""
    return "member" if self.devices_per_group > 1 else None


def sam_groups(m: int | None, global_batch: int, num_devices: int,
               micro_batches: int = 1) -> SamGroups:
  """The grouping for m examples per perturbation (None: one group per device's
  micro-batch), the global batch run as ``micro_batches`` micro-batches."""
  local = global_batch // num_devices // micro_batches
  if m is None or m == local:
    return SamGroups(micro_batches=micro_batches)
  if m <= 0 or (local % m if m < local else m % local or num_devices % (m // local)):
    valid = ({d for d in range(1, local + 1) if local % d == 0}
             | {local * k for k in range(1, num_devices + 1) if num_devices % k == 0})
    per = "per-device batch" if micro_batches == 1 else f"per-device micro-batch of {micro_batches}"
    raise ValueError(
        f"config.sam.m={m} must divide the {per} ({local}) or be it times a divisor of the "
        f"device count ({num_devices}), e.g. {sorted(valid)}.")
  if m < local:
    return SamGroups(groups_per_device=local // m, micro_batches=micro_batches)
  return SamGroups(devices_per_group=m // local, micro_batches=micro_batches)


@struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly: replicated over the mesh."""
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # Non-parameter collections, e.g. {"batch_stats": ...}; {} if none.
  rng: jax.Array    # Base key; each step folds in the step and the SAM group index.


def init_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
               image_size: int) -> TrainState:
  """Parameters and model state (``models.initialize`` from ``rng``), optimizer state."""
  params, model_state, dropout_rng = models.initialize(model, rng, image_size)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    model_state=model_state, rng=dropout_rng)


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Everything one train step is a function of, besides the state and the batch."""
  model: nn.Module
  tx: optax.GradientTransformationExtraArgs
  learning_rate_fn: Callable[[jax.Array], jax.Array]
  groups: SamGroups
  objective: Objective
  skip_nonfinite: bool = False
  attack: PgdAttack | None = None
  trainable: masks.Mask | None = None  # None: every parameter, the model in training mode.
  gradient_tx: optax.GradientTransformationExtraArgs | None = None  # Micro-batches' (below).


def _forward(spec: StepSpec, state: TrainState) -> Forward:
  """``forward(params, images, dropout_rng) -> (outputs, new model state or {})``."""
  train = spec.trainable is None
  mutable = (list(state.model_state) or False) if train else False

  def forward(params, images, dropout_rng):
    out = spec.model.apply({"params": params, **state.model_state}, images, train=train,
                           rngs={"dropout": dropout_rng}, mutable=mutable)
    return cast(tuple[jax.Array, dict], out) if mutable else (cast(jax.Array, out), {})

  return forward


def _attacked(attack: PgdAttack, state: TrainState, forward: Forward, point, batch: Batch,
              group_index: jax.Array, rng: jax.Array) -> Batch:
  """The group's batch with the attack's PGD images (train mode, BatchNorm on the batch's
  statistics, not updated); each example's key by its place in the global batch."""
  images = batch["image"]
  size = images.shape[0]
  starts = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), ATTACK_STREAM)
  keys = jax.vmap(lambda i: jax.random.fold_in(starts, i))(group_index * size + jnp.arange(size))
  return dict(batch, image=attack.examples(
      lambda x: forward(point, x, jax.random.fold_in(rng, 1))[0], images, batch["label"], keys))


def _group_step(spec: StepSpec, tx: optax.GradientTransformationExtraArgs, axis_name,
                state: TrainState, batch: Batch, group_index: jax.Array, extra: dict) -> tuple:
  """One SAM group's (``tx``'s updates, opt_state, (metrics, new model state) averaged
  over ``axis_name``)."""
  rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), group_index)
  forward = _forward(spec, state)
  # The first pass: at w, or where the optimizer state moves it (``optim.gradient_point``;
  # the loss and BatchNorm statistics are then those of that point).
  point = optim.gradient_point(state.opt_state, state.params)
  if spec.attack is not None:
    batch = _attacked(spec.attack, state, forward, point, batch, group_index, rng)

  def gradient(params):  # Zero, and not computed, for frozen parameters.
    (loss, aux), grads = jax.value_and_grad(lambda p: spec.objective(
        forward, p, batch, rng, group_axis=spec.groups.sync_axis_name), has_aux=True)(params)
    if spec.trainable is not None:
      grads = zero_frozen(grads, spec.trainable(grads))
    return (loss, aux), grads

  (loss, (objective_metrics, new_model_state)), grads = gradient(point)
  # The second (perturbed) pass: same batch, same dropout key, and the model state of the
  # incoming step; its own state updates are discarded.
  updates, opt_state = tx.update(grads, state.opt_state, state.params,
                                 grad_fn=lambda p: gradient(p)[1], **extra)
  step_metrics = {"loss": loss,  # The first pass's loss (at w, not at SAM's w + e).
                  **objective_metrics,  # "accuracy": the objective's.
                  "grad_norm": optax.tree.norm(grads)}  # Each group's clean gradient's, averaged.
  return updates, opt_state, mean_over((step_metrics, new_model_state), axis_name)


def _device_step(spec: StepSpec, tx: optax.GradientTransformationExtraArgs, axis_name,
                 state: TrainState, batch: Batch, first_group: jax.Array, extra: dict) -> tuple:
  """``_group_step`` of each SAM group of ``batch`` (vmapped over ``GROUP`` if several),
  numbered from ``first_group``."""
  n = spec.groups.groups_per_device
  if n == 1:
    return _group_step(spec, tx, axis_name, state, batch, first_group, extra)
  grouped = jax.tree.map(lambda x: x.reshape(n, -1, *x.shape[1:]), batch)
  return jax.vmap(lambda b: _group_step(spec, tx, axis_name, state, b,
                                        first_group + jax.lax.axis_index(GROUP), extra),
                  axis_name=GROUP, out_axes=None)(grouped)


def _accumulated_step(spec: StepSpec, state: TrainState, batch: Batch, extra: dict) -> tuple:
  """``tx``'s (updates, opt_state, (metrics, model state)) from this device's batch run as
  k micro-batches one after another (``lax.scan``, one micro-batch's activations live).

  Each micro-batch's groups take their own ascent and descent gradients through
  ``spec.gradient_tx`` (the SAM-family gradient alone, averaged over the micro-batch's
  groups); their mean over the k micro-batches is handed to ``tx`` as a finished SAM
  gradient (``sam_gradient=True``, see ``optim.protocol``), which averages it over the
  devices and updates once. Metrics and the model state (BatchNorm's running averages, linear
  in the batch statistics) are the micro-batches' means: a step over k micro-batches of
  whole groups equals the step over all of them at once, to float rounding.
  """
  k, n = spec.groups.micro_batches, spec.groups.groups_per_device
  assert spec.gradient_tx is not None, "make_train_step sets gradient_tx with micro-batches."
  micro = jax.tree.map(lambda x: x.reshape(k, -1, *x.shape[1:]), batch)
  device_index = jax.lax.axis_index(DATA)

  def body(total, inputs):
    i, micro_batch = inputs
    grads, _, measured = _device_step(spec, spec.gradient_tx, spec.groups.group_axis_name,
                                      state, micro_batch, (device_index * k + i) * n, extra)
    return jax.tree.map(jnp.add, total, grads), measured

  zeros = jax.tree.map(jnp.zeros_like, state.params)
  total, measured = jax.lax.scan(body, zeros, (jnp.arange(k), micro))
  grads = jax.tree.map(lambda g: g / k, total)
  updates, opt_state = spec.tx.update(grads, state.opt_state, state.params, sam_gradient=True,
                                      **extra)
  return updates, opt_state, mean_over(jax.tree.map(lambda x: x.mean(0), measured), DATA)


def _train_step(state: TrainState, batch: Batch, *, spec: StepSpec,
                extra: dict) -> tuple[TrainState, dict]:
  """One step on this device's shard of the batch: its SAM groups vmapped, its
  micro-batches (if several) accumulated.

  ``extra``: the optimizer's extra ``update`` arguments fixed at trace time (``take_sam``).
  A step whose averaged loss or update is not finite is reported in ``metrics["finite"]``;
  with ``spec.skip_nonfinite`` it leaves the state unchanged (but for the step counter).
  """
  if spec.groups.micro_batches > 1:
    updates, opt_state, (step_metrics, model_state) = _accumulated_step(spec, state, batch, extra)
  else:
    first_group = jax.lax.axis_index(DATA) * spec.groups.groups_per_device
    updates, opt_state, (step_metrics, model_state) = _device_step(
        spec, spec.tx, spec.groups.axis_name, state, batch, first_group, extra)
  new_state = dataclasses.replace(
      state, step=state.step + 1, params=optax.apply_updates(state.params, updates),
      opt_state=opt_state, model_state=model_state or state.model_state)
  # Every device holds the same averaged values, so all take the same branch.
  finite = jnp.isfinite(step_metrics["loss"]) & jnp.isfinite(optax.tree.norm(updates))
  if spec.skip_nonfinite:
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                             new_state, dataclasses.replace(state, step=state.step + 1))
  step_metrics.update(
      finite=finite, skipped=(~finite if spec.skip_nonfinite else jnp.zeros_like(finite)),
      learning_rate=spec.learning_rate_fn(state.step),
      rho=optax.tree_utils.tree_get(opt_state, "rho", default=jnp.zeros(())))
  return new_state, step_metrics


def make_train_step(model: nn.Module, tx: optax.GradientTransformationExtraArgs,
                    mesh: Mesh, learning_rate_fn: Callable[[jax.Array], jax.Array],
                    groups: SamGroups | None = None, *, skip_nonfinite: bool = False,
                    every_k_steps: int = 1, loss: str = "softmax_xent",
                    attack: PgdAttack | None = None, objective: Objective | None = None,
                    trainable: masks.Mask | None = None,
                    gradient_tx: optax.GradientTransformationExtraArgs | None = None):
  """``step(state, batch) -> (state, metrics)``, jit-compiled, donating the old state.

  ``tx`` must average over ``groups.axis_name`` (see ``sam_jax.optim``; ``groups`` None:
  one group per device). With ``every_k_steps`` > 1 (``tx``'s SAM every k-th step only)
  the SAM and the plain step are compiled apart and alternated (see ``AlternatingStep``).
  ``objective``: what both passes minimise (None: ``Supervised(loss)``, ``loss`` a
  ``metrics.LOSSES`` name).
  ``attack``: adversarial training on its PGD images of each SAM group; each example's
  random start folds from the step's key and its place in the global batch, so without
  dropout the examples do not depend on the device count (the attack's dropout key, like
  the training pass's, is the group's). ``trainable`` (a linear probe): the parameters
  trained (``optim.masks``); the model then runs in inference mode (no dropout,
  BatchNorm on its running statistics, not updated), the others' gradients are zero and
  their backward pass is left out (``tx`` keeps them fixed: ``optim.freeze``).
  ``gradient_tx``: with ``groups.micro_batches`` > 1, the SAM-family gradient alone
  (``optim.create_optimizer(..., gradient_only=True)``, averaging over
  ``groups.group_axis_name``), taken on each micro-batch (see ``_accumulated_step``).
  """
  groups = SamGroups() if groups is None else groups
  if groups.micro_batches > 1 and gradient_tx is None:
    raise ValueError("make_train_step: micro-batches need gradient_tx (the SAM gradient alone).")
  spec = StepSpec(model, tx, learning_rate_fn, groups,
                  Supervised(loss) if objective is None else objective,
                  skip_nonfinite=skip_nonfinite, attack=attack, trainable=trainable,
                  gradient_tx=gradient_tx)

  def compiled(take_sam: bool | None):
    extra = {} if take_sam is None else {"take_sam": take_sam}
    step = functools.partial(_train_step, spec=spec, extra=extra)
    sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(DATA)), out_specs=(P(), P()),
                            check_vma=False)
    return jax.jit(sharded, donate_argnums=(0,))

  if every_k_steps == 1:
    return compiled(None)
  return AlternatingStep(compiled(True), compiled(False), every_k_steps)


class AlternatingStep:
  """The SAM step on states at steps 0, k, 2k, ... and the plain step otherwise.

  Two programs instead of one with a ``lax.cond``, which XLA:CPU runs up to 11x slower
  for convolution nets. The step number of a state this object returned is known on
  the host; any other state's is read from the device once. Each step follows
  ``state.step`` (not the optimizer's own count, which a skipped non-finite step
  leaves behind).
  """

  def __init__(self, sam_step: Callable, plain_step: Callable, every_k_steps: int):
    self.sam_step, self.plain_step, self.every_k_steps = sam_step, plain_step, every_k_steps
    self._last_state, self._next_step = None, 0

  def __call__(self, state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
    if state is not self._last_state:
      self._next_step = int(state.step)
    take_sam = self._next_step % self.every_k_steps == 0
    self._last_state, metrics = (self.sam_step if take_sam else self.plain_step)(state, batch)
    self._next_step += 1
    return self._last_state, metrics


def _eval_step(state: TrainState, batch: Batch, *, model: nn.Module,
               loss: str) -> dict[str, jax.Array]:
  """``metrics.masked_sums`` of the batch, summed over the mesh."""
  variables = {"params": state.params, **state.model_state}
  logits = cast(jax.Array, model.apply(variables, batch["image"], train=False))
  return jax.lax.psum(metrics.masked_sums(logits, batch["label"], batch["mask"], loss), DATA)


def make_eval_step(model: nn.Module, mesh: Mesh, loss: str = "softmax_xent"):
  """``eval_step(state, batch) -> sums`` (``loss``: a ``metrics.LOSSES`` name), jit-compiled."""
  sharded = jax.shard_map(functools.partial(_eval_step, model=model, loss=loss), mesh=mesh,
                          in_specs=(P(), P(DATA)), out_specs=P(), check_vma=False)
  return jax.jit(sharded)
