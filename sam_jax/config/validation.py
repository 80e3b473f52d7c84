"""Checks a completed config (``defaults.complete``) before any expensive work.

Each error names the first bad value and what would be valid. The valid choices are
listed here, as plain data (this package imports no JAX); the modules that act on them
(``optim.optimizer``, ``analysis.hessian``, ``analysis.ntk``) hold the same names, which
``tests/test_layering.py`` checks.
"""

import math
import re
from typing import Any

import ml_collections

from sam_jax.config import defaults

SYNC_MODES = ("device", "global")
NONFINITE = ("stop", "skip")  # Stop the run with an error, or skip the step.
DTYPES = ("float32", "bfloat16")  # Of activations; parameters and optimizer state stay float32.
LOSSES = ("softmax_xent", "sigmoid_xent")  # sam_jax.metrics.LOSSES.
GSAM_DECOMPOSE = ("group", "global")
OPTIMIZERS = ("adamw", "sgd")
DECAYS = ("linear", "cosine", "constant")
HESSIAN_METHODS = ("lanczos", "power")
MAX_RANDAUGMENT_MAGNITUDE = 30.0  # sam_jax.data.randaugment.MAX_MAGNITUDE.
SELF_PACED_KINDS = ("msam", "aesam")  # SAM kinds that decide their own steps: every_k_steps 1.
NUMPY_DATASETS = ("digits",)  # Read without tf.data: no config.augment, no second view.
CONTRASTIVE_METHODS = ("", "simclr")  # "": supervised (training.loop.objective).
REQUIRED = ("seed", "dataset", "image_size", "batch_size", "eval_batch_size", "num_train_steps",
            "log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints",
            "model", "optimizer", "sam")


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad value of a completed training config."""
  missing = [k for k in REQUIRED if k not in config]
  if missing:
    raise ValueError(f"config is missing the keys {missing}; see configs/default.py for a "
                     "complete config.")
  check_finite(config)
  for key in ("image_size", "batch_size", "eval_batch_size", "num_train_steps",
              "log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    _positive_int(config, key)
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % num_devices:
      raise ValueError(f"config.{key}={config[key]} must be divisible by the number of "
                       f"devices ({num_devices}).")
  _choice(config, "model.dtype", DTYPES)
  _choice(config, "nonfinite", NONFINITE)
  _choice(config, "loss", LOSSES)
  if config.sam.m is not None and config.sam.sync == "global" and (
      config.sam.m != config.batch_size):
    raise ValueError(f"config.sam.sync='global' (m = batch_size = {config.batch_size}) and "
                     f"config.sam.m={config.sam.m} disagree; set one: --config.sam.m="
                     f"{config.batch_size} is global SAM.")
  if not config.sam.rho >= 0:
    raise ValueError(f"config.sam.rho={config.sam.rho!r} must be >= 0 (0 trains without SAM).")
  _choice(config, "sam.sync", SYNC_MODES)
  _choice(config, "sam.kind", tuple(defaults.SAM_KINDS))
  _choice(config, "sam.gsam.decompose", GSAM_DECOMPOSE)
  _positive_int(config, "sam.every_k_steps")
  _check_sam_kind(config)
  _check_accumulation(config, num_devices)
  _choice(config, "optimizer.name", OPTIMIZERS)
  _choice(config, "optimizer.decay", DECAYS)
  if not 0 <= config.optimizer.warmup_steps < config.num_train_steps:
    raise ValueError(f"config.optimizer.warmup_steps={config.optimizer.warmup_steps} must be in "
                     f"[0, num_train_steps={config.num_train_steps}).")
  validate_sections(config)
  check_augment(config)
  attack = config.adversarial_training
  if not attack.epsilon >= 0:
    raise ValueError(f"config.adversarial_training.epsilon={attack.epsilon!r} must be >= 0 "
                     "(pixel units; 0 trains on the batch as given).")
  if attack.epsilon > 0:
    _positive_int(config, "adversarial_training.num_steps")
    if not attack.step_size > 0:
      raise ValueError(f"config.adversarial_training.step_size={attack.step_size!r} must be > 0.")
  try:
    re.compile(config.trainable)
  except re.error as e:
    raise ValueError(f"config.trainable={config.trainable!r} is not a regular expression ({e}); "
                     "e.g. '^head/' trains the classifier only, '' every parameter.") from None
  _check_contrastive(config)


def _check_contrastive(config: ml_collections.ConfigDict) -> None:
  """``config.contrastive`` and the model's projection head go together."""
  section, projection = config.contrastive, config.model.get("projection")
  _choice(config, "contrastive.method", CONTRASTIVE_METHODS)
  if not section.method:
    if projection:
      raise ValueError(f"config.model.projection={projection!r} makes the model output "
                       "projections, not logits: set --config.contrastive.method=simclr to "
                       "pretrain it, or --config.model.projection='()' for a classifier.")
    return
  if not projection:
    raise ValueError(f"config.contrastive.method={section.method!r} needs a projection head: set "
                     "config.model.projection, e.g. (128, 128) (widths; the last is the output).")
  if config.dataset in NUMPY_DATASETS:
    raise ValueError(f"config.contrastive.method: the {config.dataset} reader makes no second "
                     "view of an image; use an image folder or a TFDS dataset "
                     "(configs/cifar10_contrastive.py).")
  if config.adversarial_training.epsilon > 0:
    raise ValueError(f"config.adversarial_training.epsilon={config.adversarial_training.epsilon} "
                     "attacks a classifier's labels; it must be 0 with config.contrastive.method="
                     f"{section.method!r}.")
  if config.augment.randaugment_layers or config.augment.mixup_alpha:
    raise ValueError(f"config.augment={dict(config.augment)} with config.contrastive.method="
                     f"{section.method!r}: the two views have their own augmentation "
                     "(config.contrastive's colour distortion); set randaugment_layers and "
                     "mixup_alpha to 0.")
  if config.trainable:
    raise ValueError(f"config.trainable={config.trainable!r}: contrastive pretraining trains the "
                     "whole model; set it to '' (probes and fine-tunes are supervised).")
  if not section.temperature > 0:
    raise ValueError(f"config.contrastive.temperature={section.temperature!r} must be > 0.")
  for key in ("color_jitter", "color_jitter_prob", "grayscale_prob"):
    value = section[key]
    if not 0 <= value <= (1 if key.endswith("prob") else float("inf")):
      raise ValueError(f"config.contrastive.{key}={value!r} must be "
                       f"{'in [0, 1]' if key.endswith('prob') else '>= 0'}.")


