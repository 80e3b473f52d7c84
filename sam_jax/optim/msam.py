"""Momentum-SAM (Becker, Altrock, Risse, "Momentum-SAM: Sharpness Aware Minimization
without Computational Overhead", 2024): the ascent along the negative momentum.

The one gradient of a step is taken at a point ahead along the base optimizer's
momentum buffer m (the direction the optimizer is moving), not along a fresh gradient:

    e_t   = -rho m_t / ||m_t||            m_t: the buffer after step t-1 (0 at t = 0: e = 0)
    g_t   = ∇L(w_t + e_t)                  the step's only forward-backward pass
    w_t+1 = base optimizer step from w_t with g_t

so a step costs what the base optimizer's does. The buffer is the base optimizer's own,
read from its state, never copied:

  * SGD form (official ``optimizer/msam.py``): m is the heavy-ball buffer
    v <- mu v + g (optax.trace's ``trace``; with coupled weight decay, as there).
  * AdamW form (official ``optimizer/adamW_msam.py``): m is Adam's first moment
    m <- b1 m + (1 - b1) g (scale_by_adam's ``mu``, without bias correction; only its
    direction matters).

rho is on the authors' scale, far above SAM's: 3 in their README commands for SGD
(CIFAR-100 WRN/ResNet-50, ImageNet ResNet-50) and AdamW (ImageNet ViT-S/32), since
||e|| = rho is a step along the trajectory rather than towards the steepest ascent.
Sources: MarlonBecker/MSAM, ``optimizer/msam.py``, ``optimizer/adamW_msam.py``,
``README.md``.

Differences from the official code, which stores the perturbed parameters
w + e and moves them back before evaluation: here the parameters stay clean (the
train step differentiates at ``MomentumSamState.gradient_point``,
through ``protocol.gradient_point``), so evaluation and checkpoints
need nothing special; SGD's coupled weight decay is taken at w, not at w + e.
BatchNorm statistics and the logged training loss come from the step's one pass, at
w + e (the official code does the same and re-estimates BatchNorm statistics in an
extra epoch at the end, ``main.py``). m-sharpness has no meaning here: the ascent
uses the global momentum, the same for every device and group.
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from sam_jax.optim import sam_family as sam_lib
from sam_jax.parallel import AxisNames, mean_over

MOMENTUM_FIELDS = ("trace", "mu")  # optax.trace (SGD), optax.scale_by_adam (Adam, AdamW).


class MomentumSamState(NamedTuple):
  count: jax.Array            # Steps taken.
  rho: jax.Array              # The radius of the ascent the last gradient was taken at.
  ascent_scale: jax.Array     # -rho_t / (||m|| + eps) for the next gradient: e = scale * m.
  inner: optax.OptState       # The base optimizer's state, which holds m.

  def gradient_point(self, params: optax.Params) -> optax.Params:
    """w + e, e = ascent_scale * m (``protocol.GradientPointState``)."""
    momentum = base_momentum(self.inner)
    return sam_lib.add_f32(params, jax.tree.map(lambda m: self.ascent_scale * m, momentum))


def base_momentum(inner_state: optax.OptState) -> optax.Updates:
  """The base optimizer's momentum buffer (``trace`` of SGD, ``mu`` of Adam/AdamW)."""
  is_field = lambda path, _: isinstance(path[-1], optax.tree_utils.NamedTupleKey)
  found = [(name, v) for name in MOMENTUM_FIELDS
           for _, v in optax.tree_utils.tree_get_all_with_path(inner_state, name, is_field)]
  if len(found) != 1:
    raise ValueError(
        "momentum_sam needs a base optimizer with exactly one momentum buffer (a field "
        f"named one of {MOMENTUM_FIELDS}: SGD with momentum > 0, or Adam/AdamW); found "
        f"{[name for name, _ in found] or 'none'}.")
  return found[0][1]


def momentum_sam(inner: optax.GradientTransformation, rho: float | optax.Schedule, *,
                 eps: float = 1e-12, axis_name: AxisNames = None
                 ) -> optax.GradientTransformationExtraArgs:
  """Momentum-SAM around ``inner`` (e.g. ``chain(clip, base)``), whose momentum it reads.

  ``update`` averages the gradient (taken by the caller at
  ``protocol.gradient_point``: w + e)
  over ``axis_name``, applies ``inner`` at the clean parameters and records the
  next ascent's scale. ``rho == 0`` is ``inner`` exactly.
  """
  if not callable(rho):
    sam_lib.check_rho("momentum_sam", rho)
  sam_lib.check_eps("momentum_sam", eps)
  rho_fn, _ = sam_lib.radius(rho)

  def init_fn(params):
    inner_state = inner.init(params)
    base_momentum(inner_state)  # Fails here, naming the problem, without a momentum buffer.
    return MomentumSamState(count=jnp.zeros((), jnp.int32), rho=jnp.zeros((), jnp.float32),
                            ascent_scale=jnp.zeros((), jnp.float32), inner=inner_state)

  def update_fn(updates, state, params=None, **extra):
    updates = mean_over(updates, axis_name)
    updates, inner_state = inner.update(updates, state.inner, params, **extra)
    count = optax.safe_increment(state.count)
    next_rho = rho_fn(count)
    scale = -next_rho / (sam_lib.global_norm_f32(base_momentum(inner_state)) + eps)
    return updates, MomentumSamState(count, rho_fn(state.count), scale, inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


KIND = "msam"  # config.sam.kind.


def from_config(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                inner: Sequence[optax.GradientTransformation], *, eps: float,
                axis_name: AxisNames, sync_axis_name: AxisNames, every_k_steps: int
                ) -> optax.GradientTransformationExtraArgs:
  """Momentum-SAM of scale ``config.sam.rho`` wrapped around ``inner``
  (``optimizer.SamBuilder``)."""
  del schedule, sync_axis_name, every_k_steps  # No SAM groups, no second pass.
  return momentum_sam(optax.chain(*inner), config.sam.rho, eps=eps, axis_name=axis_name)
