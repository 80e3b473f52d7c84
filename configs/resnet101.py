"""ResNet-101 from scratch on ImageNet with SAM (ResNet recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): not recorded in docs/paper.md (SAM's gain on ResNets is small:
+0.8 for ResNet-152).

  python -m sam_jax.main --config=configs/resnet101.py --workdir=DIR
  python -m sam_jax.main --config=configs/resnet101.py --workdir=DIR --config.sam.rho=0  # baseline

Values: the ResNet recipe (docs/paper.md R5, R23, R30-R35, the last the SAM code's
preprocessing); rho=0.05 (R22) and the lr schedule (R32) are unconfirmed.
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.resnet_imagenet(depth=101, rho=0.05)
