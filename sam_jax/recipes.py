"""The paper's ImageNet-from-scratch recipe as a config builder (REFERENCE.md section 2).

Inception crop + flip at 224 px, eval resize 256 + central crop 224, pixels in
[-1, 1], global batch 4096, 300 epochs, AdamW(0.9, 0.999) with peak lr 3e-3,
10k warm-up steps, linear decay, global-norm clipping at 1.0, decoupled weight
decay 0.3, 1% of train held out as minival. The files in ``configs/`` call this.
"""

import ml_collections

IMAGENET_TRAIN_EXAMPLES = 1_281_167


def imagenet(*, model: str, variant: str, rho: float, epochs: int = 300,
             batch_size: int = 4096, **model_overrides) -> ml_collections.ConfigDict:
  """A paper run on TFDS ``imagenet2012`` (needs the manual ImageNet download)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = "imagenet2012"
  config.data_dir = None  # TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR).
  config.train_split = "train[:99%]"
  config.eval_split = "train[99%:]"  # Minival; "validation" for the final numbers.
  config.image_size = 224
  config.pp = ml_collections.ConfigDict(dict(
      crop_area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3), resize_method="bilinear",
      eval_resize=256, flip=True, skip_corrupt=False))
  config.shuffle_buffer = 250_000
  config.batch_size = batch_size
  config.eval_batch_size = 1024

  config.model = ml_collections.ConfigDict(dict(name=model, variant=variant, **model_overrides))
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=3e-3, end_learning_rate=0.0, warmup_steps=10_000,
      decay="linear", b1=0.9, b2=0.999, weight_decay=0.3, momentum=0.9, nesterov=False,
      grad_clip_norm=1.0))
  config.sam = ml_collections.ConfigDict(dict(rho=rho, sync="device", eps=1e-12))

  config.num_train_steps = epochs * int(IMAGENET_TRAIN_EXAMPLES * 0.99) // batch_size
  config.log_every_steps = 100
  config.eval_every_steps = 5000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  return config
