r"""A small ViT trained with SAM on CIFAR-10 stored as an image folder (JPEG files).

The folder is ``DIR/{train,test}/<class>/<image>``; class folders sorted by name
give the labels (airplane=0 ... truck=9, CIFAR-10's order). Write it once from TFDS
``cifar10`` (or ``--source=cifar-10-python.tar.gz``, the official archive), then train:

  python -m sam_jax.data.make_cifar10_folder --out=/tmp/cifar10
  python -m sam_jax.main --config=configs/cifar10_folder.py --workdir=/tmp/sam_cifar10 \
      --config.data_dir=/tmp/cifar10

Preprocessing is the paper's Inception crop + flip, at 32 px; evaluation takes the
whole 32 x 32 image (eval_resize 32, central crop 32). The crop area range
(0.35, 1) is milder than ImageNet's (0.05, 1), a choice for 32 px images that the
paper does not state. ``--config.sam.rho=0`` trains the same model without SAM. Not a
paper run: its values are this project's choices (docs/paper.md §7).
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  return recipes.cifar10_folder()
