"""Training and evaluation batches, as host-local numpy arrays: the one place that picks a reader.

``config.dataset`` (or the ``dataset`` asked for) is read by ``sam_jax.data.digits``
for ``"digits"`` (scikit-learn's digits, no TensorFlow) and by
``sam_jax.data.tf_pipeline`` (tf.data) for ``"folder"`` (an image folder
``config.data_dir/<split>/<class>/<image>``) and TFDS names. Both readers take a
data-complete config (``config.defaults.complete_data``, applied here) and give:

- training batches (infinite, resumable at ``start_step``):
  ``{"image": float32 [B, S, S, 3] in [-1, 1], "label": int32 [B]}``; with mixup
  (``config.augment.mixup_alpha`` > 0, tf.data only) ``"label"`` is float32 [B, K],
  probability vectors over the K classes; for contrastive pretraining
  (``config.contrastive``, tf.data only: ``data.views``) a second view ``"image2"``;
- evaluation batches (one pass): the same keys plus ``"mask"`` (float32, 0 on padding)
  and, for ImageNet-ReaL, ``"real_label"`` (bool [B, 1000]). Every example of the split
  is counted exactly once over all processes.
"""

import types
from typing import Any, Iterator

import ml_collections
import numpy as np

from sam_jax.config import defaults
from sam_jax.data.dataset_info import DatasetInfo

Batch = dict[str, np.ndarray]


def reader(dataset: str) -> types.ModuleType:
  """The module that reads ``dataset``; TensorFlow is imported only for the tf.data one."""
  # pylint: disable=g-import-not-at-top
  if dataset == "digits":
    from sam_jax.data import digits
    return digits
  from sam_jax.data import tf_pipeline
  return tf_pipeline


def get_info(config: ml_collections.ConfigDict) -> DatasetInfo:
  """Class count and eval size; fails fast, naming the data, if it is missing or invalid.

  Raises:
    ValueError: ``config.num_classes`` is set and differs from the dataset's.
  """
  config = defaults.complete_data(config)
  if config.classes and config.dataset != "folder":
    raise ValueError(f"config.classes={config.classes!r} selects class folders of an image "
                     f"folder (config.dataset='folder'); {config.dataset!r} is not one. Set "
                     "config.classes=''.")
  info = reader(config.dataset).get_info(config)
  if config.num_classes not in (None, info.num_classes):
    raise ValueError(f"config.num_classes={config.num_classes} but {config.dataset!r} has "
                     f"{info.num_classes} classes.")
  return info


def num_classes(config: ml_collections.ConfigDict) -> int:
  """``config.num_classes``, else the dataset's (which then has to be readable)."""
  return defaults.complete_data(config).num_classes or get_info(config).num_classes


def check_readable(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the unreadable files among those the run will read (image
  folders: every file of the training and eval splits decoded once)."""
  reader(config.dataset).check_readable(defaults.complete_data(config))


def class_names(config: ml_collections.ConfigDict, dataset: str | None = None) -> list[str]:
  """The names of labels 0..C-1 of ``dataset`` (default ``config.dataset``).

  Digits: "0".."9"; an image folder: its class folders; TFDS: the label feature's names
  (for ImageNet the WordNet ids, e.g. "n01440764"). Needs no prepared data for TFDS.
  """
  name = dataset or config.dataset
  return reader(name).class_names(defaults.complete_data(config), name)


def train_iterator(config: ml_collections.ConfigDict, *, local_batch_size: int, seed: int,
                   **kwargs: Any) -> Iterator[Batch]:
  """Infinite training batches of this process (``start_step``, ``process_index``/``_count``)."""
  return reader(config.dataset).train_iterator(
      defaults.complete_data(config), local_batch_size=local_batch_size, seed=seed, **kwargs)


def eval_iterator(config: ml_collections.ConfigDict, *, local_batch_size: int,
                  split: str | None = None, dataset: str | None = None,
                  **kwargs: Any) -> Iterator[Batch]:
  """One pass over ``split`` of ``dataset`` (default: config.eval_split of config.dataset)."""
  name = dataset or config.dataset
  return reader(name).eval_iterator(defaults.complete_data(config),
                                    local_batch_size=local_batch_size, split=split,
                                    dataset=name, **kwargs)
