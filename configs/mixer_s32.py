"""Mixer-S/32 from scratch on ImageNet with SAM (ViT/Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): not in REFERENCE.md (SAM helps Mixers more with
longer patch sequences, so expect less than Mixer-S/16's +4.1).

  python -m sam_jax.main --config=configs/mixer_s32.py --workdir=DIR
  python -m sam_jax.main --config=configs/mixer_s32.py --workdir=DIR --config.sam.rho=0  # baseline

Not confirmed by REFERENCE.md: rho=0.1 (Mixers use a larger rho than ViTs) and no dropout or
stochastic depth.
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="mixer", variant="S/32", rho=0.1)
