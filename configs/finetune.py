"""Transfer: fine-tune an ImageNet checkpoint (.npz) on CIFAR-10/100, Flowers or Pets.

The paper fine-tunes its ImageNet models (with and without SAM) on these datasets;
its transfer numbers are not recorded in docs/paper.md. The recipe (``recipes.finetune``,
docs/paper.md R40-R44) follows the official ViT fine-tuning code and is not confirmed for
this paper: SGD momentum 0.9, batch 512, lr 0.03, cosine, no weight decay, 384 px (224
for Mixers), 10k steps for CIFAR, 500 for Flowers and Pets. The argument after ":" is
``DATASET[,MODEL-VARIANT]`` (default ``cifar10,vit-B/16``); it also sets the class
count and the step counts, which a bare ``--config.dataset=`` override would not:

  python -m sam_jax.main --config=configs/finetune.py:cifar100 --workdir=DIR \
      --config.init_from=ViT-B_16.npz
  python -m sam_jax.main --config=configs/finetune.py:oxford_iiit_pet,mixer-B/16 --workdir=DIR \
      --config.init_from=Mixer-B_16.npz

Fine-tuning itself runs without SAM (rho=0, R44, unconfirmed); ``--config.sam.rho=0.05``
adds it (groups of m = 32, R23). Datasets: ``recipes.TRANSFER``.
"""

import ml_collections

from sam_jax.config import recipes


def get_config(arg: str = "cifar10") -> ml_collections.ConfigDict:
  dataset, _, model = arg.partition(",")
  name, sep, variant = (model or "vit-B/16").partition("-")
  if not sep:
    raise ValueError(f"configs/finetune.py: expected DATASET[,MODEL-VARIANT] such as "
                     f"'cifar100,vit-S/16', got {arg!r}.")
  return recipes.finetune(dataset=dataset, model=name, variant=variant)