def _check_accumulation(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """``accumulation_steps`` k: micro-batches of whole SAM groups, one update from their mean."""
  _positive_int(config, "accumulation_steps")
  k = config.accumulation_steps
  if k == 1:
    return
  if config.batch_size % (num_devices * k):
    raise ValueError(f"config.batch_size={config.batch_size} must be divisible by the devices "
                     f"times config.accumulation_steps ({num_devices} x {k}).")
  m = config.batch_size if config.sam.sync == "global" else config.sam.m
  refused = {
      f"config.sam.kind={config.sam.kind!r} (its state follows each whole batch's gradient)":
          config.sam.kind in ("looksam", "aesam"),
      "config.sam.gsam.decompose='global' (it decomposes the whole batch's mean gradients)":
          config.sam.kind == "gsam" and config.sam.gsam.decompose == "global",
      f"a SAM group of m={m} examples (larger than a micro-batch of "
      f"{config.batch_size // k}; set config.sam.m to at most that)":
          m is not None and m > config.batch_size // k,
      "config.contrastive (NT-Xent's negatives are the whole batch)":
          bool(config.contrastive.method),
  }
  for reason, bad in refused.items():
    if bad:
      raise ValueError(f"config.accumulation_steps={k} cannot run {reason}; valid with "
                       "accumulation: sam, asam, gsam (decompose='group'), msam, rho=0.")


def _check_sam_kind(config: ml_collections.ConfigDict) -> None:
  """The keys of the cheaper SAM kinds (LookSAM, Momentum-SAM, AE-SAM)."""
  kind, sam = config.sam.kind, config.sam
  if kind in SELF_PACED_KINDS and sam.every_k_steps != 1:
    raise ValueError(f"config.sam.every_k_steps={sam.every_k_steps} must be 1 for "
                     f"config.sam.kind={kind!r}, which decides its own steps.")
  if kind == "msam" and config.optimizer.name == "sgd" and not config.optimizer.momentum:
    raise ValueError("config.sam.kind='msam' ascends along the base optimizer's momentum: "
                     f"config.optimizer.momentum={config.optimizer.momentum!r} must be > 0 "
                     "(or config.optimizer.name='adamw').")
  if not sam.looksam.alpha >= 0:
    raise ValueError(f"config.sam.looksam.alpha={sam.looksam.alpha!r} must be >= 0.")
  if not 0 < sam.aesam.delta < 1:
    raise ValueError(f"config.sam.aesam.delta={sam.aesam.delta!r} must be in (0, 1).")


def check_finite(config: Any, prefix: str = "config") -> None:
  """Raises ValueError naming the first float of ``config`` (at any depth) that is NaN or
  infinite: no key takes one."""
  items = config.items() if hasattr(config, "items") else (
      enumerate(config) if isinstance(config, (list, tuple)) else ())
  for key, value in items:
    name = f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}"
    if isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f"{name}={value!r} must be a finite number.")
    check_finite(value, name)


