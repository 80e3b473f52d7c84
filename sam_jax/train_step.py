"""The data-parallel train and eval steps: per-device code under ``jax.shard_map``.

Every config uses these steps unchanged. The state is replicated, the batch is
split along the 1-D mesh axis ``"batch"``; inside, the code is written for one
device (pmap semantics: ``check_vma=False``, so a gradient is the local one and
nothing is summed implicitly) and averages with ``pmean`` over the named axis. The
optimizer (``sam_jax.optim``) receives the local clean gradient and a ``grad_fn``
for the second SAM pass, and returns the device-averaged update.
"""

import functools
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "batch"
Batch = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly: replicated over the mesh."""
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # Non-parameter collections, e.g. {"batch_stats": ...}; {} if none.
  rng: jax.Array    # Base key; each step folds in the step and the device index.


def create_mesh(devices=None) -> Mesh:
  """A 1-D data-parallel mesh over all (or the given) devices."""
  devices = jax.devices() if devices is None else devices
  return Mesh(devices, (AXIS,))


def init_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
               image_shape: tuple[int, ...]) -> TrainState:
  """Initialises parameters, model state and optimizer state (one example shape)."""
  init_rng, dropout_rng = jax.random.split(rng)
  variables = model.init(init_rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
  variables = flax.core.unfreeze(variables)
  params = variables.pop("params")
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    model_state=variables, rng=dropout_rng)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels, in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def _train_step(state: TrainState, batch: Batch, *, model: nn.Module,
                tx: optax.GradientTransformationExtraArgs,
                learning_rate_fn: Callable[[jax.Array], jax.Array]) -> tuple[TrainState, dict]:
  """One step on this device's shard of the batch."""
  rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), jax.lax.axis_index(AXIS))
  mutable = list(state.model_state) or False

  def loss_fn(params):
    variables = {"params": params, **state.model_state}
    out = model.apply(variables, batch["image"], train=True, rngs={"dropout": rng},
                      mutable=mutable)
    logits, new_model_state = out if mutable else (out, {})
    return cross_entropy(logits, batch["label"]), (logits, new_model_state)

  (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)

  # The second (perturbed) pass: same batch, same dropout key, and the model
  # state of the incoming step; its own state updates are discarded.
  def grad_fn(params):
    return jax.grad(lambda p: loss_fn(p)[0])(params)

  updates, opt_state = tx.update(grads, state.opt_state, state.params, grad_fn=grad_fn)
  params = optax.apply_updates(state.params, updates)
  metrics = {
      "loss": loss,  # The clean-pass loss (at w, not at w + e).
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
      "learning_rate": learning_rate_fn(state.step),
      "update_norm": optax.tree.norm(updates),
  }
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            model_state=jax.lax.pmean(new_model_state, AXIS))
  return new_state, jax.lax.pmean(metrics, AXIS)


def make_train_step(model: nn.Module, tx: optax.GradientTransformationExtraArgs,
                    mesh: Mesh, learning_rate_fn: Callable[[jax.Array], jax.Array]):
  """``step(state, batch) -> (state, metrics)``, jit-compiled, donating the old state."""
  step = functools.partial(_train_step, model=model, tx=tx, learning_rate_fn=learning_rate_fn)
  sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()),
                          check_vma=False)
  return jax.jit(sharded, donate_argnums=(0,))


def _eval_step(state: TrainState, batch: Batch, *, model: nn.Module) -> dict[str, jax.Array]:
  """Sums of loss, correct predictions and real (unpadded) examples over the mesh."""
  variables = {"params": state.params, **state.model_state}
  logits = model.apply(variables, batch["image"], train=False)
  mask = batch.get("mask", jnp.ones(batch["label"].shape, jnp.float32))
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                           batch["label"])
  sums = {
      "loss_sum": jnp.sum(losses * mask),
      "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
      "count": jnp.sum(mask),
  }
  return jax.lax.psum(sums, AXIS)


def make_eval_step(model: nn.Module, mesh: Mesh):
  """``eval_step(state, batch) -> sums``, jit-compiled."""
  sharded = jax.shard_map(functools.partial(_eval_step, model=model), mesh=mesh,
                          in_specs=(P(), P(AXIS)), out_specs=P(), check_vma=False)
  return jax.jit(sharded)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree on every device of the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> Batch:
  """Assembles this process's part of the global batch into arrays split along ``"batch"``."""
  sharding = NamedSharding(mesh, P(AXIS))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
