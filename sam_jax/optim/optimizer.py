"""Builds the full optimizer from a config: SAM -> clipping -> base optimizer.

    optax.chain(sam | asam | gsam, clip_by_global_norm(c), base)

The SAM-family transformation comes first, so clipping and the base optimizer see the final, device-averaged
SAM gradient, and weight decay and momentum act at the clean parameters.
With ``optimizer.weight_decay_in_loss`` the decay is instead an L2 penalty in the loss
(``l2_penalty.l2_in_loss`` around the whole chain), as in google-research/sam: part of
the ascent and of the perturbed gradient. Either way it acts on ``masks.decay_mask``.
"""

import ml_collections
import optax

from sam_jax.optim import asam as asam_lib
from sam_jax.optim import gsam as gsam_lib
from sam_jax.optim import l2_penalty
from sam_jax.optim import masks
from sam_jax.optim import sam as sam_lib

OPTIMIZERS = ("adamw", "sgd")
DECAYS = ("linear", "cosine", "constant")
SAM_KINDS = ("sam", "asam", "gsam")


def learning_rate_schedule(opt: ml_collections.ConfigDict, num_train_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to ``opt.learning_rate``, then ``opt.decay`` to ``opt.end_learning_rate``."""
  if opt.decay not in DECAYS:
    raise ValueError(f"optimizer.decay={opt.decay!r} is not one of {DECAYS}.")
  if not 0 <= opt.warmup_steps < num_train_steps:
    raise ValueError(f"optimizer.warmup_steps={opt.warmup_steps} must be in "
                     f"[0, num_train_steps={num_train_steps}).")
  peak, end = opt.learning_rate, opt.get("end_learning_rate", 0.0)
  decay_steps = num_train_steps - opt.warmup_steps
  decay = {
      "linear": optax.linear_schedule(peak, end, decay_steps),
      "cosine": optax.cosine_decay_schedule(peak, decay_steps, alpha=end / peak if peak else 0.0),
      "constant": optax.constant_schedule(peak),
  }[opt.decay]
  if opt.warmup_steps == 0:
    return decay
  warmup = optax.linear_schedule(0.0, peak, opt.warmup_steps)
  return optax.join_schedules([warmup, decay], [opt.warmup_steps])


def base_optimizer(opt: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """AdamW (decoupled decay, multiplied by the learning rate) or SGD with momentum and L2 decay
  added to the final gradient; no decay here when it is in the loss."""
  weight_decay = 0.0 if opt.get("weight_decay_in_loss", False) else opt.weight_decay
  if opt.name == "adamw":
    return optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=weight_decay,
                       mask=masks.decay_mask)
  if opt.name == "sgd":
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=masks.decay_mask),
        optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov))
  raise ValueError(f"optimizer.name={opt.name!r} is not one of {OPTIMIZERS}.")


def sharpness_aware(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                    axis_name: sam_lib.AxisNames, sync_axis_name: sam_lib.AxisNames
                    ) -> optax.GradientTransformationExtraArgs:
  """The SAM-family transformation ``config.sam.kind`` asks for."""
  cfg = config.sam
  common = dict(axis_name=axis_name, sync_axis_name=sync_axis_name, eps=cfg.eps,
                every_k_steps=cfg.get("every_k_steps", 1))
  kind = cfg.get("kind", "sam")
  if kind == "sam":
    return sam_lib.sam(cfg.rho, **common)
  if kind == "asam":
    return asam_lib.asam(cfg.rho, eta=cfg.get("eta", 0.01), **common)
  if kind == "gsam":
    return gsam_lib.gsam(schedule, rho_max=cfg.rho, rho_min=cfg.get("rho_min", cfg.rho),
                         lr_max=config.optimizer.learning_rate,
                         lr_min=config.optimizer.get("end_learning_rate", 0.0),
                         alpha=cfg.get("alpha", 0.4), decompose=cfg.get("decompose", "group"),
                         **common)
  raise ValueError(f"config.sam.kind={kind!r} is not one of {SAM_KINDS}.")


def create_optimizer(config: ml_collections.ConfigDict, *, axis_name: sam_lib.AxisNames = None,
                     sync_axis_name: sam_lib.AxisNames = None
                     ) -> tuple[optax.GradientTransformationExtraArgs, optax.Schedule]:
  """The optimizer a config asks for, and its learning-rate schedule (for logging).

  ``axis_name``/``sync_axis_name``: see ``sam_jax.optim.sam.sharpness_aware``.
  """
  schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
  parts = [sharpness_aware(config, schedule, axis_name, sync_axis_name)]
  if config.optimizer.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(config.optimizer.grad_clip_norm))
  parts.append(base_optimizer(config.optimizer, schedule))
  tx = optax.chain(*parts)
  if config.optimizer.get("weight_decay_in_loss", False):
    tx = l2_penalty.l2_in_loss(tx, config.optimizer.weight_decay)
  return tx, schedule
