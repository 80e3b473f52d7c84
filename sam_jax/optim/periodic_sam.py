"""LookSAM (Liu et al., "Towards Efficient and Scalable Sharpness-Aware Minimization",
CVPR 2022, Algorithm 1): the SAM gradient every k-th step, its reusable part in between.

On steps 0, k, 2k, ... (two forward-backward passes), with g = ∇L(w):

    g_s = ∇L(w + rho g / ||g||)                  the SAM gradient, used for the update
    g_v = g_s - (g_s·g / ||g||²) g                its component orthogonal to g, kept as
    d   = g_v / ||g_v||                           a unit direction (one parameter copy)

and on every other step (one pass, the base optimizer's cost):

    g_s = g + alpha ||g|| d

so the stored direction is added with the current gradient's scale (the paper's
||g|| / ||g_v|| rescaling of g_v). k = 1 is SAM exactly. Sources: the paper's
Algorithm 1 and Eq. 6-7; the Momentum-SAM authors' reimplementation
(MarlonBecker/MSAM, ``optimizer/looksam.py``; the LookSAM authors released no code),
which stores the same normalised direction. The layer-wise form (Look-LayerSAM, for
batches of 4k+ with LAMB) is not implemented: this project trains with small batches.

Data parallel: g and g_s are the device-averaged gradients (over ``axis_name``; the
ascent itself uses the clean gradient averaged over ``sync_axis_name``, as in
:func:`sam_jax.optim.sam_family.sharpness_aware`), so d is the same on every device. A full
step on the host's schedule is ``update(..., take_sam=True/False)``: one compiled
program per branch, alternated by ``sam_jax.training.train_step.AlternatingStep``.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from sam_jax.optim import sam_family as sam_lib
from sam_jax.parallel import AxisNames, mean_over


class LookSamState(NamedTuple):
  count: jax.Array           # Steps taken.
  rho: jax.Array             # The radius of the last step (0 on a reuse step), for logging.
  direction: optax.Updates   # d = g_v / ||g_v|| of the last full step, float32 (0 before it).


def orthogonal_direction(perturbed: optax.Updates, clean: optax.Updates,
                         eps: float) -> optax.Updates:
  """Unit vector along g_s - (g_s·g / ||g||²) g, in float32 (0 if that is 0)."""
  g_s = jax.tree.map(lambda x: x.astype(jnp.float32), perturbed)
  g = jax.tree.map(lambda x: x.astype(jnp.float32), clean)
  dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g_s), jax.tree.leaves(g)))
  coef = dot / (jnp.square(sam_lib.global_norm_f32(g)) + eps)
  g_v = jax.tree.map(lambda a, b: a - coef * b, g_s, g)
  inv = 1.0 / (sam_lib.global_norm_f32(g_v) + eps)
  return jax.tree.map(lambda v: inv * v, g_v)


def looksam(rho: float | optax.Schedule, *, alpha: float, every_k_steps: int,
            eps: float = 1e-12, axis_name: AxisNames = None,
            sync_axis_name: AxisNames = None) -> optax.GradientTransformationExtraArgs:
  """LookSAM: SAM on steps 0, k, 2k, ...; g + alpha ||g|| d (d stored) otherwise.

  ``rho == 0`` is the base optimizer (no second pass). ``update(..., take_sam=...)``
  fixes the branch at trace time; without it the branch is chosen on the device
  from the count (a ``lax.cond``; see :func:`sam_jax.optim.sam_family.branch`).
  """
  if not callable(rho):
    sam_lib.check_rho("looksam", rho)
  sam_lib.check_eps("looksam", eps)
  if every_k_steps < 1:
    raise ValueError(f"looksam: every_k_steps must be >= 1, got {every_k_steps!r}.")
  if not alpha >= 0:
    raise ValueError(f"looksam: alpha must be >= 0, got {alpha!r}.")
  rho_fn, plain = sam_lib.radius(rho)
  perturbation = sam_lib.sam_perturbation(eps)

  def init_fn(params):
    return LookSamState(count=jnp.zeros((), jnp.int32), rho=jnp.zeros((), jnp.float32),
                        direction=jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params))

  def update_fn(updates, state, params=None, *, grad_fn: sam_lib.GradFn | None = None,
                take_sam: bool | None = None, **extra):
    del extra
    count = optax.safe_increment(state.count)
    clean = mean_over(updates, axis_name)
    if plain:
      return clean, state._replace(count=count)
    rho_t = sam_lib.step_radius("looksam", rho_fn, state.count, params, grad_fn)

    def full_step(_):
      assert grad_fn is not None  # step_radius raised otherwise.
      perturbed = sam_lib.perturbed_gradient(perturbation, updates, params, grad_fn, rho_t,
                                             axis_name=axis_name, sync_axis_name=sync_axis_name)
      return perturbed, orthogonal_direction(perturbed, clean, eps)

    def reuse_step(_):
      scale = alpha * sam_lib.global_norm_f32(clean)
      out = jax.tree.map(lambda g, d: (g.astype(jnp.float32) + scale * d).astype(g.dtype),
                         clean, state.direction)
      return out, state.direction

    if take_sam is None:  # k = 1 is static: SAM's program exactly.
      take_sam = True if every_k_steps == 1 else state.count % every_k_steps == 0
    out, direction = sam_lib.branch(take_sam, full_step, reuse_step, None)
    return out, LookSamState(count, jnp.where(take_sam, rho_t, 0.0), direction)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


KIND = "looksam"  # config.sam.kind; its options: config.sam.looksam (its k: sam.every_k_steps).


def from_config(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                inner: Sequence[optax.GradientTransformation], **common: Any
                ) -> optax.GradientTransformationExtraArgs:
  """LookSAM as ``config.sam`` asks, chained before ``inner`` (``optimizer.SamBuilder``)."""
  del schedule
  return optax.chain(looksam(config.sam.rho, alpha=config.sam.looksam.alpha, **common),
                     *inner)
