"""The offline default: a small ViT trained with SAM on scikit-learn's digits.

Needs no download and finishes in a few minutes on 2 CPU cores:

  python -m sam_jax.main --config=configs/default.py --workdir=/tmp/sam_jax_default

``--config.sam.rho=0`` gives the same run without SAM (the base optimizer). Not a paper
run: its values are this project's choices for a small offline run (docs/paper.md §7).
"""

import ml_collections

from sam_jax.config import defaults


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = "digits"      # 1,437 train / 360 test real 8x8 images.
  config.data_dir = ""  # Unused by the digits; a str so --config.data_dir=... can override.
  config.train_split = "train"
  config.eval_split = "test"
  config.image_size = 16         # 8x8 digits upsampled by pixel replication.
  config.pp = ml_collections.ConfigDict(dict(max_shift=0))  # Random translation (8x8 pixels): off.
  config.batch_size = 128        # Global, split over all devices.
  config.eval_batch_size = 120

  config.model = ml_collections.ConfigDict(dict(
      name="vit", variant="Ti/4", hidden_size=64, mlp_dim=128, num_heads=4, num_layers=4,
      dropout_rate=0.1, dtype="float32"))  # Activations; "bfloat16" keeps float32 weights.

  config.num_train_steps = 1200
  warmup = config.get_ref("num_train_steps") // 12  # 100 steps at 1,200; follows num_train_steps.
  config.optimizer = defaults.optimizer("adamw", learning_rate=1e-3, warmup_steps=warmup,
                                        decay="cosine", weight_decay=0.1, grad_clip_norm=1.0)
  config.sam = defaults.sam(rho=0.05)  # --config.sam.kind=asam|gsam|looksam|msam|aesam: another.

  config.log_every_steps = 100
  config.eval_every_steps = 400
  config.checkpoint_every_steps = 400
  config.keep_checkpoints = 3
  config.init_from = ""  # An official-format .npz to start from; "" trains from scratch.
  config.nonfinite = "stop"  # Or "skip": leave the state unchanged on a non-finite step.
  config.update(defaults.sections())  # Of analyze and evaluate.
  return config
