r"""CIFAR-10 written as the image folder that ``configs/cifar10_folder.py`` and the study read.

  python -m sam_jax.data.make_cifar10_folder --out=/tmp/cifar10            # from TFDS cifar10
  python -m sam_jax.data.make_cifar10_folder --out=/tmp/cifar10 --source=cifar-10-python.tar.gz

writes ``OUT/train/<class>/NNNN.jpg`` (5,000 per class) and ``OUT/test/<class>/NNNN.jpg``
(1,000 per class). The class folders are CIFAR-10's label names, whose alphabetical order
is the label order (airplane = 0 ... truck = 9), so ``image_folder`` labels them as
CIFAR-10 does. ``NNNN`` numbers each class's images in the official order
(``data_batch_1`` ... ``data_batch_5``, then ``test_batch``; TFDS's ``id`` feature,
``train_00042``, is the same index), so ``train[:200/class]`` is the first 200 of each
class in that order.

Sources: TFDS ``cifar10`` (``--source=tfds``, the default; TFDS downloads it into
``--data_dir`` when it is not there), or the official python archive
``cifar-10-python.tar.gz`` of https://www.cs.toronto.edu/~kriz/cifar.html, read as it is
(``--source=PATH``; its pickles are read with an unpickler that builds numpy arrays only).

Encoding: baseline JPEG at quality ``QUALITY`` (75) with 4:2:0 chroma subsampling and
libjpeg's standard Huffman tables, which is Pillow's ``save(format="JPEG", quality=75)``.
That is the encoding of the study's files (``cifar10_jpeg.tar.gz``, sha256
``STUDY_ARCHIVE_SHA256``): all 60,000 carry libjpeg's standard quantisation tables scaled to
quality 75, 2x2 luma sampling, and headers that Pillow writes byte for byte
(docs/reproduction.md, "Data"). ``folder_digest`` fingerprints a folder's files; the study's
is ``STUDY_DIGEST``, and ``--compare=DIR`` measures how far the written images are from
another folder's (e.g. the study's extracted archive).
"""

import hashlib
import io
import os
import pickle
import sys
import tarfile
from typing import Iterator

from absl import app, flags
from etils import epath
import numpy as np
from PIL import Image

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
QUALITY = 75
SUBSAMPLING = "4:2:0"
STUDY_ARCHIVE_SHA256 = "70260124a4d2364bd32a0a222ddcd4197d2afa56725518368da092f67d4c29fe"
STUDY_DIGEST = "9419ce0480866c3ae20df07945813dff2b619c2ade0af4d77c7ab957ad6e5904"
Split = tuple[str, np.ndarray, np.ndarray]  # name, uint8 images [N, 32, 32, 3], labels [N]


class _ArrayUnpickler(pickle.Unpickler):
  """Builds the archive's dicts of numpy arrays and nothing else (no arbitrary code)."""
  _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
              ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
              ("_codecs", "encode")}  # Python 3 pickles of bytes

  def find_class(self, module: str, name: str):
    if (module, name) not in self._ALLOWED:
      raise ValueError(f"the archive's pickle asks for {module}.{name}; a CIFAR-10 python "
                       "archive holds numpy arrays only.")
    return super().find_class(module, name)


def _check_classes(names: list[str], source: str) -> None:
  if tuple(names) != CLASSES:
    raise ValueError(f"{source} names the classes {names}; CIFAR-10's are {list(CLASSES)}.")


def read_archive(path: str | os.PathLike) -> Iterator[Split]:
  """The splits of the official python archive (``cifar-10-batches-py/*`` pickles)."""
  with epath.Path(path).open("rb") as f, tarfile.open(fileobj=f, mode="r:*") as tar:
    members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
    def load(name: str) -> dict:
      if name not in members:
        raise ValueError(f"{path} is not the CIFAR-10 python archive: it lacks {name} (expected "
                         "cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta).")
      member = tar.extractfile(members[name])
      assert member is not None  # Members are regular files.
      return _ArrayUnpickler(member, encoding="bytes").load()
    _check_classes([n.decode() for n in load("batches.meta")[b"label_names"]], str(path))
    for split, names in SPLITS.items():
      batches = [load(name) for name in names]
      images = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
      labels = np.concatenate([np.asarray(b[b"labels"]) for b in batches])
      yield split, images.transpose(0, 2, 3, 1).astype(np.uint8), labels


def read_tfds(data_dir: str | None = None) -> Iterator[Split]:
  """The splits of TFDS ``cifar10``, in the official order (sorted by ``id``); its labels are
  CIFAR-10's indices, read from the official binary files."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  for split in SPLITS:
    batches = list(tfds.as_numpy(tfds.load("cifar10", split=split, data_dir=data_dir,
                                           batch_size=1024)))
    ids, images, labels = (np.concatenate([b[key] for b in batches])
                           for key in ("id", "image", "label"))
    order = np.argsort(ids, kind="stable")
    yield split, images[order], labels[order]


def encode(image: np.ndarray) -> bytes:
  """A uint8 RGB image as the study's JPEG files are encoded."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=QUALITY, subsampling=SUBSAMPLING)
  return buffer.getvalue()


