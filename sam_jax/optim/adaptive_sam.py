"""Adaptive SAM (Kwon et al., 2021): a scale-invariant ascent step.

With the elementwise normalisation operator T_w = |w| + eta,

    e     = rho * T_w² g / (||T_w g||_2 + eps)
    g_sam = ∇L(w + e)

As in the reference code (SamsungLabs/ASAM ``asam.py``, parameters named ``weight``),
T_w applies to weights only: ``mask`` (default ``masks.weight_mask``: kernels and
normalisation scales) selects them; every other leaf (biases, the class token and
position embedding) uses T = 1, as in plain SAM.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from sam_jax.optim import masks
from sam_jax.optim import sam_family as sam_lib


def asam_perturbation(eta: float, eps: float, mask: masks.Mask) -> sam_lib.Perturbation:
  """e = rho T² g / (||T g|| + eps), T = |w| + eta on masked leaves, 1 elsewhere."""

  def perturbation(grads, params, rho):
    scale_tree = jax.tree.map(
        lambda w, m: (jnp.abs(w.astype(jnp.float32)) + eta) if m else jnp.ones((), jnp.float32),
        params, mask(params))
    t_g = jax.tree.map(lambda t, g: t * g.astype(jnp.float32), scale_tree, grads)
    factor = rho / (sam_lib.global_norm_f32(t_g) + eps)
    return jax.tree.map(lambda t, tg: factor * t * tg, scale_tree, t_g)

  return perturbation


def asam(rho: float | optax.Schedule, *, eta: float, eps: float = 1e-12,
         mask: masks.Mask = masks.weight_mask,
         axis_name: sam_lib.AxisNames = None, sync_axis_name: sam_lib.AxisNames = None,
         every_k_steps: int = 1) -> optax.GradientTransformationExtraArgs:
  """ASAM gradient ∇L(w + rho T² g / ||T g||); see :func:`sam_lib.sharpness_aware`."""
  if not callable(rho):
    sam_lib.check_rho("asam", rho)
  sam_lib.check_eps("asam", eps)
  if not eta >= 0:
    raise ValueError(f"asam: eta must be >= 0, got {eta!r}.")
  return sam_lib.sharpness_aware(asam_perturbation(eta, eps, mask), rho, axis_name=axis_name,
                                 sync_axis_name=sync_axis_name, every_k_steps=every_k_steps)


KIND = "asam"  # config.sam.kind; its options: config.sam.asam.


def from_config(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                inner: Sequence[optax.GradientTransformation], **common: Any
                ) -> optax.GradientTransformationExtraArgs:
  """ASAM as ``config.sam`` asks, chained before ``inner`` (``optimizer.SamBuilder``)."""
  del schedule
  return optax.chain(asam(config.sam.rho, eta=config.sam.asam.eta, **common), *inner)
