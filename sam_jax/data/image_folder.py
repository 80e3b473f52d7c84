"""Image folders ``root/<split>/<class>/<image>`` as per-process streams of records.

The classes are the sorted subfolder names of the class split (the training
split; labels 0..C-1 in that order), so every split gets the same labels; a
split with a class folder the class split lacks is an error, never a silent
relabelling. Files are read in sorted order; JPEG, PNG, GIF and BMP are decoded
by content. Hidden files are ignored; other files are skipped with a warning.

A record is ``{"path": file path, "label": int32}``. Each process takes the
contiguous part [i N / P, (i + 1) N / P) of the N sorted files. Training order:
epoch e is the permutation ``index_shuffle(0..n-1, seed=(key, e))`` of the
process's n files, so position p (file p mod n of epoch p div n) is reached
without reading anything before it.

Unreadable images: ``check_readable`` decodes every file of a split once (JPEGs
at 1/8 scale, in parallel: about 8 s for CIFAR-10's 60,000 files on 2 CPU cores),
and training calls it for both splits before the first step. With
``skip_corrupt=False`` an unreadable file is an error naming it (also if one
becomes unreadable later: the pipeline stops naming the file); with
``skip_corrupt=True`` the same pass runs when the split is first listed, and
unreadable files are dropped, counted and logged. A class folder of the class
split without images is an error (that class could never be learned).

A subset of the classes (``config.classes``, comma-separated class folder names, e.g.
``"dog,frog,horse,ship,truck"``): only those folders are read, in every split, labelled
0..C-1 in the order given; a name the class split lacks is an error listing its folders.
The other class folders of a split are then ignored (a class-split transfer experiment:
pretrain on some classes, fine-tune on the others).

A class-balanced subset is the split ``FOLDER[:N/class]`` (e.g. ``train[:500/class]``):
the first N images (in sorted order) of each class of ``FOLDER``; a class with fewer
than N is an error. It works wherever a split is named (training, evaluation,
analysis), so a subset's training accuracy is its evaluation on the same split.
"""

import functools
import os
import re

from absl import logging
import numpy as np
import tensorflow as tf

from sam_jax.data import epochs, preprocessing

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
MAX_LISTED = 20  # unreadable files named in an error
_PER_CLASS = re.compile(r"(?P<folder>[^\[\]]+)\[:(?P<n>[0-9]+)/class\]")


def parse_split(split: str) -> tuple[str, int | None]:
  """``"train[:500/class]"`` -> ``("train", 500)``; a folder name -> ``(name, None)``."""
  if "[" not in split and "]" not in split:
    return split, None
  match = _PER_CLASS.fullmatch(split)
  if not match or int(match["n"]) < 1:
    raise ValueError(f"Image folder split {split!r}: expected a folder name, or FOLDER[:N/class] "
                     "with N >= 1 for the first N images of each class (e.g. "
                     "'train[:500/class]').")
  return match["folder"], int(match["n"])


def _per_class(paths: tuple[str, ...], labels: tuple[int, ...], n: int, split: str,
               classes: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """The first ``n`` of each label's paths (the listing is grouped by label, sorted)."""
  counts = np.bincount(labels, minlength=len(classes))
  short = {classes[c]: int(counts[c]) for c in range(len(classes)) if counts[c] < n}
  if short:
    raise ValueError(f"Image folder split {split!r} asks for {n} images of each class, but "
                     f"class(es) {dict(list(short.items())[:5])} have fewer (images found).")
  sorted_labels = np.asarray(labels)
  rank = np.arange(len(labels)) - np.searchsorted(sorted_labels, sorted_labels)  # within class
  keep = np.flatnonzero(rank < n)
  return tuple(paths[i] for i in keep), tuple(labels[i] for i in keep)


def _subdirs(path: str) -> list[str]:
  return sorted(d.rstrip("/") for d in tf.io.gfile.listdir(path)
                if not d.startswith(".") and tf.io.gfile.isdir(os.path.join(path, d)))


def decode_error(path: str) -> str | None:
  """Why the image at ``path`` cannot be read and decoded, or None if it can."""
  try:
    preprocessing.decode_image(tf.io.read_file(path))
  except (tf.errors.OpError, ValueError) as e:
    return str(e).strip().splitlines()[-1] or type(e).__name__
  return None


def _check(path: tf.Tensor) -> tf.Tensor:
  image_bytes = tf.io.read_file(path)
  return tf.cond(tf.io.is_jpeg(image_bytes),
                 lambda: tf.shape(tf.io.decode_jpeg(image_bytes, channels=3, ratio=8)),
                 lambda: tf.shape(preprocessing.decode_image(image_bytes)))


def unreadable(paths: tuple[str, ...]) -> list[str]:
  """The paths whose images cannot be read or decoded (one parallel pass)."""
  ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), list(paths)))
  ds = ds.map(lambda i, p: (i, _check(p)), num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=False)
  ok = np.zeros(len(paths), bool)
  for indices, _ in ds.ignore_errors().batch(4096).as_numpy_iterator():
    ok[indices] = True
  return [p for p, good in zip(paths, ok) if not good]


