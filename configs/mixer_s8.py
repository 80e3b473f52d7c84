"""Mixer-S/8 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): not in REFERENCE.md (SAM helps Mixers more with
longer patch sequences: 784 tokens here).

  python -m sam_jax.main --config=configs/mixer_s8.py --workdir=DIR
  python -m sam_jax.main --config=configs/mixer_s8.py --workdir=DIR --config.sam.rho=0  # baseline

Not confirmed by REFERENCE.md: rho=0.3 (Mixers use a larger rho than ViTs) and no dropout or
stochastic depth.
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="mixer", variant="S/8", rho=0.3)
