"""Mixer-S/16 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): SAM adds 4.1 points top-1 (vs +11.0 for Mixer-B/16);
the absolute numbers are not in REFERENCE.md.

  python -m sam_jax.main --config=configs/mixer_s16.py --workdir=DIR
  python -m sam_jax.main --config=configs/mixer_s16.py --workdir=DIR --config.sam.rho=0  # baseline

Not confirmed by REFERENCE.md: rho=0.2 (Mixers use a larger rho than ViTs) and no dropout or
stochastic depth.
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="mixer", variant="S/16", rho=0.2)
