"""ResNet-101 from scratch on ImageNet with SAM (ResNet recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): not in REFERENCE.md (SAM's gain on ResNets is small:
+0.8 for ResNet-152).

  python -m sam_jax.main --config=configs/resnet101.py --workdir=DIR
  python -m sam_jax.main --config=configs/resnet101.py --workdir=DIR --config.sam.rho=0  # baseline

Not confirmed by REFERENCE.md: rho=0.05 (small for ResNets; Foret et al.'s ImageNet value) and the
lr schedule (see sam_jax/config/recipes.py).
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.resnet_imagenet(depth=101, rho=0.05)