def parse_classes(classes: str) -> tuple[str, ...]:
  """``"dog, frog"`` -> ``("dog", "frog")``; ``""`` -> ``()`` (every class folder)."""
  names = tuple(name.strip() for name in classes.split(",")) if classes.strip() else ()
  if any(not name for name in names) or len(set(names)) != len(names):
    raise ValueError(f"config.classes={classes!r} must be distinct, comma-separated class folder "
                     "names (e.g. 'dog,frog'), or '' for every class folder.")
  return names


@functools.cache
def _list_split(root: str, split: str, classes: tuple[str, ...], known: tuple[str, ...],
                classes_split: str, skip_corrupt: bool) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """Sorted image paths of a split and their labels (cached: listed once per process).

  ``classes`` are read, labelled by their order; ``known`` are all the class folders of
  ``classes_split``, the split the classes come from: each of ``classes`` must hold an
  image there.
  """
  split_dir = os.path.join(root, split)
  extra = sorted(set(_subdirs(split_dir)) - set(known))
  if extra:
    raise ValueError(f"Image folder split {split_dir} has class folders {extra[:5]} that the "
                     f"class split does not have (classes: {list(classes)[:10]}...).")
  paths, labels, ignored = [], [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(split_dir, name)
    if not tf.io.gfile.isdir(class_dir):
      continue
    for file in sorted(tf.io.gfile.listdir(class_dir)):
      if file.startswith("."):
        continue
      path = os.path.join(class_dir, file)
      if os.path.splitext(file)[1].lower() in IMAGE_EXTENSIONS:
        paths.append(path)
        labels.append(label)
      elif not tf.io.gfile.isdir(path):
        ignored.append(path)
  if ignored:
    logging.warning("Image folder %s: ignored %d files that are not %s images, e.g. %s.",
                    split_dir, len(ignored), "/".join(IMAGE_EXTENSIONS), ignored[0])
  if not paths:
    raise FileNotFoundError(f"Image folder split {split_dir} has no {IMAGE_EXTENSIONS} images "
                            "in its class folders (expected root/<split>/<class>/<image>).")
  present = set(labels)
  empty = [os.path.join(split_dir, name) for label, name in enumerate(classes)
           if label not in present]
  if empty and split != classes_split:
    logging.warning("Image folder split %s has no images of %d of the %d classes (e.g. %s): "
                    "its accuracy covers the other classes only.", split_dir, len(empty),
                    len(classes), empty[:3])
  elif empty:
    raise ValueError(f"Image folder class folder(s) {empty[:5]} have no images: a class "
                     "without training images can never be learned. Add images or remove "
                     "the folders.")
  if skip_corrupt:
    bad = set(unreadable(tuple(paths)))
    if bad:
      logging.warning("Image folder %s: skipping %d unreadable images (config.pp.skip_corrupt): "
                      "%s", split_dir, len(bad), sorted(bad)[:20])
      labels = [label for path, label in zip(paths, labels) if path not in bad]
      paths = [path for path in paths if path not in bad]
  return tuple(paths), tuple(labels)


class ImageFolder:
  """Records of ``root/<split>/<class>/<image>``; classes from ``root/<class_split>``."""

  central_crop = True
  default_train_split = "train"
  default_eval_split = "test"

  def __init__(self, root: str | None, *, class_split: str, skip_corrupt: bool = False,
               classes: tuple[str, ...] = ()):
    if not root:
      raise ValueError("config.dataset='folder' needs config.data_dir: the root of an image "
                       "folder laid out as root/<split>/<class>/<image>.")
    if not tf.io.gfile.isdir(root):
      raise FileNotFoundError(f"Image folder root {root} (config.data_dir) does not exist; "
                              "expected root/<split>/<class>/<image> files.")
    self.root = root
    self.class_split = class_split
    self.skip_corrupt = skip_corrupt
    self.known_classes = tuple(_subdirs(self._split_dir(class_split)))
    if not self.known_classes:
      raise FileNotFoundError(f"Image folder split {self._split_dir(class_split)} has no class "
                              "folders (expected root/<split>/<class>/<image>).")
    unknown = [name for name in classes if name not in self.known_classes]
    if unknown:
      raise ValueError(f"config.classes names {unknown}, which are not class folders of "
                       f"{self._split_dir(class_split)}; valid: {list(self.known_classes)}.")
    self.classes = tuple(classes) or self.known_classes
    self.num_classes = len(self.classes)

  def _split_dir(self, split: str) -> str:
    path = os.path.join(self.root, parse_split(split)[0])
    if not tf.io.gfile.isdir(path):
      raise FileNotFoundError(f"Image folder {self.root} has no split {split!r} (folders: "
                              f"{_subdirs(self.root)}); expected root/<split>/<class>/<image>.")
    return path

  def files(self, split: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """All image paths of ``split`` and their labels, sorted by class and name."""
    self._split_dir(split)
    folder, per_class = parse_split(split)
    listed = _list_split(self.root, folder, self.classes, self.known_classes,
                         parse_split(self.class_split)[0], self.skip_corrupt)
    return listed if per_class is None else _per_class(*listed, per_class, split, self.classes)

  def check_readable(self, split: str) -> None:
    """Raises ValueError naming the files of ``split`` that cannot be decoded (one parallel
    pass; nothing to do with ``skip_corrupt``, whose listing already dropped them)."""
    paths, _ = self.files(split)
    if self.skip_corrupt:
      return
    bad = unreadable(paths)
    if bad:
      raise ValueError(f"Cannot read image file(s) {bad[:MAX_LISTED]}"
                       f"{f' and {len(bad) - MAX_LISTED} more' if len(bad) > MAX_LISTED else ''} "
                       f"in split {split!r} of {self.root}. Remove or replace them, or set "
                       "config.pp.skip_corrupt=True to skip unreadable images (they are then "
                       "counted and logged).")

  def num_examples(self, split: str) -> int:
    return len(self.files(split)[0])

  def _local(self, split: str, process_index: int, process_count: int):
    paths, labels = self.files(split)
    n = len(paths)
    lo, hi = process_index * n // process_count, (process_index + 1) * n // process_count
    if lo == hi:
      raise ValueError(f"Image folder split {split!r} has {n} images, fewer than the "
                       f"{process_count} processes.")
    return paths[lo:hi], labels[lo:hi]

  @staticmethod
  def _epoch_order(epoch: tf.Tensor | int, n: int, seed_key: int) -> tf.Tensor:
    """The epoch's permutation of 0..n-1 (int64 [n])."""
    seed = tf.stack([tf.constant(seed_key, tf.int64), tf.cast(epoch, tf.int64)])
    # tf's stubs lack tf.random.experimental.
    shuffle = tf.random.experimental.index_shuffle  # pyright: ignore[reportAttributeAccessIssue]
    return shuffle(tf.range(n, dtype=tf.int64), seed=seed, max_index=n - 1)

  def train_records(self, split: str, *, process_index: int, process_count: int, seed_key: int,
                    start: int, shuffle_buffer: int) -> tf.data.Dataset:
    """``(position, record)`` from ``start`` on (``epochs.stream_from``); ``shuffle_buffer``
    is unused: every epoch is a full permutation."""
    del shuffle_buffer
    paths, labels = self._local(split, process_index, process_count)
    n = len(paths)
    paths_t, labels_t = tf.constant(paths), tf.constant(labels, tf.int32)

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
      order = self._epoch_order(e, n, seed_key)
      records = {"path": tf.gather(paths_t, order), "label": tf.gather(labels_t, order)}
      # tf's stubs take one tensor in from_tensor_slices, not a dict of them.
      return tf.data.Dataset.from_tensor_slices(records)  # pyright: ignore[reportArgumentType]

    return epochs.stream_from(start, n, epoch)

  def eval_records(self, split: str, *, process_index: int,
                   process_count: int) -> tuple[tf.data.Dataset, int]:
    """This process's part of ``split`` in order, and the size of the whole split."""
    paths, labels = self._local(split, process_index, process_count)
    records = {"path": list(paths), "label": np.asarray(labels, np.int32)}
    # tf's stubs take one tensor in from_tensor_slices, not a dict of them.
    dataset = tf.data.Dataset.from_tensor_slices(records)  # pyright: ignore[reportArgumentType]
    return dataset, self.num_examples(split)

  def raise_if_unreadable(self, split: str, positions: range, *, train: bool, process_index: int,
                          process_count: int, seed_key: int) -> None:
    """Raises ValueError naming the unreadable images among stream ``positions``, if any."""
    paths, _ = self._local(split, process_index, process_count)
    n = len(paths)
    if train:
      orders = {e: self._epoch_order(e, n, seed_key).numpy() for e in {p // n for p in positions}}
      indices = [int(orders[p // n][p % n]) for p in positions]
    else:
      indices = [i for i in positions if i < n]
    bad = {paths[i]: decode_error(paths[i]) for i in indices}
    bad = {p: why for p, why in bad.items() if why}
    if bad:
      listing = "; ".join(f"{p}: {why}" for p, why in sorted(bad.items()))
      raise ValueError(f"Cannot read image file(s) {listing}. Remove or replace them, or set "
                       "config.pp.skip_corrupt=True to skip unreadable images (they are then "
                       "counted and logged).")
