"""Builds the full optimizer from a config: SAM -> clipping -> base optimizer.

    optax.chain(sam | asam | gsam | looksam | aesam, clip_by_global_norm(c), base)
    momentum_sam(optax.chain(clip_by_global_norm(c), base))

The SAM-family transformation comes first, so clipping and the base optimizer see the final,
device-averaged SAM gradient, and weight decay and momentum act at the clean parameters.
Momentum-SAM wraps clipping and the base optimizer instead: its ascent reads the base
optimizer's momentum. ``config.sam.kind`` picks the kind's module (``sam_builders``: each
kind's module names its ``KIND`` and builds from the config). The config is a completed one (``sam_jax.config.defaults.complete``),
checked by ``sam_jax.config.validation``: every key is read as it is.
With ``optimizer.weight_decay_in_loss`` the decay is instead an L2 penalty in the loss
(``l2_penalty.l2_in_loss`` around the whole chain), as in google-research/sam: part of
the ascent and of the perturbed gradient. Either way it acts on ``masks.decay_mask``.
With ``config.trainable`` (a regex of parameter paths; "" trains all) the whole chain is
wrapped in ``freeze.freeze`` and the decay acts on the trained kernels only.
"""

import functools
import importlib
import pathlib
import pkgutil
from collections.abc import Sequence
from typing import Protocol

import ml_collections
import optax

from sam_jax.optim import freeze, l2_penalty, masks
from sam_jax.parallel import AxisNames


def learning_rate_schedule(opt: ml_collections.ConfigDict, num_train_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to ``opt.learning_rate``, then ``opt.decay`` to
  ``opt.end_learning_rate``."""
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


def _decay(opt: ml_collections.ConfigDict) -> float:
  """The base optimizer's weight decay: 0 when it is an L2 penalty in the loss instead."""
  return 0.0 if opt.weight_decay_in_loss else opt.weight_decay


def _adamw(opt: ml_collections.ConfigDict, schedule: optax.Schedule, decay_mask: masks.Mask):
  """AdamW: decoupled weight decay, multiplied by the learning rate."""
  return optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=_decay(opt), mask=decay_mask)


def _sgd(opt: ml_collections.ConfigDict, schedule: optax.Schedule, decay_mask: masks.Mask):
  """SGD with momentum (optionally Nesterov) and L2 weight decay added to the gradient."""
  return optax.chain(
      optax.add_decayed_weights(_decay(opt), mask=decay_mask),
      optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov))


# config.optimizer.name -> (optimizer section, schedule, decay mask) -> base optimizer.
BASE_OPTIMIZERS = {"adamw": _adamw, "sgd": _sgd}


class SamBuilder(Protocol):
  """A SAM kind's ``from_config``: the whole optimizer for ``config`` (its kind).

  The SAM-family transformation chained before the transformations ``inner`` (clipping,
  the base optimizer) in one flat chain (the state layout checkpoints hold), or, for
  Momentum-SAM, wrapped around them. It reads ``config.sam`` and its own options
  ``config.sam.<kind>`` (their defaults: ``sam_jax.config.defaults.SAM_KINDS``).
  """

  def __call__(self, config: ml_collections.ConfigDict, schedule: optax.Schedule,
               inner: Sequence[optax.GradientTransformation], *, axis_name: AxisNames,
               sync_axis_name: AxisNames, eps: float, every_k_steps: int
               ) -> optax.GradientTransformationExtraArgs: ...


@functools.cache
def sam_builders() -> dict[str, SamBuilder]:
  """config.sam.kind -> its builder: every module of this package that names a ``KIND``
  and defines ``from_config`` (a ``SamBuilder``). A new kind is that module and its
  defaults in ``config.defaults.SAM_KINDS``."""
  found = {}
  for info in pkgutil.iter_modules([str(pathlib.Path(__file__).parent)]):
    module = importlib.import_module(f"{__package__}.{info.name}")
    if hasattr(module, "KIND"):
      found[module.KIND] = module.from_config
  return found


def base_optimizer(opt: ml_collections.ConfigDict, schedule: optax.Schedule,
                   decay_mask: masks.Mask = masks.decay_mask) -> optax.GradientTransformation:
  """The base optimizer ``opt.name`` names (``BASE_OPTIMIZERS``), decaying ``decay_mask``."""
  return BASE_OPTIMIZERS[opt.name](opt, schedule, decay_mask)


def create_optimizer(config: ml_collections.ConfigDict, *, axis_name: AxisNames = None,
                     sync_axis_name: AxisNames = None, gradient_only: bool = False
                     ) -> tuple[optax.GradientTransformationExtraArgs, optax.Schedule]:
  """The optimizer a config asks for, and its learning-rate schedule (for logging).

  ``axis_name``/``sync_axis_name``: see ``sam_jax.optim.sam_family.sharpness_aware``.
  ``gradient_only``: the same chain with clipping and the base optimizer replaced by
  ``optax.identity`` (the same state layout, left unchanged): ``update`` returns the
  SAM-family gradient alone, what gradient accumulation takes on each micro-batch
  (``optim.protocol``).
  """
  schedule = learning_rate_schedule(config.optimizer, config.num_train_steps)
  trainable = masks.path_mask(config.trainable) if config.trainable else None
  decay_mask = masks.both(masks.decay_mask, trainable) if trainable else masks.decay_mask
  inner = [base_optimizer(config.optimizer, schedule, decay_mask)]
  if config.optimizer.grad_clip_norm:
    inner.insert(0, optax.clip_by_global_norm(config.optimizer.grad_clip_norm))
  if gradient_only:
    inner = [optax.identity() for _ in inner]
  tx = sam_builders()[config.sam.kind](
      config, schedule, inner, axis_name=axis_name, sync_axis_name=sync_axis_name,
      eps=config.sam.eps, every_k_steps=config.sam.every_k_steps)
  if config.optimizer.weight_decay_in_loss:
    tx = l2_penalty.l2_in_loss(tx, config.optimizer.weight_decay, decay_mask)
  if trainable:
    tx = freeze.freeze(tx, trainable)
  return tx, schedule
