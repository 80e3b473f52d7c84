"""Mixer-S/8 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): not recorded in docs/paper.md (SAM helps Mixers more with
longer patch sequences: 784 tokens here).

  python -m sam_jax.main --config=configs/mixer_s8.py --workdir=DIR
  python -m sam_jax.main --config=configs/mixer_s8.py --workdir=DIR --config.sam.rho=0  # baseline

Values: the recipe (docs/paper.md R1-R13, R18, R19, R23); no dropout or stochastic
depth (R21) and rho=0.3 (R22) are unconfirmed.
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="mixer", variant="S/8", rho=0.3)
