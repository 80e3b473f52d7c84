"""Optimizers: the SAM family as Optax gradient transformations, and the config-built chain."""

from sam_jax.optim.adaptive_policy_sam import aesam
from sam_jax.optim.adaptive_sam import asam
from sam_jax.optim.msam import momentum_sam
from sam_jax.optim.optimizer import create_optimizer, learning_rate_schedule
from sam_jax.optim.periodic_sam import looksam
from sam_jax.optim.protocol import gradient_point
from sam_jax.optim.sam_family import sam, sharpness_aware
from sam_jax.optim.surrogate_gap_sam import gsam

__all__ = ["aesam", "asam", "create_optimizer", "gradient_point", "gsam",
           "learning_rate_schedule", "looksam", "momentum_sam", "sam", "sharpness_aware"]
