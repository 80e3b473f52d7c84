"""ViT-S/32 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): SAM adds 2.1 points top-1 (the smallest gain of the
ViTs: short patch sequence); the absolute numbers are not in REFERENCE.md.

  python -m sam_jax.main --config=configs/vit_s32.py --workdir=DIR
  python -m sam_jax.main --config=configs/vit_s32.py --workdir=DIR --config.sam.rho=0  # baseline

Not confirmed by REFERENCE.md: rho=0.05 (ViTs use about 0.05-0.2) and dropout 0.1 (the original ViT
from-scratch setting).
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="vit", variant="S/32", rho=0.05, dropout_rate=0.1)
