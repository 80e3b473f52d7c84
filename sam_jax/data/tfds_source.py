"""A TFDS dataset as per-process streams of encoded records.

A record is ``{"image": encoded bytes, "label": int32}``, plus a multi-hot
``"real_label"`` (bool [num_classes]) where the catalog names a multi-label
feature. Each process reads its own even part of a split
(``tfds.even_splits(split, process_count)[process_index]``).

Training order: epoch e of the stream is the process's records (in the order of
the prepared files, which TFDS already shuffled when it wrote them) passed
through a shuffle buffer seeded by (key, e). A stream starting at position p
begins at epoch p // n and skips p % n records of it before any decoding, so a
resumed run continues exactly where an uninterrupted one would be.
"""

import os

import tensorflow as tf
import tensorflow_datasets as tfds

from sam_jax.data import catalog, epochs


def data_root(data_dir: str | None) -> str:
  """Where TFDS looks: ``data_dir``, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or
                            "~/tensorflow_datasets")


class TfdsSource:
  """Records of one TFDS dataset (any image-classification dataset, by name)."""

  def __init__(self, name: str, data_dir: str | None):
    self.name = name
    self.data_dir = data_dir or None  # "" (a str config placeholder) means the default too.
    self.spec = catalog.spec(name)
    try:
      self.builder = tfds.builder(name, data_dir=self.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise ValueError(f"config.dataset={name!r} is not a TFDS dataset, nor 'folder' or "
                       f"'digits' ({str(e).splitlines()[0]})") from e
    features = self.builder.info.features
    for key in ("image", self.spec.label_key, self.spec.real_label_key):
      if key is not None and key not in features:
        raise ValueError(f"TFDS dataset {name!r} has no feature {key!r} (it has "
                         f"{sorted(features)}); an image classification dataset is needed.")
    self.num_classes = features[self.spec.label_key].num_classes
    self.central_crop = self.spec.central_crop
    self.default_train_split = self.spec.train_split
    self.default_eval_split = self.spec.eval_split

  def _missing(self) -> FileNotFoundError:
    root = data_root(self.data_dir)
    manual = getattr(self.builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if manual:
      how = (f"It cannot be downloaded automatically: put the files it needs into TFDS's "
             f"manual_dir {os.path.join(root, 'downloads', 'manual')} ({' '.join(manual.split())}"
             f"), then run `tfds build {self.name} --data_dir={root}` once.")
    else:
      how = (f"Prepare it once with `tfds build {self.name} --data_dir={root}` (needs internet "
             f"access; or copy a prepared {os.path.join(root, self.builder.name)} here).")
    return FileNotFoundError(
        f"TFDS dataset {self.name!r} is not prepared in the data dir {root} (config.data_dir, "
        f"else $TFDS_DATA_DIR, else ~/tensorflow_datasets). {how}")

  def _record(self, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    record = {"image": example["image"],
              "label": tf.cast(example[self.spec.label_key], tf.int32)}
    if self.spec.real_label_key:
      real = tf.cast(example[self.spec.real_label_key], tf.int32)
      multi_hot = tf.math.bincount(real, minlength=self.num_classes, maxlength=self.num_classes)
      record["real_label"] = tf.ensure_shape(multi_hot > 0, [self.num_classes])
    return record

  def records(self, split) -> tf.data.Dataset:
    """A split (name, slice or ``tfds.even_splits`` part) as records in file order."""
    keys = [k for k in ("image", self.spec.label_key, self.spec.real_label_key) if k]
    decoders = tfds.decode.PartialDecoding({k: True for k in keys},
                                           decoders={"image": tfds.decode.SkipDecoding()})
    try:
      ds = self.builder.as_dataset(split=split, shuffle_files=False, decoders=decoders,
                                   read_config=tfds.ReadConfig(skip_prefetch=True))
    except AssertionError as e:  # TFDS's way of saying that no prepared data was found.
      if self.builder.is_prepared():
        raise
      raise self._missing() from e
    return ds.map(self._record, num_parallel_calls=tf.data.AUTOTUNE)

  def num_examples(self, split) -> int:
    count = int(self.records(split).cardinality())
    if count < 0:
      raise ValueError(f"TFDS dataset {self.name!r} split {split!r}: unknown size.")
    return count

  def train_records(self, split: str, *, process_index: int, process_count: int, seed_key: int,
                    start: int, shuffle_buffer: int) -> tf.data.Dataset:
    """``(position, record)`` from ``start`` on (``epochs.stream_from``; module docstring)."""
    local = tfds.even_splits(split, process_count)[process_index]
    records = self.records(local)
    n = int(records.cardinality())
    if n <= 0:
      raise ValueError(f"TFDS dataset {self.name!r} split {split!r} has no examples for "
                       f"process {process_index} of {process_count}.")

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
      # tf's stubs allow neither None bounds (the full int64 range) nor a tensor seed.
      seed = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed_key, tf.int64), e]),
                                         minval=None,  # pyright: ignore[reportArgumentType]
                                         maxval=None, dtype=tf.int64)
      return records.shuffle(min(shuffle_buffer, n), seed=seed,  # pyright: ignore[reportArgumentType]
                             reshuffle_each_iteration=False)

    return epochs.stream_from(start, n, epoch)

  def eval_records(self, split: str, *, process_index: int,
                   process_count: int) -> tuple[tf.data.Dataset, int]:
    """This process's even part of ``split`` in order, and the size of the whole split."""
    local = tfds.even_splits(split, process_count)[process_index]
    return self.records(local), self.num_examples(split)

  def raise_if_unreadable(self, split: str, positions: range, *, train: bool, process_index: int,
                          process_count: int, seed_key: int) -> None:
    """Nothing to name: records are not files (TFDS checked the images when it wrote them)."""
    del split, positions, train, process_index, process_count, seed_key
