"""ResNet-152 from scratch on ImageNet with SAM (ResNet recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): 78.5% -> 79.3% top-1; ImageNet-C 50.0 -> 52.2;
ImageNet-R 25.7 with SAM.

  python -m sam_jax.main --config=configs/resnet152.py --workdir=DIR
  python -m sam_jax.main --config=configs/resnet152.py --workdir=DIR --config.sam.rho=0  # baseline

Values: the ResNet recipe (docs/paper.md R5, R23, R30-R35, the last the SAM code's
preprocessing); rho=0.05 (R22) and the lr schedule (R32) are unconfirmed.
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.resnet_imagenet(depth=152, rho=0.05)
