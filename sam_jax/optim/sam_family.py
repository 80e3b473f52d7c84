"""Sharpness-Aware Minimisation as Optax gradient transformations.

SAM (Foret et al., 2021) replaces the gradient g = ∇L(w) by the gradient at the
worst-case point of an L2 ball of radius rho around w, to first order:

    e     = rho * g / (||g||_2 + eps)
    g_sam = ∇L(w + e)

A transformation here only turns a gradient into a SAM-family gradient; it
composes with clipping and any base optimizer through ``optax.chain``, which then
acts at the clean parameters ``w`` (the perturbed point is never written back, so
nothing has to be restored). The second gradient evaluation comes from the extra
argument ``grad_fn(params) -> grads``: the gradient of the same loss, on the same
batch, with the same dropout key, and with mutable model state (BatchNorm
statistics) taken from the clean pass.

Data parallelism (per-device code with named axes, as under ``jax.shard_map`` or
``jax.vmap(axis_name=...)``): ``axis_name`` lists the axes the final gradient is
averaged over; ``sync_axis_name`` lists those the clean gradient is averaged over
*before* the ascent. ``None`` gives m-sharpness with m = the per-device batch (the
paper's and the original JAX code's default); ``sync_axis_name = axis_name`` gives
SAM on the global batch; a sub-axis gives groups of devices. Each entry of either
list is a name or a tuple of mesh axis names, reduced one entry after another.
"""

from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from sam_jax.parallel import AxisNames, mean_over

GradFn = Callable[[optax.Params], optax.Updates]
# (grads, params, rho) -> perturbation e with the structure of params.
Perturbation = Callable[[optax.Updates, optax.Params, jax.Array], optax.Updates]
# (perturbed gradient, clean gradient) of one SAM group, or both averaged over every group
# (see ``combine_per_group``) -> the gradient to average or return.
Combine = Callable[[optax.Updates, optax.Updates], optax.Updates]


class SharpnessAwareState(NamedTuple):
  count: jax.Array  # Steps taken; drives rho schedules and every-k-th-step SAM.
  rho: jax.Array    # The radius of the last step (0 on a step without SAM), for logging.


def global_norm_f32(tree: optax.Updates) -> jax.Array:
  """||tree||_2 accumulated in float32, whatever the leaves' dtype."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def add_f32(params: optax.Params, delta: optax.Updates) -> optax.Params:
  """params + delta, added in float32 and cast back to each parameter's dtype."""
  return jax.tree.map(lambda w, d: (w.astype(jnp.float32) + d).astype(w.dtype), params, delta)


def sam_perturbation(eps: float) -> Perturbation:
  """e = rho * g / (||g|| + eps) in float32; a zero gradient gives e = 0 (no NaN)."""

  def perturbation(grads, params, rho):
    del params
    scale = rho / (global_norm_f32(grads) + eps)
    return jax.tree.map(lambda g: scale * g.astype(jnp.float32), grads)

  return perturbation


def group_gradients(perturbation: Perturbation, grads: optax.Updates, params: optax.Params,
                    grad_fn: GradFn, rho: jax.Array, *,
                    sync_axis_name: AxisNames) -> tuple[optax.Updates, optax.Updates]:
  """(g, grad_fn(w + perturbation(g, w, rho))), g = the clean gradient's mean over
  ``sync_axis_name``."""
  synced = mean_over(grads, sync_axis_name)
  return synced, grad_fn(add_f32(params, perturbation(synced, params, rho)))


def perturbed_gradient(perturbation: Perturbation, grads: optax.Updates, params: optax.Params,
                       grad_fn: GradFn, rho: jax.Array, *, axis_name: AxisNames,
                       sync_axis_name: AxisNames) -> optax.Updates:
  """mean over ``axis_name`` of grad_fn(w + perturbation(g, w, rho)), g = the mean over
  ``sync_axis_name``."""
  _, perturbed = group_gradients(perturbation, grads, params, grad_fn, rho,
                                 sync_axis_name=sync_axis_name)
  return mean_over(perturbed, axis_name)


def branch(take_sam: bool | jax.Array, sam_branch: Callable, plain_branch: Callable, operand):
  """``sam_branch(operand)`` if ``take_sam`` else ``plain_branch(operand)``.

  A Python bool chooses at trace time (the program holds one branch); an array
  chooses on the device with ``lax.cond``, which XLA:CPU runs slowly for
  convolution nets: it leaves the backward convolutions of a branch in the form
  its generic loop emitter runs, not the fast path (measured 10-70x).
  """
  if isinstance(take_sam, bool):
    return sam_branch(operand) if take_sam else plain_branch(operand)
  return jax.lax.cond(take_sam, sam_branch, plain_branch, operand)


def radius(rho: float | optax.Schedule) -> tuple[optax.Schedule, bool]:
  """rho as a schedule of the step count, and whether it is the constant 0 (no SAM at all)."""
  if callable(rho):
    return rho, False
  return (lambda count: jnp.asarray(rho, jnp.float32)), rho == 0


def step_radius(name: str, rho_fn: optax.Schedule, count: jax.Array,
                params: optax.Params | None, grad_fn: GradFn | None) -> jax.Array:
  """rho at step ``count``, once ``params`` and ``grad_fn`` are checked to be given."""
  if params is None or grad_fn is None:
    raise ValueError(f"{name} update() needs params and grad_fn (the gradient at given "
                     "parameters on the same batch) when rho > 0.")
  return rho_fn(count)


