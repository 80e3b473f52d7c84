"""ViT-S/32 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): SAM adds 2.1 points top-1 (the smallest gain of the
ViTs: short patch sequence); the absolute numbers are not recorded in docs/paper.md.

  python -m sam_jax.main --config=configs/vit_s32.py --workdir=DIR
  python -m sam_jax.main --config=configs/vit_s32.py --workdir=DIR --config.sam.rho=0  # baseline

Values: the recipe (docs/paper.md R1-R20, R23), with a 384-wide tanh
representation layer (R17) and dropout 0.1 (R14); rho=0.05 is unconfirmed (R22).
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="vit", variant="S/32", rho=0.05, dropout_rate=0.1,
                          representation_size=384)
