"""ViT-S/16 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): ViT-S/16 with SAM beats ResNet-50 with SAM by 1.4 points on ImageNet and 6.5
on ImageNet-C; its own top-1 numbers are not in REFERENCE.md.

  python -m sam_jax.main --config=configs/vit_s16.py --workdir=DIR
  python -m sam_jax.main --config=configs/vit_s16.py --workdir=DIR --config.sam.rho=0  # baseline

Not confirmed by REFERENCE.md: rho=0.1 (ViTs use about 0.05-0.2) and dropout 0.1 (the original ViT
from-scratch setting).
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="vit", variant="S/16", rho=0.1, dropout_rate=0.1)
