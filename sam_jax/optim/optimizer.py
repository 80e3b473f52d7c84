"""Builds the full optimizer from a config: SAM -> clipping -> base optimizer.

    optax.chain(sam | asam | gsam, clip_by_global_norm(c), base)

The SAM-family transformation comes first, so clipping and the base optimizer see the final,
device-averaged SAM gradient, and weight decay and momentum act at the clean parameters. The
config is a completed one (``sam_jax.config.defaults.complete``), checked by
``sam_jax.config.validation``: every key is read as it is.
"""

from typing import Any, Callable

import jax
import ml_collections
import optax

# The functions themselves: ``sam_jax.optim`` binds the names sam, asam and gsam to them, which
# hides the submodules of the same names from ``from sam_jax.optim import asam``.
from sam_jax.optim.asam import asam
from sam_jax.optim.gsam import gsam
from sam_jax.optim.sam import sam
from sam_jax.parallel import AxisNames


def learning_rate_schedule(opt: ml_collections.ConfigDict, num_train_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to ``opt.learning_rate``, then ``opt.decay`` to ``opt.end_learning_rate``."""
  peak, end = opt.learning_rate, opt.end_learning_rate
  decay_steps = num_train_steps - opt.warmup_steps
  decay = {
      "linear": lambda: optax.linear_schedule(peak, end, decay_steps),
      "cosine": lambda: optax.cosine_decay_schedule(peak, decay_steps,
                                                    alpha=end / peak if peak else 0.0),
      "constant": lambda: optax.constant_schedule(peak),
  }[opt.decay]()
  if opt.warmup_steps == 0:
    return decay
  warmup = optax.linear_schedule(0.0, peak, opt.warmup_steps)
  return optax.join_schedules([warmup, decay], [opt.warmup_steps])


def _decay_mask(params: optax.Params):
  """Weight decay on kernels and embeddings (ndim > 1), not on biases or norm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def _adamw(opt: ml_collections.ConfigDict,
           schedule: optax.Schedule) -> optax.GradientTransformation:
  """AdamW: decoupled weight decay, multiplied by the learning rate."""
  return optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay,
                     mask=_decay_mask)


def _sgd(opt: ml_collections.ConfigDict,
         schedule: optax.Schedule) -> optax.GradientTransformation:
  """SGD with momentum (optionally Nesterov) and L2 weight decay added to the gradient."""
  return optax.chain(
      optax.add_decayed_weights(opt.weight_decay, mask=_decay_mask),
      optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov))


# config.optimizer.name -> (optimizer section, schedule) -> base optimizer.
BASE_OPTIMIZERS = {"adamw": _adamw, "sgd": _sgd}


SamBuilder = Callable[..., optax.GradientTransformationExtraArgs]


def _sam(config: ml_collections.ConfigDict, schedule: optax.Schedule,
         **common: Any) -> optax.GradientTransformationExtraArgs:
  del schedule
  return sam(config.sam.rho, **common)


def _asam(config: ml_collections.ConfigDict, schedule: optax.Schedule,
          **common: Any) -> optax.GradientTransformationExtraArgs:
  del schedule
  return asam(config.sam.rho, eta=config.sam.eta, **common)


def _gsam(config: ml_collections.ConfigDict, schedule: optax.Schedule,
          **common: Any) -> optax.GradientTransformationExtraArgs:
  return gsam(schedule, rho_max=config.sam.rho, rho_min=config.sam.rho_min,
              lr_max=config.optimizer.learning_rate, lr_min=config.optimizer.end_learning_rate,
              alpha=config.sam.alpha, **common)


# config.sam.kind -> (config, schedule, axis_name=, sync_axis_name=, eps=, every_k_steps=) -> the
# SAM-family transformation. The kinds and their own config.sam keys: sam_jax.config.defaults.
SAM_BUILDERS: dict[str, SamBuilder] = {"sam": _sam, "asam": _asam, "gsam": _gsam}


def base_optimizer(opt: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  """The base optimizer ``opt.name`` names (``BASE_OPTIMIZERS``)."""
  return BASE_OPTIMIZERS[opt.name](opt, schedule)


def sharpness_aware(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                    axis_name: AxisNames, sync_axis_name: AxisNames
                    ) -> optax.GradientTransformationExtraArgs:
  """The SAM-family transformation ``config.sam.kind`` asks for (``SAM_BUILDERS``)."""
  return SAM_BUILDERS[config.sam.kind](
      config, schedule, axis_name=axis_name, sync_axis_name=sync_axis_name, eps=config.sam.eps,
      every_k_steps=config.sam.every_k_steps)


def create_optimizer(config: ml_collections.ConfigDict, *, axis_name: AxisNames = None,
                     sync_axis_name: AxisNames = None
                     ) -> tuple[optax.GradientTransformationExtraArgs, optax.Schedule]:
  """The optimizer a config asks for, and its learning-rate schedule (for logging).

  ``axis_name``/``sync_axis_name``: see ``sam_jax.optim.sam.sharpness_aware``.
  """
  schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
  parts = [sharpness_aware(config, schedule, axis_name, sync_axis_name)]
  if config.optimizer.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(config.optimizer.grad_clip_norm))
  parts.append(base_optimizer(config.optimizer, schedule))
  return optax.chain(*parts), schedule
