"""Surrogate-gap guided SAM (GSAM; Zhuang et al., 2022).

rho follows the learning-rate schedule, in absolute learning-rate units:

    rho_t = rho_min + (rho_max - rho_min) (lr_t - lr_min) / (lr_max - lr_min),

clamped to [rho_min, rho_max] (so warm-up, where lr_t < lr_min, uses rho_min).
With the perturbed gradient g_p = ∇L(w + rho_t g/||g||) and u = g_p / ||g_p||,
the clean gradient's component orthogonal to g_p is subtracted:

    g_gsam = g_p - alpha (g - (g·u) u)

which descends the surrogate gap without hurting the perturbed loss. alpha = 0
and rho_max = rho_min give SAM exactly.

Where the decomposition happens (``decompose``): ``"group"`` (default, the reference)
decomposes each SAM group's own g and g_p and averages the g_gsam of the groups, as
big_vision does (``big_vision/trainers/proj/gsam/gsam.py`` computes g_gsam per worker
from the worker's gradients, its ``train.py`` then takes ``pmean``); ``"global"``
decomposes the device-averaged g and g_p once. With one group they coincide.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from sam_jax.optim import sam_family as sam_lib

DECOMPOSE = ("group", "global")


def gsam_rho_schedule(learning_rate_fn: optax.Schedule, *, rho_max: float, rho_min: float,
                      lr_max: float, lr_min: float) -> optax.Schedule:
  """rho_t proportional to the learning rate between (lr_min, rho_min) and (lr_max, rho_max)."""
  if not 0 <= rho_min <= rho_max:
    raise ValueError(f"gsam: need 0 <= rho_min <= rho_max, got {rho_min!r}, {rho_max!r}.")
  if lr_max < lr_min:
    raise ValueError(f"gsam: need lr_min <= lr_max, got {lr_min!r}, {lr_max!r}.")

  def schedule(count):
    if lr_max == lr_min:
      return jnp.asarray(rho_max, jnp.float32)
    frac = (learning_rate_fn(count) - lr_min) / (lr_max - lr_min)
    return jnp.clip(rho_min + (rho_max - rho_min) * frac, rho_min, rho_max).astype(jnp.float32)

  return schedule


def surrogate_gap_combine(alpha: float, eps: float) -> sam_lib.Combine:
  """(g_p, g) -> g_p - alpha (g - (g·u) u), u = g_p / (||g_p|| + eps), in float32."""

  def combine(perturbed, clean):
    norm = sam_lib.global_norm_f32(perturbed) + eps
    unit = jax.tree.map(lambda x: x.astype(jnp.float32) / norm, perturbed)
    dot = sum(jnp.vdot(g.astype(jnp.float32), u) for g, u in
              zip(jax.tree.leaves(clean), jax.tree.leaves(unit)))
    return jax.tree.map(
        lambda gp, g, u: (gp.astype(jnp.float32) - alpha * (g.astype(jnp.float32) - dot * u)
                          ).astype(gp.dtype), perturbed, clean, unit)

  return combine


def gsam(learning_rate_fn: optax.Schedule, *, rho_max: float, rho_min: float, lr_max: float,
         lr_min: float = 0.0, alpha: float, decompose: str, eps: float = 1e-12,
         axis_name: sam_lib.AxisNames = None,
         sync_axis_name: sam_lib.AxisNames = None,
         every_k_steps: int = 1) -> optax.GradientTransformationExtraArgs:
  """GSAM gradient; ``learning_rate_fn`` is the base optimizer's schedule.

  ``decompose``: ``"group"`` (each SAM group's gradients, then the mean; the
  reference, the config's default) or ``"global"`` (the mean gradients), see the module docstring.
  """
  sam_lib.check_eps("gsam", eps)
  if decompose not in DECOMPOSE:
    raise ValueError(f"gsam: decompose={decompose!r} is not one of {DECOMPOSE}.")
  rho = gsam_rho_schedule(learning_rate_fn, rho_max=rho_max, rho_min=rho_min, lr_max=lr_max,
                          lr_min=lr_min)
  return sam_lib.sharpness_aware(
      sam_lib.sam_perturbation(eps), rho, combine=surrogate_gap_combine(alpha, eps),
      combine_per_group=decompose == "group", axis_name=axis_name,
      sync_axis_name=sync_axis_name, every_k_steps=every_k_steps)


KIND = "gsam"  # config.sam.kind; its options: config.sam.gsam.


def from_config(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                inner: Sequence[optax.GradientTransformation], **common: Any
                ) -> optax.GradientTransformationExtraArgs:
  """GSAM as ``config.sam`` asks (rho follows ``schedule``), chained before ``inner``
  (``optimizer.SamBuilder``)."""
  own = config.sam.gsam
  return optax.chain(gsam(schedule, rho_max=config.sam.rho, rho_min=own.rho_min,
                          lr_max=config.optimizer.learning_rate,
                          lr_min=config.optimizer.end_learning_rate, alpha=own.alpha,
                          decompose=own.decompose, **common), *inner)
