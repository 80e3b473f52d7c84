"""AE-SAM (Jiang, Yang, Zhang, Kwok, "An Adaptive Policy to Employ Sharpness-Aware
Minimization", ICLR 2023): SAM only on steps whose squared gradient norm is large.

The squared norm of the (device-averaged) clean gradient, z_t = ||g_t||², is modelled as
normal, with mean and variance tracked by exponential moving averages; a step takes
the SAM gradient when z_t is above the mean by c_t standard deviations, and the
plain gradient (ERM, one pass) otherwise:

    mu_t      = delta mu_{t-1} + (1 - delta) z_t                (mu_{-1} = 0)
    sigma²_t  = delta sigma²_{t-1} + (1 - delta) (z_t - mu_t)²  (sigma²_{-1} = 0)
    c_t       = (t/T) lambda_1 + (1 - t/T) lambda_2             (T: the training steps)
    SAM step  iff  z_t >= mu_t + c_t sigma_t

With lambda_1 < lambda_2 the threshold falls during training, so SAM fires more often
late. The config's defaults (``config.defaults.SAM_KINDS``) delta = 0.9,
(lambda_1, lambda_2) = (-1, 1) (a SAM fraction near one half) are the values we recall
from the paper's experiments section; they are unconfirmed here (the paper's text and any
official code were not available to us). Source of the rule: the paper's AE-SAM
algorithm, as transcribed (with the paper's symbols) in junaidaliop/zij,
``docs/math/aesam.md``.

The decision needs this step's gradient, which exists only on the device, so the
step branches there (``lax.cond``; :func:`sam_jax.optim.sam_family.branch`): a step without
SAM skips the second pass at run time. XLA:CPU runs a convolution net's backward
pass inside a conditional 10-70x slower (see ``branch``), so on CPU this pays off
for ViT and Mixer only. All devices decide alike: z_t is the norm of the averaged
gradient (over ``axis_name``).
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from sam_jax.optim import sam_family as sam_lib
from sam_jax.parallel import AxisNames, mean_over


class AdaptiveSamState(NamedTuple):
  count: jax.Array       # Steps taken.
  rho: jax.Array         # The radius of the last step (0 on a step without SAM), for logging.
  mean: jax.Array        # mu_t: moving average of ||g||².
  var: jax.Array         # sigma²_t: moving variance of ||g||².
  sam_steps: jax.Array   # Steps that took SAM so far.


def adaptive_decision(state: AdaptiveSamState, sq_norm: jax.Array, *, num_train_steps: int,
                      delta: float, lambda1: float, lambda2: float
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(take SAM, mu_t, sigma²_t) for squared gradient norm ``sq_norm`` at step ``state.count``."""
  mean = delta * state.mean + (1 - delta) * sq_norm
  var = delta * state.var + (1 - delta) * jnp.square(sq_norm - mean)
  frac = jnp.minimum(state.count / num_train_steps, 1.0)
  c = frac * lambda1 + (1 - frac) * lambda2
  return sq_norm >= mean + c * jnp.sqrt(var), mean, var


def aesam(rho: float | optax.Schedule, num_train_steps: int, *, delta: float,
          lambda1: float, lambda2: float, eps: float = 1e-12,
          axis_name: AxisNames = None, sync_axis_name: AxisNames = None
          ) -> optax.GradientTransformationExtraArgs:
  """AE-SAM: the SAM gradient on steps with ||g||² >= mu_t + c_t sigma_t, g otherwise.

  ``rho == 0`` is the base optimizer. The SAM step is SAM's (perturbation along
  the clean gradient averaged over ``sync_axis_name``; see
  :func:`sam_jax.optim.sam_family.sharpness_aware`), so a trigger that always fires
  (lambda_1 = lambda_2 = -1e30, say) is SAM exactly.
  """
  if not callable(rho):
    sam_lib.check_rho("aesam", rho)
  sam_lib.check_eps("aesam", eps)
  if not 0 < delta < 1:
    raise ValueError(f"aesam: delta must be in (0, 1), got {delta!r}.")
  if not num_train_steps >= 1:
    raise ValueError(f"aesam: num_train_steps must be >= 1, got {num_train_steps!r}.")
  rho_fn, plain = sam_lib.radius(rho)
  perturbation = sam_lib.sam_perturbation(eps)
  zero = lambda dtype: jnp.zeros((), dtype)

  def init_fn(params):
    del params
    return AdaptiveSamState(count=zero(jnp.int32), rho=zero(jnp.float32), mean=zero(jnp.float32),
                            var=zero(jnp.float32), sam_steps=zero(jnp.int32))

  def update_fn(updates, state, params=None, *, grad_fn: sam_lib.GradFn | None = None, **extra):
    if "take_sam" in extra:
      raise ValueError("aesam decides each step on the device; it takes no take_sam (do not "
                       "combine it with every_k_steps).")
    count = optax.safe_increment(state.count)
    clean = mean_over(updates, axis_name)
    if plain:
      return clean, state._replace(count=count)
    rho_t = sam_lib.step_radius("aesam", rho_fn, state.count, params, grad_fn)
    assert grad_fn is not None  # step_radius raises otherwise.
    take, mean, var = adaptive_decision(
        state, jnp.square(sam_lib.global_norm_f32(clean)), num_train_steps=num_train_steps,
        delta=delta, lambda1=lambda1, lambda2=lambda2)
    out = sam_lib.branch(
        take, lambda g: sam_lib.perturbed_gradient(perturbation, g, params, grad_fn, rho_t,
                                                   axis_name=axis_name,
                                                   sync_axis_name=sync_axis_name),
        lambda g: clean, updates)
    return out, AdaptiveSamState(count, jnp.where(take, rho_t, 0.0), mean, var,
                                 state.sam_steps + take.astype(jnp.int32))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


KIND = "aesam"  # config.sam.kind; its options: config.sam.aesam.


def from_config(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                inner: Sequence[optax.GradientTransformation], *, every_k_steps: int,
                **common: Any) -> optax.GradientTransformationExtraArgs:
  """AE-SAM as ``config.sam`` asks, chained before ``inner`` (``optimizer.SamBuilder``)."""
  del schedule, every_k_steps  # 1: validated (AE-SAM decides each step itself).
  return optax.chain(aesam(config.sam.rho, config.num_train_steps, **config.sam.aesam, **common),
                     *inner)
