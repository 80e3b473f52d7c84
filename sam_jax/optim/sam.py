"""Sharpness-Aware Minimisation as an Optax gradient transformation.

SAM (Foret et al., 2021) replaces the gradient g = ∇L(w) by the gradient at the
worst-case point of an L2 ball of radius rho around w, to first order:

    e     = rho * g / (||g||_2 + eps)
    g_sam = ∇L(w + e)

The transformation only turns a gradient into the SAM gradient; it composes with
clipping and any base optimizer through ``optax.chain``, which then acts on the
clean parameters ``w`` (the perturbed point is never materialised as parameters).
Because ``g_sam`` needs a second gradient evaluation, ``update`` takes the extra
argument ``grad_fn(params) -> grads``: the gradient of the same loss, on the same
batch, with the same dropout key, and with mutable model state (BatchNorm
statistics) taken from the clean pass.

Data parallelism (per-device code with a named batch axis, as under
``jax.shard_map``): where ``||g||`` is taken decides the algorithm.

* ``sync="device"`` (m-sharpness with m = per-device batch; the paper's and the
  original JAX code's default): each device ascends along its own local gradient.
* ``sync="global"``: the clean gradient is averaged over devices first, so every
  device ascends along the same direction (SAM on the global batch).

In both cases the returned gradient is averaged over ``axis_name``.
"""

from typing import Callable, Literal

import jax
import jax.numpy as jnp
import optax

GradFn = Callable[[optax.Params], optax.Updates]
Sync = Literal["device", "global"]
SYNC_MODES = ("device", "global")


def global_norm_f32(tree: optax.Updates) -> jax.Array:
  """||tree||_2 accumulated in float32, whatever the leaves' dtype."""
  leaves = jax.tree.leaves(tree)
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


def ascent_point(params: optax.Params, grads: optax.Updates, rho: float | jax.Array,
                 eps: float) -> optax.Params:
  """w + rho * g / (||g|| + eps), computed in float32 and cast back.

  A zero gradient gives ``w`` exactly (no NaN): the scale is rho / eps times 0.
  """
  scale = rho / (global_norm_f32(grads) + eps)
  return jax.tree.map(
      lambda w, g: (w.astype(jnp.float32) + scale * g.astype(jnp.float32)).astype(w.dtype),
      params, grads)


def sam(rho: float, *, sync: Sync = "device", axis_name: str | None = None,
        eps: float = 1e-12) -> optax.GradientTransformationExtraArgs:
  """Turns the clean gradient into the SAM gradient ∇L(w + rho g/(||g|| + eps)).

  Args:
    rho: radius of the ascent step. ``rho == 0`` skips the second pass and gives
      exactly the (device-averaged) clean gradient, i.e. the base optimizer.
    sync: ``"device"`` normalises each device's own gradient, ``"global"`` the
      device-averaged one (see the module docstring). Ignored without ``axis_name``.
    axis_name: the named data-parallel axis to average over, or None on one device.
    eps: added to ||g|| so that a zero gradient gives a zero perturbation.

  Returns:
    A transformation whose ``update(grads, state, params, *, grad_fn)`` returns
    the SAM gradient averaged over ``axis_name``.
  """
  if sync not in SYNC_MODES:
    raise ValueError(f"sam: sync={sync!r} is not one of {SYNC_MODES}.")
  if not rho >= 0:
    raise ValueError(f"sam: rho must be >= 0, got {rho!r}.")
  if not eps > 0:
    raise ValueError(f"sam: eps must be > 0, got {eps!r}.")

  def mean(tree):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, grad_fn: GradFn | None = None, **extra):
    del extra
    if sync == "global":
      updates = mean(updates)
    if rho == 0:
      return (updates if sync == "global" else mean(updates)), state
    if params is None or grad_fn is None:
      raise ValueError("sam: update() needs params and grad_fn (the gradient at given "
                       "parameters on the same batch) when rho > 0.")
    return mean(grad_fn(ascent_point(params, updates, rho, eps))), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
