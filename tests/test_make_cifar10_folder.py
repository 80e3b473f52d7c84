"""sam_jax.data.make_cifar10_folder: the CIFAR-10 image folder from TFDS (mocked) and from a
python-format archive written here; layout, labels (read back by ``ImageFolder``), order,
counts and the JPEG encoding (quantisation tables against libjpeg's standard ones)."""

import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image, JpegImagePlugin
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from sam_jax.data import image_folder
from sam_jax.data import make_cifar10_folder as cifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
# libjpeg's standard quantisation tables (JPEG Annex K, natural order) and jcparam.c's scaling.
LUMINANCE = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40,
             57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35,
             55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112,
             100, 103, 99]
CHROMINANCE = ([17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56]
               + [99] * 5 + [47, 66] + [99] * 38)


def libjpeg_table(table: list[int], quality: int) -> list[int]:
  scale = 5000 // quality if quality < 50 else 200 - 2 * quality
  return [min(max((v * scale + 50) // 100, 1), 255) for v in table]


def colour(label: int, rank: int) -> tuple[int, int, int]:
  """A flat colour naming an example (flat images survive JPEG within a few levels)."""
  return 10 + 24 * label, 20 + 50 * rank, 128


def examples(per_class: int) -> tuple[np.ndarray, np.ndarray]:
  """Images and labels in the official order: example i has label i % 10, rank i // 10."""
  labels = np.arange(10 * per_class) % 10
  images = np.array([np.broadcast_to(np.array(colour(i % 10, i // 10), np.uint8), (32, 32, 3))
                     for i in range(10 * per_class)])
  return images, labels


PER_CLASS = {"train": 2, "test": 1}


def check_folder(out: str) -> None:
  assert sorted(os.listdir(out)) == ["test", "train"]
  folder = image_folder.ImageFolder(out, class_split="train")
  assert list(folder.classes) == CLASSES
  for split, per_class in PER_CLASS.items():
    paths, labels = folder.files(split)
    assert len(paths) == 10 * per_class
    for path, label in zip(paths, labels):
      rank = int(os.path.basename(path).removesuffix(".jpg"))
      assert os.path.basename(path) == f"{rank:04d}.jpg" and rank < per_class
      with Image.open(path) as im:
        assert im.format == "JPEG" and im.size == (32, 32) and not im.info.get("progressive")
        assert im.quantization[0] == libjpeg_table(LUMINANCE, 75)
        assert im.quantization[1] == libjpeg_table(CHROMINANCE, 75)
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0: luma sampled 2x2
        pixels = np.asarray(im.convert("RGB"), np.int32)
      np.testing.assert_allclose(pixels, np.broadcast_to(colour(label, rank), pixels.shape),
                                 atol=3)


def test_from_mocked_tfds_in_official_order(tmp_path):
  def as_dataset(self, split, *args, **kwargs):
    del self, args, kwargs
    images, labels = examples(PER_CLASS[split])
    ids = [f"{split}_{i:05d}" for i in range(len(labels))]
    return tf.data.Dataset.from_tensor_slices(  # Reversed: the reader sorts by id.
        {"id": ids[::-1], "image": images[::-1], "label": labels[::-1]})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    digest = cifar.make_folder(tmp_path / "cifar10", "tfds")
  check_folder(str(tmp_path / "cifar10"))
  assert digest == cifar.folder_digest(tmp_path / "cifar10") != cifar.STUDY_DIGEST


def test_mocked_tfds_random_examples(tmp_path):
  with tfds.testing.mock_data(num_examples=7):
    cifar.make_folder(tmp_path, "tfds")
  for split in ("train", "test"):
    files = [f for c in CLASSES for f in os.listdir(tmp_path / split / c)]
    assert len(files) == 7


def write_archive(path, batches: dict[str, object], label_names=CLASSES) -> None:
  with tarfile.open(path, "w:gz") as tar:
    def add(name, obj):
      data = pickle.dumps(obj, protocol=2)
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
    add("batches.meta", {b"label_names": [n.encode() for n in label_names]})
    for name, obj in batches.items():
      add(name, obj)


def python_batches() -> dict[str, dict]:
  """data_batch_1..5 (4 examples each) and test_batch as the official archive stores them."""
  def batch(images, labels):
    return {b"data": images.transpose(0, 3, 1, 2).reshape(len(labels), 3072),
            b"labels": [int(l) for l in labels]}
  train, train_labels = examples(PER_CLASS["train"])
  test, test_labels = examples(PER_CLASS["test"])
  out = {f"data_batch_{b + 1}": batch(train[4 * b:4 * b + 4], train_labels[4 * b:4 * b + 4])
         for b in range(5)}
  return out | {"test_batch": batch(test, test_labels)}


def run_cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "sam_jax.data.make_cifar10_folder", *args],
                        capture_output=True, text=True, cwd=ROOT, check=False,
                        env=dict(os.environ, PYTHONPATH=ROOT))


def test_from_python_archive_cli(tmp_path):
  archive = tmp_path / "cifar-10-python.tar.gz"
  write_archive(archive, python_batches())
  out = run_cli(f"--out={tmp_path / 'cifar10'}", f"--source={archive}",
                f"--compare={tmp_path / 'cifar10'}")
  assert out.returncode == 0, out.stderr[-2000:]
  check_folder(str(tmp_path / "cifar10"))
  assert f"folder digest {cifar.folder_digest(tmp_path / 'cifar10')}" in out.stdout
  assert "30 of 30 files identical; decoded pixels differ by 0.000 on average, 0 at most" in (
      out.stdout)
  again = run_cli(f"--out={tmp_path / 'cifar10'}", f"--source={archive}")
  assert again.returncode == 2
  assert again.stderr.strip().splitlines()[-1] == (
      f"make_cifar10_folder: {tmp_path / 'cifar10' / 'train'} exists already; remove it or "
      "choose another --out.")


def test_compare_and_digest_see_one_changed_file(tmp_path):
  archive = tmp_path / "cifar-10-python.tar.gz"
  write_archive(archive, python_batches())
  digest = cifar.make_folder(tmp_path / "a", str(archive))
  cifar.make_folder(tmp_path / "b", str(archive))
  changed = tmp_path / "b" / "test" / "cat" / "0000.jpg"
  Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(changed, quality=90)
  assert cifar.folder_digest(tmp_path / "b") != digest == cifar.folder_digest(tmp_path / "a")
  result = cifar.compare(tmp_path / "a", tmp_path / "b")
  assert result["files"] == 30 and result["identical_files"] == 29
  distance = np.abs(200 - np.array(colour(CLASSES.index("cat"), 0)))
  assert result["max_abs_diff"] == pytest.approx(distance.max(), abs=3)
  assert result["mean_abs_diff"] == pytest.approx(distance.mean() / 30, abs=0.1)


def test_bad_archives_are_named(tmp_path):
  batches = python_batches()
  del batches["data_batch_3"]
  write_archive(tmp_path / "short.tar.gz", batches)
  with pytest.raises(ValueError, match="it lacks data_batch_3"):
    cifar.make_folder(tmp_path / "out", str(tmp_path / "short.tar.gz"))
  write_archive(tmp_path / "names.tar.gz", python_batches(), label_names=CLASSES[::-1])
  with pytest.raises(ValueError, match="names the classes"):
    cifar.make_folder(tmp_path / "out", str(tmp_path / "names.tar.gz"))
  write_archive(tmp_path / "code.tar.gz", python_batches() | {"data_batch_1": os.system})
  with pytest.raises(ValueError, match="asks for posix.system"):
    cifar.make_folder(tmp_path / "out", str(tmp_path / "code.tar.gz"))
  with pytest.raises(ValueError, match="neither 'tfds' nor a file"):
    cifar.make_folder(tmp_path / "out", str(tmp_path / "missing.tar.gz"))