def check_rho(name: str, rho: float) -> None:
  if not rho >= 0:
    raise ValueError(f"{name}: rho must be >= 0, got {rho!r}.")


def check_eps(name: str, eps: float) -> None:
  if not eps > 0:
    raise ValueError(f"{name}: eps must be > 0, got {eps!r}.")


def sharpness_aware(perturbation: Perturbation,
                    rho: float | optax.Schedule,
                    *,
                    combine: Combine | None = None,
                    combine_per_group: bool = True,
                    axis_name: AxisNames = None,
                    sync_axis_name: AxisNames = None,
                    every_k_steps: int = 1) -> optax.GradientTransformationExtraArgs:
  """The SAM family's common skeleton.

  g  <- mean of the clean gradient over ``sync_axis_name`` (one SAM group's gradient)
  gp <- grad_fn(w + perturbation(g, w, rho_t)), averaged over ``sync_axis_name``
  out = mean(combine(gp, g)) (default: mean(gp)), the mean over ``axis_name``;
        with ``combine_per_group=False``: combine(mean(gp), mean(g)).

  Args:
    perturbation: the ascent step e(g, w, rho).
    rho: radius, or a schedule of the step count. A constant 0 never calls
      ``grad_fn`` and returns the averaged clean gradient: the base optimizer.
    combine: how a group's perturbed and clean gradients give its result.
    combine_per_group: combine each group's own gradients, then average (big_vision's
      GSAM: ``trainers/proj/gsam/gsam.py`` returns a per-worker g_gsam that its train
      step then averages); False combines the averages instead.
    axis_name: axes the final gradient is averaged over.
    sync_axis_name: axes the clean gradient is averaged over before the ascent.
    every_k_steps: take the SAM step on steps 0, k, 2k, ... only and the plain
      (averaged) gradient otherwise: about (k+1)/k instead of 2 passes per step.
      ``update(..., take_sam=True/False)`` fixes the branch at trace time instead
      of a ``lax.cond`` on the count: compile one program per branch and call the
      right one (``sam_jax.training.train_step.make_train_step`` does; XLA:CPU runs convolution
      nets inside a conditional up to 11x slower).

  ``update(..., sam_gradient=True)``: ``updates`` is this transformation's result already
  (gradient accumulation: the mean over micro-batches of each one's output with ``axis_name``
  restricted to the device), so it is only averaged over ``axis_name`` and the state advanced.
  """
  if every_k_steps < 1:
    raise ValueError(f"every_k_steps must be >= 1, got {every_k_steps!r}.")
  rho_fn, plain = radius(rho)

  def init_fn(params):
    del params
    return SharpnessAwareState(count=jnp.zeros((), jnp.int32), rho=jnp.zeros((), jnp.float32))

  def sam_result(grads, params, grad_fn, count):
    synced, perturbed = group_gradients(perturbation, grads, params, grad_fn, rho_fn(count),
                                        sync_axis_name=sync_axis_name)
    if combine is None:
      return mean_over(perturbed, axis_name)
    if combine_per_group:
      return mean_over(combine(mean_over(perturbed, sync_axis_name), synced), axis_name)
    return combine(mean_over(perturbed, axis_name), mean_over(grads, axis_name))

  def update_fn(updates, state, params=None, *, grad_fn: GradFn | None = None,
                take_sam: bool | None = None, sam_gradient: bool = False, **extra):
    del extra
    count = optax.safe_increment(state.count)
    if plain:
      return mean_over(updates, axis_name), SharpnessAwareState(count, jnp.zeros((), jnp.float32))
    # take_sam None: one program, the branch chosen on the device from the count.
    take = (True if every_k_steps == 1 else
            state.count % every_k_steps == 0 if take_sam is None else take_sam)
    if sam_gradient:  # ``updates`` is already this transformation's output on each device.
      return mean_over(updates, axis_name), SharpnessAwareState(
          count, jnp.where(take, rho_fn(state.count), 0.0))
    rho_t = step_radius("sharpness-aware", rho_fn, state.count, params, grad_fn)
    if every_k_steps == 1:
      return sam_result(updates, params, grad_fn, state.count), SharpnessAwareState(count, rho_t)
    out = branch(take, lambda g: sam_result(g, params, grad_fn, state.count),
                 lambda g: mean_over(g, axis_name), updates)
    return out, SharpnessAwareState(count, jnp.where(take, rho_t, 0.0))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sam(rho: float | optax.Schedule, *, axis_name: AxisNames = None,
        sync_axis_name: AxisNames = None, eps: float = 1e-12,
        every_k_steps: int = 1) -> optax.GradientTransformationExtraArgs:
  """SAM: g_sam = ∇L(w + rho g / (||g|| + eps)), averaged over ``axis_name``.

  ``rho == 0`` skips the second pass and gives exactly the base optimizer. See
  :func:`sharpness_aware` for the data-parallel and every-k-step arguments.
  """
  if not callable(rho):
    check_rho("sam", rho)
  check_eps("sam", eps)
  return sharpness_aware(sam_perturbation(eps), rho, axis_name=axis_name,
                         sync_axis_name=sync_axis_name, every_k_steps=every_k_steps)


KIND = "sam"  # config.sam.kind (its builder: from_config; optimizer.sam_builders finds both).


def from_config(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                inner: Sequence[optax.GradientTransformation], **common: Any
                ) -> optax.GradientTransformationExtraArgs:
  """SAM of radius ``config.sam.rho`` chained before ``inner`` (``optimizer.SamBuilder``)."""
  del schedule
  return optax.chain(sam(config.sam.rho, **common), *inner)
