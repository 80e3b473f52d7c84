r"""SAM vs strong augmentation ([P] §4.5): the small ViT of ``cifar10_folder.py`` with
RandAugment(2, 15) and mixup 0.5 on its CIFAR-10 image folder.

  python -m sam_jax.main --config=configs/cifar10_augment.py --workdir=/tmp/sam_cifar10_aug \
      --config.data_dir=/tmp/cifar10                                     # +AUG +SAM
  python -m sam_jax.main --config=configs/cifar10_augment.py --workdir=/tmp/cifar10_aug \
      --config.data_dir=/tmp/cifar10 --config.sam.rho=0                  # +AUG
  python -m sam_jax.main --config=configs/cifar10_folder.py --workdir=/tmp/sam_cifar10 \
      --config.data_dir=/tmp/cifar10                                     # +SAM
  python -m sam_jax.main --config=configs/cifar10_folder.py --workdir=/tmp/cifar10 \
      --config.data_dir=/tmp/cifar10 --config.sam.rho=0                  # base

Each training image gets two RandAugment ops at magnitude 15 after the crop and flip
(translate and cutout scaled from 224 to 32 px), and each batch is mixed with itself
rolled by one, weight max(b, 1 - b) with b ~ Beta(0.5, 0.5), so the training labels are
probability vectors (evaluation keeps the plain test images and labels). These are
big_vision's values for Mixer-B/16 and ViT-B/16 (AugReg "medium2") on ImageNet
(docs/paper.md AUG1-AUG3): the augmented recipes the paper compares SAM with; the
paper's own values are unconfirmed. Stochastic depth (big_vision's Mixer: 0.1) is not
part of this config. The rest is ``cifar10_folder.py``'s (this project's choices).
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  config = recipes.cifar10_folder()
  config.augment.update(dict(randaugment_layers=2, randaugment_magnitude=15.0, mixup_alpha=0.5))
  return config
