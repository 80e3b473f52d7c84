"""Mixer-B/16 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): 66.4% -> 77.4% top-1; ImageNet-C 33.8 -> 48.8.

  python -m sam_jax.main --config=configs/mixer_b16.py --workdir=DIR
  python -m sam_jax.main --config=configs/mixer_b16.py --workdir=DIR --config.sam.rho=0  # baseline

Values: the recipe (docs/paper.md R1-R13, R18, R19, R23); no dropout or stochastic
depth (R21) and rho=0.5 (R22) are unconfirmed.
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="mixer", variant="B/16", rho=0.5)
