"""The tf.data pipeline of TFDS datasets and image folders (``input_pipeline`` dispatches here).

``config.dataset`` is "folder" (an image folder ``config.data_dir/<split>/<class>/<image>``)
or a TFDS name (``config.data_dir`` is then the TFDS data dir); ``sam_jax.data.catalog``
lists the datasets of the paper. Each process reads its own even part of a split. The
config is data-complete (``config.defaults.complete_data``).

Training batches (infinite): Inception crop + flip (``sam_jax.data.preprocessing``),
``{"image": float32 [B, S, S, 3] in [-1, 1], "label": int32 [B]}``. The stream is
a pure function of (seed, process index, position): example j of step s sits at
position s B + j, which fixes both its place in the per-epoch shuffle and its
crop/flip seed, so ``start_step`` resumes exactly. With ``config.contrastive.method`` set,
each example holds two views instead, ``"image"`` and ``"image2"`` (``data.views``), whose
seeds are split from the example's seed.

Strong augmentation (``config.augment``, off by default; big_vision's order
``inception_crop|flip_lr|randaug|value_range``, then mixup): RandAugment
(``sam_jax.data.randaugment``) on each example's [0, 255] pixels after the flip, from
the seed ``[randaugment key, position]``; mixup (``sam_jax.data.mixup``) on each batch
of this process, its weight from ``[mixup key, step]``. With mixup the labels are float32
probability vectors [B, num_classes]. The keys are this process's (``stream_keys``); the
crop/flip draws do not change, so without augmentation the batches are those of before.

Evaluation batches (one pass): resize + central crop, the same keys plus ``"mask"``
(float32, 0 on padding) and, for ImageNet-ReaL, ``"real_label"`` (bool [B, 1000]).
Every process yields ceil(ceil(N / P) / B) batches, padding its part, so each of
the N examples is counted exactly once over all processes.
"""

import math
from typing import Callable, Iterator, NamedTuple, cast

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from sam_jax.config import validation
from sam_jax.data import image_folder, mixup, preprocessing, randaugment, tfds_source, views
from sam_jax.data.dataset_info import DatasetInfo

Batch = dict[str, np.ndarray]
Source = tfds_source.TfdsSource | image_folder.ImageFolder


def _source(config: ml_collections.ConfigDict, dataset: str | None = None) -> Source:
  name = dataset or config.dataset
  if name == "folder":
    return image_folder.ImageFolder(
        config.data_dir, class_split=config.train_split or "train",
        skip_corrupt=preprocessing.PreprocessOptions.from_config(config).skip_corrupt,
        classes=image_folder.parse_classes(config.classes))
  return tfds_source.TfdsSource(name, config.data_dir)


def _train_split(config: ml_collections.ConfigDict, source: Source) -> str | None:
  return config.train_split or source.default_train_split


def _processes(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f"process_index={index} must be in [0, process_count={count}).")
  return index, count


class StreamKeys(NamedTuple):
  """Independent non-negative int64 keys of one process's training stream."""
  order: int        # The per-epoch shuffle.
  crop: int         # Crop and flip: seed [crop, position].
  randaugment: int  # Seed [randaugment, position].
  mixup: int        # Seed [mixup, step].


def stream_keys(seed: int, process_index: int) -> StreamKeys:
  """The words of numpy's ``SeedSequence([seed, process_index])``; a word does not depend on
  how many are asked, so ``order`` and ``crop`` are those of the two-key streams before."""
  state = np.random.SeedSequence([seed, process_index]).generate_state(4, np.uint64)
  return StreamKeys(*(int(word >> 1) for word in state))


def _image_bytes(record: dict[str, tf.Tensor]) -> tf.Tensor:
  return tf.io.read_file(record["path"]) if "path" in record else record["image"]


