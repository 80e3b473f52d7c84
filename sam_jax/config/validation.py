"""Checks a training config before any expensive work, with errors that say what is valid."""

import ml_collections

from sam_jax.optim import optimizer as optimizer_lib
from sam_jax.training import train_step

SYNC_MODES = ("device", "global")
NONFINITE = ("stop", "skip")  # Stop the run with an error, or skip the step.
DTYPES = ("float32", "bfloat16")  # Of activations; parameters and optimizer state stay float32.
REQUIRED = ("seed", "dataset", "image_size", "batch_size", "eval_batch_size", "num_train_steps",
            "log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints",
            "model", "optimizer", "sam")


def _positive_int(config: ml_collections.ConfigDict, key: str) -> None:
  value = config[key]
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    raise ValueError(f"config.{key}={value!r} must be a positive integer.")


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad config value and what would be valid."""
  missing = [k for k in REQUIRED if k not in config]
  if missing:
    raise ValueError(f"config is missing the keys {missing}; see configs/default.py for a "
                     "complete config.")
  for key in ("image_size", "batch_size", "eval_batch_size", "num_train_steps",
              "log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    _positive_int(config, key)
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % num_devices:
      raise ValueError(f"config.{key}={config[key]} must be divisible by the number of "
                       f"devices ({num_devices}).")
  if config.model.get("dtype", "float32") not in DTYPES:
    raise ValueError(f"config.model.dtype={config.model.dtype!r} must be one of {DTYPES}.")
  if config.get("loss", "softmax_xent") not in train_step.LOSSES:
    raise ValueError(f"config.loss={config.loss!r} must be one of {sorted(train_step.LOSSES)}.")
  if config.sam.get("m") is not None and config.sam.sync == "global" and (
      config.sam.m != config.batch_size):
    raise ValueError(f"config.sam.sync='global' (m = batch_size = {config.batch_size}) and "
                     f"config.sam.m={config.sam.m} disagree; set one: --config.sam.m="
                     f"{config.batch_size} is global SAM.")
  if config.get("nonfinite", "stop") not in NONFINITE:
    raise ValueError(f"config.nonfinite={config.nonfinite!r} must be one of {NONFINITE}.")
  if not config.sam.rho >= 0:
    raise ValueError(f"config.sam.rho={config.sam.rho!r} must be >= 0 (0 trains without SAM).")
  if config.sam.sync not in SYNC_MODES:
    raise ValueError(f"config.sam.sync={config.sam.sync!r} must be one of {SYNC_MODES}.")
  if config.sam.get("kind", "sam") not in optimizer_lib.SAM_KINDS:
    raise ValueError(f"config.sam.kind={config.sam.kind!r} must be one of "
                     f"{optimizer_lib.SAM_KINDS}.")
  if config.optimizer.name not in optimizer_lib.OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={config.optimizer.name!r} must be one of "
                     f"{optimizer_lib.OPTIMIZERS}.")
  if config.optimizer.decay not in optimizer_lib.DECAYS:
    raise ValueError(f"config.optimizer.decay={config.optimizer.decay!r} must be one of "
                     f"{optimizer_lib.DECAYS}.")
  if not 0 <= config.optimizer.warmup_steps < config.num_train_steps:
    raise ValueError(f"config.optimizer.warmup_steps={config.optimizer.warmup_steps} must be in "
                     f"[0, num_train_steps={config.num_train_steps}).")
