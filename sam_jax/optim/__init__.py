"""Optimizers: SAM as Optax gradient transformations and the config-built chain."""

from sam_jax.optim.optimizer import create_optimizer, learning_rate_schedule
from sam_jax.optim.sam import sam

__all__ = ["create_optimizer", "learning_rate_schedule", "sam"]