def write_split(out: epath.Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
  """``out/split/<class>/NNNN.jpg``, written under ``split.partial`` and then renamed."""
  partial = out / f"{split}.partial"
  if partial.exists():
    partial.rmtree()
  counts = [0] * len(CLASSES)
  for name in CLASSES:
    (partial / name).mkdir(parents=True)
  for image, label in zip(images, labels):
    (partial / CLASSES[label] / f"{counts[label]:04d}.jpg").write_bytes(encode(image))
    counts[label] += 1
  partial.rename(out / split)


def _files(root: epath.Path) -> list[str]:
  """``SPLIT/CLASS/FILE.jpg`` of train/, then test/, each sorted."""
  return [name for split in SPLITS
          for name in sorted(str(p.relative_to(root)) for p in (root / split).glob("*/*.jpg"))]


def folder_digest(root: str | os.PathLike) -> str:
  """sha256 of the lines ``SPLIT/CLASS/FILE NUL sha256(file)`` of train/ and test/, sorted."""
  base, digest = epath.Path(root), hashlib.sha256()
  for name in _files(base):
    digest.update(f"{name}\0{hashlib.sha256((base / name).read_bytes()).hexdigest()}\n".encode())
  return digest.hexdigest()


def compare(root: str | os.PathLike, other: str | os.PathLike) -> dict[str, float]:
  """How far ``root``'s decoded images are from ``other``'s of the same names (0-255 units)."""
  root_dir, other_dir = epath.Path(root), epath.Path(other)
  names = _files(root_dir)
  missing = [n for n in names if not (other_dir / n).exists()]
  if missing:
    raise ValueError(f"{other_dir} lacks {len(missing)} of the {len(names)} files of {root_dir} "
                     f"(e.g. {missing[0]}).")
  identical, total, largest = 0, 0.0, 0
  for name in names:
    a, b = (root_dir / name).read_bytes(), (other_dir / name).read_bytes()
    identical += a == b
    diff = np.abs(_decode(a) - _decode(b))
    total, largest = total + diff.mean(), max(largest, int(diff.max()))
  return {"files": len(names), "identical_files": identical,
          "mean_abs_diff": float(total / max(len(names), 1)), "max_abs_diff": largest}


def _decode(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int16)


def make_folder(out: str | os.PathLike, source: str = "tfds", data_dir: str | None = None) -> str:
  """Writes the folder (see the module docstring) from ``source``; returns its digest."""
  folder = epath.Path(out)
  existing = [split for split in SPLITS if (folder / split).exists()]
  if existing:
    raise ValueError(f"{folder / existing[0]} exists already; remove it or choose another --out.")
  if source != "tfds" and not epath.Path(source).is_file():
    raise ValueError(f"--source={source!r} is neither 'tfds' nor a file (the CIFAR-10 python "
                     "archive cifar-10-python.tar.gz).")
  for split, images, labels in read_tfds(data_dir) if source == "tfds" else read_archive(source):
    write_split(folder, split, images, labels)
    print(f"{folder / split}: {len(labels)} images, per class "
          f"{np.bincount(labels, minlength=len(CLASSES)).tolist()}", flush=True)
  return folder_digest(folder)


FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    digest = make_folder(FLAGS.out, FLAGS.source, FLAGS.data_dir)
    same = ("equal to the study folder's: the same files byte for byte" if digest == STUDY_DIGEST
            else f"the study folder's is {STUDY_DIGEST}; --compare=STUDY_DIR compares the images")
    print(f"folder digest {digest} ({same})")
    if FLAGS.compare:
      c = compare(FLAGS.out, FLAGS.compare)
      print(f"compared with {FLAGS.compare}: {c['identical_files']} of {c['files']} files "
            f"identical; decoded pixels differ by {c['mean_abs_diff']:.3f} on average, "
            f"{c['max_abs_diff']} at most (0-255)")
  except (ValueError, OSError) as e:
    print(f"make_cifar10_folder: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  flags.DEFINE_string("out", None, "Folder to write train/ and test/ into.", required=True)
  flags.DEFINE_string("source", "tfds", "'tfds' (TFDS cifar10) or the path of "
                      "cifar-10-python.tar.gz.")
  flags.DEFINE_string("data_dir", None, "TFDS data dir (--source=tfds); default TFDS's own.")
  flags.DEFINE_string("compare", None, "A CIFAR-10 folder to compare the written images with.")
  app.run(main)
