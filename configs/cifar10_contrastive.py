r"""Contrastive pretraining (SimCLR's NT-Xent) with SAM, then a linear probe or a fine-tune: the
small ViT of ``cifar10_folder.py`` on its CIFAR-10 image folder (the paper's §5.2 in
miniature; docs/paper.md §11 gives every value's source or marks it this project's choice).

  python -m sam_jax.main --config=configs/cifar10_contrastive.py --workdir=/tmp/simclr_sam \
      --config.data_dir=/tmp/cifar10                            # pretrain (--config.sam.rho=0: without SAM)
  python -m sam_jax.main --config=configs/cifar10_contrastive.py:probe --workdir=/tmp/simclr_probe \
      --config.data_dir=/tmp/cifar10 --config.init_from=/tmp/simclr_sam
  python -m sam_jax.main --config=configs/cifar10_contrastive.py:finetune --workdir=/tmp/simclr_ft \
      --config.data_dir=/tmp/cifar10 --config.init_from=/tmp/simclr_sam

``pretrain``: two views of each image (Inception crop of area 0.08-1 + flip, then colour
jitter of strength 0.5 with probability 0.8 and grey with probability 0.2; no blur at
32 px), NT-Xent at temperature 0.5 over the views of each SAM group (the negatives are
the group's other examples: ``config.sam.m``, by default the per-device batch), a
projection head (128, 128) on the ViT's class token; no classification eval (the model
has no classifier). ``probe``: the classifier alone (``config.trainable='^head/'``) on the
frozen backbone in inference mode, SGD, no SAM. ``finetune``: every parameter, AdamW, SAM.
``config.init_from`` is the pretraining run's workdir (or an ``.npz`` of its parameters,
``sam_jax.checkpoints.npz.export_npz``): its ``projection`` is dropped and a fresh ``head``
made on loading (``config.reinit_head``, set by both stages).
"""

import ml_collections

from sam_jax.config import recipes


def get_config(stage: str = "pretrain") -> ml_collections.ConfigDict:
  return recipes.cifar10_contrastive(stage)
