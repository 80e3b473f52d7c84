"""The paper's training recipes as config builders; every file in ``configs/`` calls one.

Every value cites docs/paper.md (``Rn``: its source, or "unconfirmed").

``imagenet``: ViT / MLP-Mixer from scratch [P §4.2] on ``imagenet2012`` ``train[:99%]``
with minival ``train[99%:]`` (R1); Inception crop with area in [0.05, 1] + flip at 224 px
(R2), eval resize 256 + central crop 224 (R3), pixels in [-1, 1] (R4); batch 4096 (R5),
300 epochs (R6), Adam(0.9, 0.999) (R7), 10k warm-up steps (R9), decoupled weight decay on
kernels (R12), clipping at global norm 1 (R13); sigmoid cross-entropy (R18); SAM groups of
m = 32 (R23). ViT: the original ViT pipeline, peak lr 3e-3 (R8), cosine decay (R10),
weight decay 0.3 (R11), head bias -10 (R19). Mixer: the original Mixer setting,
big_vision's ``mlp_mixer_i1k.py`` without its RandAugment and mixup (R21, ``MIXER``).

``resnet_imagenet``: ResNet v1 from scratch as the SAM code trains it (R30-R34): SGD with
Nesterov momentum 0.9 (R31); 90 epochs, peak lr 0.1 per 256 examples (1.6 at batch 4096),
5 warm-up epochs, cosine decay to 0 (R32, unconfirmed); L2 weight decay 1e-4 in the loss,
so part of the SAM ascent (R33); no clipping, softmax cross-entropy (R34); m = 32 (R23);
the SAM code's preprocessing (R35, ``SAM_CODE_PP``).

``finetune``: transfer at 384 px (224 for Mixers, whose token-mixing weights fix the
number of patches) from an ImageNet ``.npz`` (``config.init_from``), as the official ViT
fine-tuning code (R40-R44): SGD momentum 0.9, batch 512, peak lr 0.03, cosine decay, no
weight decay, clipping at 1.0, 10k steps (CIFAR) or 500 (Flowers, Pets), Inception crop +
flip, evaluation on the whole image resized to S x S (R42), no representation layer (the
file's is dropped with its head, R43).

``cifar10_contrastive``: SimCLR-style pretraining of ``cifar10_folder``'s ViT with (or
without) SAM, then a linear probe or a fine-tune from its workdir (docs/paper.md §11:
C-values, each with its source or "this project's choice").

Step counts and warm-ups given in epochs are ``FieldReference``s of
``config.batch_size``, and so is the ResNet learning rate: ``--config.batch_size=N``
keeps the number of epochs (and lr / example); an explicit
``--config.num_train_steps`` (or ``optimizer.*``) override replaces the derived value.
``config.sam.m`` does not follow the batch size or the hardware: m defines the run.
"""

from typing import Any, NamedTuple

import ml_collections
from ml_collections import FieldReference

from sam_jax.config import defaults

IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_MINIVAL_TRAIN_EXAMPLES = int(IMAGENET_TRAIN_EXAMPLES * 0.99)  # train[:99%]
INCEPTION_PP = dict(crop_area_range=(0.05, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
                    resize_method="bilinear", flip=True, skip_corrupt=False)  # R2.
# google-research/sam's ImageNet pipeline (sam_jax/datasets/dataset_source_imagenet.py): crop
# area (0.08, 1) covering >= 0.1 of the image in 10 draws, else the eval view; TF1 bicubic
# resize; ImageNet mean/std; eval: the central 224/256 of the smaller side, resized (R2, R35).
SAM_CODE_PP = dict(crop_area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
                   min_object_covered=0.1, crop_attempts=10, crop_fallback="central_crop",
                   resize_method="bicubic_tf1", normalize="mean_std", eval_crop="crop_resize",
                   eval_resize=256, flip=True, skip_corrupt=False)
SAM_M = 32  # Examples per SAM perturbation group, whatever the device count (R23).
HEAD_BIAS = {"vit": -10.0, "mixer": -6.9}  # With the sigmoid cross-entropy (R18, R19).

# The Mixer setting (docs/paper.md R21): big_vision configs/mlp_mixer_i1k.py's lr 1e-3, wd 1e-4,
# linear decay to linear_end 1e-5 after 10k warm-up steps, stochastic depth 0.1. big_vision
# steps w -= s(t) (1e-3 * adam(g) + 1e-4 * w), s(t) in [0, 1] its schedule (big_vision optax.py:
# scale(lr), add_decayed_weights(wd), scale_by_schedule), and linear_end is a value of s, so
# the last lr is 1e-3 * 1e-5. optax.adamw steps w -= lr(t) (adam(g) + weight_decay * w) with
# lr(t) = 1e-3 s(t): the same step for weight_decay = 1e-4 / 1e-3 = 0.1.
BIG_VISION_MIXER_LR, BIG_VISION_MIXER_WD, BIG_VISION_MIXER_LINEAR_END = 1e-3, 1e-4, 1e-5
MIXER: dict[str, Any] = dict(
    learning_rate=BIG_VISION_MIXER_LR,
    end_learning_rate=BIG_VISION_MIXER_LR * BIG_VISION_MIXER_LINEAR_END,
    decay="linear", weight_decay=BIG_VISION_MIXER_WD / BIG_VISION_MIXER_LR, stochastic_depth=0.1)


class Transfer(NamedTuple):
  """A fine-tuning target: its classes and its step counts."""
  num_classes: int
  num_train_steps: int
  warmup_steps: int


TRANSFER: dict[str, Transfer] = {
    "cifar10": Transfer(10, 10_000, 500),
    "cifar100": Transfer(100, 10_000, 500),
    "oxford_flowers102": Transfer(102, 500, 100),
    "oxford_iiit_pet": Transfer(37, 500, 100),
}


def _config(*, dataset: str, num_classes: int, image_size: int, batch_size: int,
            model: dict[str, Any], rho: float, loss: str = "softmax_xent"
            ) -> ml_collections.ConfigDict:
  """The keys every paper run shares; the recipe sets the optimizer and the run length."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.init_from = ""  # An official-format .npz to start from; "" trains from scratch.
  config.dataset = dataset
  config.data_dir = ""  # "": the TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR).
  config.num_classes = num_classes  # Checked against the dataset before training.
  config.image_size = image_size
  config.batch_size = batch_size
  config.eval_batch_size = 1024
  config.model = ml_collections.ConfigDict({"dtype": "float32", **model})  # Activations.
  config.loss = loss  # sam_jax.metrics.LOSSES.
  config.sam = defaults.sam(rho, m=SAM_M)  # m, not the device count, defines the run (R23).
  config.nonfinite = "stop"
  config.update(defaults.sections())  # Of analyze and evaluate.
  config.log_every_steps = 100
  config.eval_every_steps = 5000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  return config


def _imagenet(config: ml_collections.ConfigDict, epochs: int) -> FieldReference:
  """Sets the ImageNet data keys on ``config``; returns the step count of ``epochs``."""
  config.train_split = "train[:99%]"
  config.eval_split = "train[99%:]"  # Minival; "validation" for the final numbers.
  config.pp = ml_collections.ConfigDict(dict(INCEPTION_PP, eval_resize=256))
  config.shuffle_buffer = 250_000
  return epochs * IMAGENET_MINIVAL_TRAIN_EXAMPLES // config.get_ref("batch_size")


def imagenet(*, model: str, variant: str, rho: float, epochs: int = 300, batch_size: int = 4096,
             **model_overrides: Any) -> ml_collections.ConfigDict:
  """A ViT or Mixer paper run on TFDS ``imagenet2012`` (needs the manual ImageNet download)."""
  mixer = model == "mixer"
  model_fields = dict(name=model, variant=variant, head_bias_init=HEAD_BIAS[model],
                      **({"stochastic_depth": MIXER["stochastic_depth"]} if mixer else {}),
                      **model_overrides)
  config = _config(dataset="imagenet2012", num_classes=1000, image_size=224,
                   batch_size=batch_size, rho=rho, model=model_fields, loss="sigmoid_xent")
  config.num_train_steps = _imagenet(config, epochs)
  if mixer:
    config.optimizer = defaults.optimizer(
        "adamw", MIXER["learning_rate"], 10_000, MIXER["decay"],
        weight_decay=MIXER["weight_decay"], grad_clip_norm=1.0,
        end_learning_rate=MIXER["end_learning_rate"])
  else:
    config.optimizer = defaults.optimizer("adamw", 3e-3, 10_000, "cosine", weight_decay=0.3,
                                          grad_clip_norm=1.0)
  return config


def resnet_imagenet(*, depth: int, rho: float, epochs: int = 90, batch_size: int = 4096,
                    lr_per_256: float = 0.1, warmup_epochs: int = 5,
                    weight_decay: float = 1e-4) -> ml_collections.ConfigDict:
  """A ResNet-``depth`` paper run on ``imagenet2012``; lr = ``lr_per_256`` * batch / 256."""
  config = _config(dataset="imagenet2012", num_classes=1000, image_size=224,
                   batch_size=batch_size, rho=rho, model=dict(name="resnet", variant=str(depth)))
  config.num_train_steps = _imagenet(config, epochs)
  config.pp = ml_collections.ConfigDict(SAM_CODE_PP)
  batch = config.get_ref("batch_size")
  learning_rate = FieldReference(lr_per_256 / 256, field_type=float) * batch
  warmup_steps = warmup_epochs * IMAGENET_MINIVAL_TRAIN_EXAMPLES // batch
  config.optimizer = defaults.optimizer("sgd", learning_rate, warmup_steps, "cosine",
                                        weight_decay=weight_decay, grad_clip_norm=0.0,
                                        nesterov=True, weight_decay_in_loss=True)
  return config


def finetune(*, dataset: str, model: str = "vit", variant: str = "B/16", rho: float = 0.0,
             batch_size: int = 512, learning_rate: float = 0.03) -> ml_collections.ConfigDict:
  """Fine-tuning ``model``/``variant`` from ``config.init_from`` on a ``TRANSFER`` dataset.

  Raises:
    ValueError: ``dataset`` is not one of ``TRANSFER``.
  """
  if dataset not in TRANSFER:
    raise ValueError(f"finetune: unknown dataset {dataset!r}; valid: {sorted(TRANSFER)}.")
  target = TRANSFER[dataset]
  config = _config(dataset=dataset, num_classes=target.num_classes,
                   image_size=224 if model == "mixer" else 384, batch_size=batch_size, rho=rho,
                   model=dict(name=model, variant=variant))
  config.train_split = None  # The catalog's (sam_jax.data.catalog): train / test.
  config.eval_split = None
  config.pp = ml_collections.ConfigDict(dict(  # Eval: straight to S x S, as vit_jax (R42).
      INCEPTION_PP, eval_resize=config.get_ref("image_size"), eval_crop="resize"))
  config.shuffle_buffer = 50_000
  config.eval_batch_size = 512
  config.num_train_steps = target.num_train_steps
  steps = config.get_ref("num_train_steps")
  config.log_every_steps = 10
  config.eval_every_steps = steps // 10
  config.checkpoint_every_steps = steps // 5
  config.optimizer = defaults.optimizer("sgd", learning_rate, target.warmup_steps, "cosine",
                                        weight_decay=0.0, grad_clip_norm=1.0)
  return config


def cifar10_folder() -> ml_collections.ConfigDict:
  """A small ViT with SAM on the CIFAR-10 image folder (``configs/cifar10_folder.py``: its
  values are this project's choices, docs/paper.md §7)."""
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


TRANSFER_STAGES = ("pretrain", "finetune")
CIFAR10_SOURCE_CLASSES = "airplane,automobile,bird,cat,deer"  # CIFAR-10's labels 0-4.
CIFAR10_TARGET_CLASSES = "dog,frog,horse,ship,truck"          # CIFAR-10's labels 5-9.


def cifar10_transfer(stage: str) -> ml_collections.ConfigDict:
  """The transfer protocol on a class split of the CIFAR-10 folder (docs/paper.md R47).

  ``pretrain``: ``cifar10_folder`` on the first five classes. ``finetune``: from
  ``config.init_from`` (a pretraining workdir; "" trains the control from scratch) on
  100 images of each of the other five, as ``finetune`` does (R40-R44: SGD momentum 0.9,
  cosine, no weight decay, clipping at 1, a fresh head, no SAM) with the step counts of
  the small targets (500 steps, 100 warm-up, R41) and lr 0.01 from the grid (R46).

  Raises:
    ValueError: ``stage`` is not one of ``TRANSFER_STAGES``.
  """
  if stage not in TRANSFER_STAGES:
    raise ValueError(f"cifar10_transfer: unknown stage {stage!r}; valid: {TRANSFER_STAGES}.")
  config = cifar10_folder()
  config.num_classes = 5
  config.classes = CIFAR10_SOURCE_CLASSES
  if stage == "finetune":
    config.classes = CIFAR10_TARGET_CLASSES
    config.train_split = "train[:100/class]"  # 500 images: a few-example target.
    config.reinit_head = True
    config.num_train_steps = 500
    config.optimizer = defaults.optimizer("sgd", 0.01, 100, "cosine", weight_decay=0.0,
                                          grad_clip_norm=1.0)
    config.sam = defaults.sam(rho=0.0)  # R44.
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
  return config


CONTRASTIVE_STAGES = ("pretrain", "probe", "finetune")


def cifar10_contrastive(stage: str = "pretrain") -> ml_collections.ConfigDict:
  """``cifar10_folder``'s ViT pretrained with NT-Xent, or its linear probe or fine-tune.

  Raises:
    ValueError: ``stage`` is not one of ``CONTRASTIVE_STAGES``.
  """
  if stage not in CONTRASTIVE_STAGES:
    raise ValueError(f"cifar10_contrastive: unknown stage {stage!r}; valid: "
                     f"{list(CONTRASTIVE_STAGES)}.")
  config = cifar10_folder()
  if stage == "pretrain":
    config.pp.crop_area_range = (0.08, 1.0)  # SimCLR's crop (C5).
    config.model.projection = (128, 128)  # C4: as wide as the features, then 128.
    config.contrastive.update(dict(method="simclr", temperature=0.5,  # C3: CIFAR-10's.
                                   color_jitter=0.5))  # C5: CIFAR-10's.
  else:
    config.reinit_head = True  # The pretraining run has no classifier (its projection is
                               # dropped when loading).
  if stage == "probe":
    config.trainable = "^head/"  # C6: the classifier only, the backbone in inference mode.
    config.sam.rho = 0.0  # C7: the probe measures the representation.
    learning_rate = FieldReference(0.1 / 256, field_type=float) * config.get_ref("batch_size")
    config.optimizer = defaults.optimizer("sgd", learning_rate, warmup_steps=0, decay="cosine",
                                          weight_decay=0.0, grad_clip_norm=0.0)  # C6.
  elif stage == "finetune":  # C8: cifar10_folder's recipe at half its learning rate.
    warmup = config.get_ref("num_train_steps") // 10
    config.optimizer = defaults.optimizer("adamw", learning_rate=5e-4, warmup_steps=warmup,
                                          decay="cosine", weight_decay=0.1, grad_clip_norm=1.0)
  return config
