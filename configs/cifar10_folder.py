r"""A small ViT trained with SAM on CIFAR-10 stored as an image folder (JPEG files).

The folder is ``DIR/{train,test}/<class>/<image>``; class folders sorted by name
give the labels (airplane=0 ... truck=9, CIFAR-10's order). For the JPEG copy
shipped with this project's test data:

  mkdir -p /tmp/cifar10 && tar -xzf cifar10_jpeg.tar.gz -C /tmp/cifar10
  python -m sam_jax.main --config=configs/cifar10_folder.py --workdir=/tmp/sam_cifar10 \
      --config.data_dir=/tmp/cifar10

Preprocessing is the paper's Inception crop + flip, at 32 px; evaluation takes the
whole 32 x 32 image (eval_resize 32, central crop 32). The crop area range
(0.35, 1) is milder than ImageNet's (0.05, 1), a choice for 32 px images that the
paper does not state. ``--config.sam.rho=0`` trains the same model without SAM. Not a
paper run: its values are this project's choices (docs/paper.md §7).
"""

import ml_collections

from sam_jax.config import defaults


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = "folder"
  config.data_dir = ""           # Required: --config.data_dir=/path/to/cifar10 (a str field).
  config.train_split = "train"   # 50,000 images.
  config.eval_split = "test"     # 10,000 images.
  config.num_classes = 10
  config.image_size = 32
  config.pp = ml_collections.ConfigDict(dict(
      crop_area_range=(0.35, 1.0), aspect_ratio_range=(3 / 4, 4 / 3), resize_method="bilinear",
      eval_resize=32, flip=True, skip_corrupt=False))
  config.batch_size = 128        # Global, split over all devices.
  config.eval_batch_size = 256   # The last of 40 eval batches is padded (masked).

  config.model = ml_collections.ConfigDict(dict(
      name="vit", variant="Ti/4", hidden_size=128, mlp_dim=256, num_heads=4, num_layers=4,
      dropout_rate=0.0, dtype="float32"))

  config.num_train_steps = 5000  # About 13 epochs; ~0.5 steps/s (~3 h) on 2 CPU cores.
  warmup = config.get_ref("num_train_steps") // 10  # 500 steps at 5,000; follows num_train_steps.
  config.optimizer = defaults.optimizer("adamw", learning_rate=1e-3, warmup_steps=warmup,
                                        decay="cosine", weight_decay=0.1, grad_clip_norm=1.0)
  config.sam = defaults.sam(rho=0.05)

  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.init_from = ""  # An official-format .npz to start from; "" trains from scratch.
  config.nonfinite = "stop"
  config.update(defaults.sections())  # Of analyze and evaluate.
  return config
