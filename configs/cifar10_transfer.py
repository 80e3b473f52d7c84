r"""Transfer on a class split of the CIFAR-10 folder: pretrain on five classes (with or
without SAM), fine-tune on few images of the other five (``recipes.cifar10_transfer``).

  python -m sam_jax.main --config=configs/cifar10_transfer.py:pretrain \
      --workdir=/tmp/transfer_sam --config.data_dir=/tmp/cifar10     # --config.sam.rho=0: base
  python -m sam_jax.main --config=configs/cifar10_transfer.py:finetune \
      --workdir=/tmp/transfer_sam_ft --config.data_dir=/tmp/cifar10 \
      --config.init_from=/tmp/transfer_sam                           # "": from scratch

Pretraining is ``configs/cifar10_folder.py`` on airplane, automobile, bird, cat and deer;
fine-tuning reads 100 training images of each of dog, frog, horse, ship and truck
(``config.classes``, ``train[:100/class]``) and evaluates on their 5,000 test images,
with the official fine-tuning protocol scaled to a CPU (docs/paper.md R40-R47). The
paper's own transfer targets and settings (``configs/finetune.py``) need TFDS data.
"""

import ml_collections

from sam_jax.config import recipes


def get_config(stage: str = "pretrain") -> ml_collections.ConfigDict:
  return recipes.cifar10_transfer(stage)
