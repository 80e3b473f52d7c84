"""The TFDS datasets the paper trains and evaluates on, and how each is read and scored.

``config.dataset`` may be any TFDS image-classification dataset; the names here
need more than the defaults (a different label feature, a multi-label field, no
central crop, a restricted label space) or fix the paper's splits. ImageNet
training holds out 1% of train as minival (``train[:99%]`` / ``train[99%:]``);
the final numbers use ``validation``.
"""

import dataclasses

from sam_jax.data import imagenet_c


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How batches come from one TFDS dataset, and how predictions on it are scored.

  Attributes:
    train_split: the training split, or None for evaluation-only datasets.
    eval_split: the split evaluated when no other is asked for.
    label_key: the feature that becomes ``batch["label"]``.
    real_label_key: a multi-label feature given as multi-hot ``batch["real_label"]``.
    central_crop: False where images were cropped when the dataset was made (they
      are then only resized to ``config.image_size``).
    metric: "top1" (argmax == label), "real" (``sam_jax.data.imagenet_real``) or
      "imagenet_r" (logits restricted to 200 classes, ``sam_jax.data.imagenet_r``).
  """
  train_split: str | None = "train"
  eval_split: str = "test"
  label_key: str = "label"
  real_label_key: str | None = None
  central_crop: bool = True
  metric: str = "top1"


DATASETS: dict[str, DatasetSpec] = {
    "imagenet2012": DatasetSpec(train_split="train[:99%]", eval_split="train[99%:]"),
    "imagenet2012_real": DatasetSpec(train_split=None, eval_split="validation",
                                     label_key="original_label", real_label_key="real_label",
                                     metric="real"),
    "imagenet_v2": DatasetSpec(train_split=None, eval_split="test"),
    "imagenet_r": DatasetSpec(train_split=None, eval_split="test", metric="imagenet_r"),
    "imagenet2012_corrupted": DatasetSpec(train_split=None, eval_split=imagenet_c.SPLIT,
                                          central_crop=False),
    "cifar10": DatasetSpec(),
    "cifar100": DatasetSpec(),
    "oxford_flowers102": DatasetSpec(),
    "oxford_iiit_pet": DatasetSpec(),
}

# The ImageNet evaluations of the paper: name -> (TFDS dataset, split).
PAPER_EVAL_SETS: dict[str, tuple[str, str]] = {
    "imagenet_minival": ("imagenet2012", "train[99%:]"),
    "imagenet": ("imagenet2012", "validation"),
    "imagenet_real": ("imagenet2012_real", "validation"),
    "imagenet_v2": ("imagenet_v2", "test"),
    "imagenet_r": ("imagenet_r", "test"),
    **{name.replace("imagenet2012_corrupted/", "imagenet_c/"): (name, imagenet_c.SPLIT)
       for name in imagenet_c.dataset_names()},
}


def spec(dataset: str) -> DatasetSpec:
  """The entry of a TFDS name, with or without its config ("imagenet_v2/topimages",
  "imagenet2012_corrupted/fog_3"); other datasets get ``DatasetSpec()``."""
  return DATASETS.get(dataset.split("/")[0], DatasetSpec())
