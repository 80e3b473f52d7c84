"""The offline default dataset: scikit-learn's bundled handwritten digits.

1,797 real 8x8 grey images of the digits 0-9 (no download). A fixed random split
gives 1,437 training and 360 test images. Pixels (0..16) are mapped to [-1, 1],
upsampled by pixel replication to ``config.image_size`` and repeated to 3
channels, so every model sees NHWC float32 images as from the TFDS pipeline.

Batches are a pure function of (seed, step): step s of epoch e takes a slice of
the permutation drawn from (seed, e). Each process takes its own contiguous part
of each global batch, so the global batch is the same for any number of
processes, and a run resumed at ``start_step`` continues exactly. The only
augmentation is an optional random translation by up to ``config.pp.max_shift``
pixels (of the 8x8 grid); ``config.augment`` (RandAugment, mixup) is refused. The config
is data-complete (``config.defaults.complete_data``); a split None is "train" for
training, "test" for evaluation.
"""

import functools
from typing import Iterator

import jax
import ml_collections
import numpy as np

from sam_jax.config import validation
from sam_jax.data.dataset_info import DatasetInfo

NUM_CLASSES = 10
NUM_TRAIN = 1437
SPLITS = ("train", "test")
DEFAULT_SPLITS = {"train": "train", "eval": "test"}
_SPLIT_SEED = 0


@functools.cache
def _load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
  if split not in SPLITS:
    raise ValueError(f"digits: split {split!r} is not one of {SPLITS}.")
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  data = load_digits()
  order = np.random.RandomState(_SPLIT_SEED).permutation(len(data.target))
  order = order[:NUM_TRAIN] if split == "train" else order[NUM_TRAIN:]
  images = data.images[order].astype(np.float32) / 8.0 - 1.0
  return images, data.target[order].astype(np.int32)


def _random_shift(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
  """Translates each image by up to ``max_shift`` pixels per axis, filling with background."""
  n, h, w = images.shape
  padded = np.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2), constant_values=-1.0)
  dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
  rows = dy[:, None] + np.arange(h)[None]
  cols = dx[:, None] + np.arange(w)[None]
  return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _to_model_input(images: np.ndarray, image_size: int) -> np.ndarray:
  """[N, 8, 8] in [-1, 1] -> [N, S, S, 3] by pixel replication."""
  if image_size % 8:
    raise ValueError(f"digits: config.image_size={image_size} must be a multiple of 8.")
  k = image_size // 8
  images = images.repeat(k, axis=1).repeat(k, axis=2)
  return np.repeat(images[..., None], 3, axis=-1)


def get_info(config: ml_collections.ConfigDict) -> DatasetInfo:
  return DatasetInfo(num_classes=NUM_CLASSES,
                     eval_num_examples=len(_load_split(_split(config.eval_split, "eval"))[1]))


def class_names(config: ml_collections.ConfigDict, dataset: str) -> list[str]:
  del config, dataset
  return [str(i) for i in range(NUM_CLASSES)]


def _split(split: str | None, role: str) -> str:
  return split or DEFAULT_SPLITS[role]


def check_readable(config: ml_collections.ConfigDict) -> None:
  """Nothing to check: ``get_info`` has loaded both splits from scikit-learn's bundle."""
  del config


def _process_slice(local_batch_size: int) -> slice:
  start = jax.process_index() * local_batch_size
  return slice(start, start + local_batch_size)


def train_iterator(config: ml_collections.ConfigDict, *, local_batch_size: int, seed: int,
                   start_step: int = 0, **processes: int) -> Iterator[dict[str, np.ndarray]]:
  """Infinite shuffled training batches, starting at ``start_step``.

  Raises:
    ValueError: ``config.augment`` asks for RandAugment or mixup (tf.data readers only).
  """
  _check_processes(processes)
  validation.check_augment(config)
  images, labels = _load_split(_split(config.train_split, "train"))
  global_batch = local_batch_size * jax.process_count()
  steps_per_epoch = len(labels) // global_batch
  if steps_per_epoch == 0:
    raise ValueError(f"digits: global batch {global_batch} exceeds the {len(labels)} "
                     "training examples.")
  return _train_batches(config, images, labels, local_batch_size, seed, start_step,
                        steps_per_epoch)


def _train_batches(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray,
                   local_batch_size: int, seed: int, start_step: int,
                   steps_per_epoch: int) -> Iterator[dict[str, np.ndarray]]:
  global_batch = local_batch_size * jax.process_count()
  local = _process_slice(local_batch_size)
  max_shift = config.pp.get("max_shift", 0)
  step = start_step
  while True:
    epoch, index = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(len(labels))
    idx = perm[index * global_batch:(index + 1) * global_batch][local]
    batch_images = images[idx]
    if max_shift:
      shift_rng = np.random.default_rng([seed, epoch, index, jax.process_index()])
      batch_images = _random_shift(batch_images, shift_rng, max_shift)
    yield {"image": _to_model_input(batch_images, config.image_size), "label": labels[idx]}
    step += 1


def eval_iterator(config: ml_collections.ConfigDict, *, local_batch_size: int,
                  split: str | None = None, dataset: str = "digits",
                  **processes: int) -> Iterator[dict[str, np.ndarray]]:
  """One pass over the split; the last batch is padded, with ``mask`` 0 on padding."""
  del dataset
  _check_processes(processes)
  images, labels = _load_split(_split(split or config.eval_split, "eval"))
  global_batch = local_batch_size * jax.process_count()
  local = _process_slice(local_batch_size)
  for start in range(0, len(labels), global_batch):
    idx = np.arange(start, start + global_batch)[local]
    mask = (idx < len(labels)).astype(np.float32)
    idx = np.minimum(idx, len(labels) - 1)
    yield {"image": _to_model_input(images[idx], config.image_size), "label": labels[idx],
           "mask": mask}


def _check_processes(processes: dict[str, int]) -> None:
  if any(v is not None for v in processes.values()):
    raise ValueError("The digits read the process index and count from JAX.")
