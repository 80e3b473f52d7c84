r"""Adversarial training (Madry et al.) with SAM: the small ViT of ``cifar10_folder.py`` on
PGD examples of its CIFAR-10 image folder.

  python -m sam_jax.main --config=configs/cifar10_adversarial.py --workdir=/tmp/sam_cifar10_adv \
      --config.data_dir=/tmp/cifar10
  python -m sam_jax.evaluate --run=adv=/tmp/sam_cifar10_adv   # clean, FGSM and PGD-20 accuracy

Each step trains on PGD-7 examples of an L-inf ball of 8/255 (steps of 2/255, random
start), made inside the step with the training weights in training mode; SAM's ascent
and descent both use those examples (``--config.sam.rho=0``: adversarial training
without SAM). Evaluation attacks harder: PGD with 20 steps of 2/255 at the same radius.
The radius and steps are the usual CIFAR-10 values (docs/paper.md A1-A3), not the
paper's ImageNet setting; the rest is ``cifar10_folder.py``'s (this project's choices).
"""

import ml_collections

from sam_jax.config import recipes


def get_config() -> ml_collections.ConfigDict:
  config = recipes.cifar10_folder()
  config.adversarial_training.update(dict(epsilon=8.0, step_size=2.0, num_steps=7))
  config.adversarial.update(dict(epsilon=8.0, pgd_step_size=2.0, pgd_steps=20))
  return config
