"""ViT-S/16 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): ViT-S/16 with SAM beats ResNet-50 with SAM by 1.4 points on ImageNet and 6.5
on ImageNet-C; its own top-1 numbers are not recorded in docs/paper.md.

  python -m sam_jax.main --config=configs/vit_s16.py --workdir=DIR
  python -m sam_jax.main --config=configs/vit_s16.py --workdir=DIR --config.sam.rho=0  # baseline

Values: the recipe (docs/paper.md R1-R20, R23), with a 384-wide tanh
representation layer (R17) and dropout 0.1 (R14); rho=0.1 is unconfirmed (R22).
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="vit", variant="S/16", rho=0.1, dropout_rate=0.1,
                          representation_size=384)
