"""Mixer-B/32 from scratch on ImageNet with SAM (the Mixer recipe of sam_jax/config/recipes.py).

Paper (no SAM -> SAM): not recorded in docs/paper.md (SAM helps Mixers more with
capacity and longer patch sequences).

  python -m sam_jax.main --config=configs/mixer_b32.py --workdir=DIR
  python -m sam_jax.main --config=configs/mixer_b32.py --workdir=DIR --config.sam.rho=0  # baseline

Values: the Mixer setting (docs/paper.md R21: big_vision's mlp_mixer_i1k.py without
RandAugment and mixup: lr 1e-3, linear decay to 1e-8, weight decay 0.1, stochastic depth 0.1)
and R1-R7, R9, R12, R13, R18, R19, R23; rho=0.35 (R22) is unconfirmed.
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.imagenet(model="mixer", variant="B/32", rho=0.35)