def validate_sections(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad value of ``config.analysis`` or ``.adversarial``,
  or a non-finite float anywhere in ``config``."""
  check_finite(config)
  for key in ("analysis.batch_size", "analysis.hessian.num_batches", "analysis.hessian.num_steps",
              "analysis.ntk.batch_size", "analysis.neurons.num_batches",
              "analysis.landscape.num_batches", "analysis.landscape.points_1d",
              "analysis.landscape.points_2d", "analysis.attention.num_images",
              "adversarial.batch_size", "adversarial.pgd_steps"):
    _positive_int(config, key)
  _choice(config, "analysis.hessian.method", HESSIAN_METHODS)
  at_once = _get(config, "analysis.hessian.blocks_at_once")
  if not isinstance(at_once, int) or isinstance(at_once, bool) or at_once < 0:
    raise ValueError(f"config.analysis.hessian.blocks_at_once={at_once!r} must be an integer "
                     ">= 0 (0: all blocks at once).")
  for key in ("analysis.landscape.radius", "adversarial.epsilon", "adversarial.pgd_step_size"):
    if not _get(config, key) >= 0:
      raise ValueError(f"config.{key}={_get(config, key)!r} must be >= 0.")


def check_augment(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming a bad ``config.augment`` value of a data-complete config, or
  augmentation asked of a reader that has none (the digits)."""
  augment = config.augment
  layers, magnitude = augment.randaugment_layers, augment.randaugment_magnitude
  if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
    raise ValueError(f"config.augment.randaugment_layers={layers!r} must be an integer >= 0 "
                     "(random ops per image; 0 is off).")
  if not 0 <= magnitude <= MAX_RANDAUGMENT_MAGNITUDE:
    raise ValueError(f"config.augment.randaugment_magnitude={magnitude!r} must be in "
                     f"[0, {MAX_RANDAUGMENT_MAGNITUDE:g}] (RandAugment's M; 10 is the "
                     "reference's top level, big_vision uses 15).")
  if not augment.mixup_alpha >= 0:
    raise ValueError(f"config.augment.mixup_alpha={augment.mixup_alpha!r} must be >= 0 "
                     "(0 is off).")
  if config.dataset in NUMPY_DATASETS and (layers or augment.mixup_alpha):
    raise ValueError(f"config.augment (randaugment_layers={layers}, mixup_alpha="
                     f"{augment.mixup_alpha}) asks for RandAugment or mixup, which the "
                     f"{config.dataset!r} reader does not have: they run in the tf.data "
                     "pipeline (image folders and TFDS datasets); set "
                     "config.augment.randaugment_layers=0 and config.augment.mixup_alpha=0.")


def _positive_int(config: ml_collections.ConfigDict, key: str) -> None:
  value = _get(config, key)
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f"config.{key}={value!r} must be a positive integer.")


def _choice(config: ml_collections.ConfigDict, key: str, valid: tuple[str, ...]) -> None:
  if _get(config, key) not in valid:
    raise ValueError(f"config.{key}={_get(config, key)!r} must be one of {valid}.")


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  for part in dotted.split("."):
    config = config[part]
  return config
