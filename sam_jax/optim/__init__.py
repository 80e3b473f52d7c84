"""Optimizers: the SAM family as Optax gradient transformations, and the config-built chain."""

from sam_jax.optim.aesam import aesam
from sam_jax.optim.asam import asam
from sam_jax.optim.gsam import gsam
from sam_jax.optim.looksam import looksam
from sam_jax.optim.msam import momentum_sam
from sam_jax.optim.optimizer import create_optimizer, learning_rate_schedule
from sam_jax.optim.protocol import gradient_point
from sam_jax.optim.sam import sam, sharpness_aware

__all__ = ["aesam", "asam", "create_optimizer", "gradient_point", "gsam", "learning_rate_schedule", "looksam",
           "momentum_sam", "sam", "sharpness_aware"]
