"""Optimizers: the SAM family as Optax gradient transformations, and the config-built chain."""

from sam_jax.optim.asam import asam
from sam_jax.optim.gsam import gsam
from sam_jax.optim.optimizer import create_optimizer, learning_rate_schedule
from sam_jax.optim.sam import sam, sharpness_aware

__all__ = ["asam", "create_optimizer", "gsam", "learning_rate_schedule", "sam", "sharpness_aware"]
