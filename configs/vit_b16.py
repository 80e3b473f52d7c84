"""ViT-B/16 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): 74.6% -> 79.9% top-1; ImageNet-C 46.6 -> 56.5;
ImageNet-R 26.4 with SAM.

  python -m sam_jax.main --config=configs/vit_b16.py --workdir=DIR
  python -m sam_jax.main --config=configs/vit_b16.py --workdir=DIR --config.sam.rho=0  # baseline

Values: the recipe (docs/paper.md R1-R20, R23), with a 768-wide tanh
representation layer (R17) and dropout 0.1 (R14); rho=0.2 is unconfirmed (R22).
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="vit", variant="B/16", rho=0.2, dropout_rate=0.1,
                          representation_size=768)