def _finish(ds: tf.data.Dataset, batch_size: int,
            batch_map: Callable[[tf.Tensor, dict], dict] | None = None,
            first_batch: int = 0) -> tf.data.Dataset:
  """Batches; ``batch_map(k, batch)``, if given, maps batch k (counted from ``first_batch``)."""
  # A sequential batch: parallel batching cost about 20% more CPU per image here.
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.batch(batch_size, drop_remainder=True)
  if batch_map is not None:
    ds = ds.enumerate(start=first_batch).map(batch_map, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def _numpy_batches(ds: tf.data.Dataset, check: Callable[[int], None]) -> Iterator[Batch]:
  """Batches of ``ds``; if batch k fails, ``check(k)`` may raise a clearer error."""
  batches = cast(Iterator[Batch], ds.as_numpy_iterator())  # tf's stubs say arrays, not dicts.
  k = 0
  while True:
    try:
      batch = next(batches)
    except StopIteration:
      return
    except tf.errors.OpError:
      check(k)  # Raises a ValueError naming unreadable image files, if it finds any.
      raise
    yield batch
    k += 1


def get_info(config: ml_collections.ConfigDict) -> DatasetInfo:
  """Class count and eval-split size; reads both splits' sizes, so missing data fails here."""
  preprocessing.PreprocessOptions.from_config(config)
  source = _source(config)
  train_split = _train_split(config, source)
  if train_split:
    source.num_examples(train_split)
  return DatasetInfo(num_classes=source.num_classes, eval_num_examples=source.num_examples(
      config.eval_split or source.default_eval_split))


def check_readable(config: ml_collections.ConfigDict) -> None:
  """Image folders: raises ValueError naming the files of the training or eval split that
  cannot be decoded (``ImageFolder.check_readable``). TFDS data is read as prepared."""
  source = _source(config)
  if isinstance(source, image_folder.ImageFolder):
    for split in dict.fromkeys([config.train_split or source.default_train_split,
                                config.eval_split or source.default_eval_split]):
      source.check_readable(split)


def class_names(config: ml_collections.ConfigDict, dataset: str) -> list[str]:
  """An image folder's class folders; TFDS: the label feature's names (needs no prepared data)."""
  source = _source(config, dataset)
  if isinstance(source, image_folder.ImageFolder):
    return list(source.classes)
  return list(source.builder.info.features[source.spec.label_key].names)


def train_iterator(config: ml_collections.ConfigDict, *, local_batch_size: int, seed: int,
                   start_step: int = 0, process_index: int | None = None,
                   process_count: int | None = None) -> Iterator[Batch]:
  """Infinite training batches of this process, from step ``start_step`` on.

  ``process_index``/``process_count`` default to JAX's (tests set them to simulate
  several hosts).
  """
  process_index, process_count = _processes(process_index, process_count)
  options = preprocessing.PreprocessOptions.from_config(config)
  source = _source(config)
  split = _train_split(config, source)
  if split is None:
    raise ValueError(f"{config.dataset!r} is an evaluation-only dataset; set config.train_split.")
  validation.check_augment(config)
  keys = stream_keys(seed, process_index)
  start = start_step * local_batch_size
  process = dict(process_index=process_index, process_count=process_count)
  records = source.train_records(split, **process, seed_key=keys.order, start=start,
                                 shuffle_buffer=config.shuffle_buffer)
  augment = config.augment
  randaug = (randaugment.RandAugment(augment.randaugment_layers,
                                     float(augment.randaugment_magnitude), config.image_size)
             if augment.randaugment_layers else None)

  def preprocess(position: tf.Tensor, record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    seed = lambda key: tf.stack([tf.constant(key, tf.int64), position])
    pixels = preprocessing.inception_crop_pixels(_image_bytes(record), seed(keys.crop), options)
    if randaug is not None:
      pixels = randaug(pixels, seed(keys.randaugment))
    return {"image": preprocessing.normalize(pixels, options), "label": record["label"]}

  alpha = float(augment.mixup_alpha)
  num_classes = source.num_classes if alpha > 0 else None

  def mix(step: tf.Tensor, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    assert num_classes is not None  # Only with mixup (alpha > 0).
    a = mixup.weight(tf.stack([tf.constant(keys.mixup, tf.int64), step]), alpha)
    return mixup.mix(batch, a, num_classes)

  view_options = views.ViewOptions.from_config(config)
  if view_options is not None:  # Contrastive pretraining: two views of each example.
    preprocess = _two_views(keys.crop, options, view_options)
  ds = _finish(records.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE), local_batch_size,
               batch_map=mix if alpha > 0 else None, first_batch=start_step)

  def check(k: int) -> None:
    first = start + k * local_batch_size
    source.raise_if_unreadable(split, range(first, first + local_batch_size), train=True,
                               **process, seed_key=keys.order)

  return _numpy_batches(ds, check)


def _two_views(crop_key: int, options: preprocessing.PreprocessOptions,
               view_options: views.ViewOptions) -> Callable[..., dict[str, tf.Tensor]]:
  """The training map of contrastive pretraining: (position, record) -> two views, label."""

  def preprocess(position: tf.Tensor, record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    seed = tf.stack([tf.constant(crop_key, tf.int64), position])
    return {**views.decode_two_views(_image_bytes(record), seed, options, view_options),
            "label": record["label"]}

  return preprocess


def eval_iterator(config: ml_collections.ConfigDict, *, local_batch_size: int, dataset: str,
                  split: str | None = None, process_index: int | None = None,
                  process_count: int | None = None) -> Iterator[Batch]:
  """One pass over ``split`` of ``dataset`` (None: config.eval_split, or a catalog split).

  Another ``dataset`` than the config's (e.g. "imagenet_r", see ``sam_jax.data.catalog``)
  defaults to its catalog split and shares ``config.data_dir``.
  """
  name = dataset
  process_index, process_count = _processes(process_index, process_count)
  options = preprocessing.PreprocessOptions.from_config(config)
  source = _source(config, name)
  if split is None and name == config.dataset:
    split = config.eval_split
  split = split or source.default_eval_split
  records, total = source.eval_records(split, process_index=process_index,
                                       process_count=process_count)
  per_process = math.ceil(total / process_count)
  if int(records.cardinality()) > per_process:
    raise ValueError(f"{name!r} split {split!r}: process {process_index} holds "
                     f"{int(records.cardinality())} of {total} examples, more than an even "
                     f"part ({per_process}).")
  num_batches = math.ceil(per_process / local_batch_size)

  def preprocess(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    image = preprocessing.decode_and_central_crop(_image_bytes(record), options,
                                                  central_crop=source.central_crop)
    example = {"image": image, "label": record["label"], "mask": tf.constant(1.0, tf.float32)}
    if "real_label" in record:
      example["real_label"] = record["real_label"]
    return example

  examples = records.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  padding = tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), examples.element_spec)
  examples = examples.concatenate(tf.data.Dataset.from_tensors(padding).repeat())
  ds = _finish(examples.take(num_batches * local_batch_size), local_batch_size)

  def check(k: int) -> None:
    first = k * local_batch_size
    source.raise_if_unreadable(split, range(first, first + local_batch_size), train=False,
                               process_index=process_index, process_count=process_count,
                               seed_key=0)

  return _numpy_batches(ds, check)
