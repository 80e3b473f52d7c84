"""The input pipeline on TFDS (mocked, and a tiny real prepared dataset) and image folders.

Shapes, dtypes and ranges; eval sees every example exactly once for any batch
size and process count; training is deterministic, epoch-wise a permutation,
and resumes exactly; missing data and unreadable images give errors naming them.
"""

import itertools
import os

import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import default
from sam_jax.data import catalog, digits, epochs, input_pipeline

NUM_TRAIN, NUM_TEST = 37, 23


class SamJaxTinyImages(tfds.core.GeneratorBasedBuilder):
  """Example i is a small JPEG of varying size with label i (labels are unique ids)."""
  VERSION = tfds.core.Version("1.0.0")
  code_path = None  # Defined in a test, not a TFDS package: no checksums file to look up.

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(num_classes=NUM_TRAIN + NUM_TEST)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, NUM_TRAIN),
            "test": self._generate_examples(NUM_TRAIN, NUM_TRAIN + NUM_TEST)}

  def _generate_examples(self, start, stop):
    rng = np.random.default_rng(start)
    for i in range(start, stop):
      yield i, {"image": rng.integers(0, 256, (9 + i % 5, 12 + i % 3, 3), np.uint8), "label": i}


@pytest.fixture(scope="module")
def tfds_config(tmp_path_factory) -> ml_collections.ConfigDict:
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  SamJaxTinyImages(data_dir=data_dir).download_and_prepare()
  return ml_collections.ConfigDict(dict(
      dataset="sam_jax_tiny_images", data_dir=data_dir, train_split="train", eval_split="test",
      image_size=8, pp=dict(eval_resize=9), shuffle_buffer=16))


def make_folder(root: str, split: str, classes: list[str], per_class: int, size=(10, 13)) -> None:
  rng = np.random.default_rng(len(classes))
  for c, name in enumerate(classes):
    os.makedirs(os.path.join(root, split, name), exist_ok=True)
    for i in range(per_class):
      ext = "png" if (c + i) % 2 else "jpg"
      Image.fromarray(rng.integers(0, 256, size + (3,), np.uint8)).save(
          os.path.join(root, split, name, f"{i}.{ext}"))


def shrink_folder_config(config: ml_collections.ConfigDict, root: str, num_classes: int,
                         image_size: int, num_train_steps: int) -> ml_collections.ConfigDict:
  """An image-folder config cut to a test's size: ``image_size`` px, batch 8, a 1-layer
  width-16 ViT, one warm-up step."""
  config.data_dir = root
  config.num_classes = num_classes
  config.image_size = config.pp.eval_resize = image_size
  config.batch_size = config.eval_batch_size = 8
  config.model.update(dict(hidden_size=16, mlp_dim=32, num_heads=2, num_layers=1))
  config.optimizer.warmup_steps = 1
  config.num_train_steps = num_train_steps
  return config


@pytest.fixture(scope="module")
def folder_config(tmp_path_factory) -> ml_collections.ConfigDict:
  """One image per class, so labels identify images: 37 train, 23 test."""
  root = str(tmp_path_factory.mktemp("folder"))
  make_folder(root, "train", [f"c{i:02d}" for i in range(NUM_TRAIN)], 1)
  make_folder(root, "test", [f"c{i:02d}" for i in range(NUM_TEST)], 1)
  return ml_collections.ConfigDict(dict(
      dataset="folder", data_dir=root, train_split="train", eval_split="test", image_size=8,
      pp=dict(eval_resize=9)))


@pytest.fixture(params=["tfds", "folder"])
def config(request, tfds_config, folder_config) -> ml_collections.ConfigDict:
  return {"tfds": tfds_config, "folder": folder_config}[request.param]


def _labels(batches) -> np.ndarray:
  """The labels of the real (unmasked) examples."""
  return np.concatenate([b["label"][b["mask"] > 0] for b in batches])


@pytest.mark.parametrize("name", [
    "imagenet2012", "imagenet2012_real", "imagenet_v2", "imagenet_r",
    "imagenet2012_corrupted/gaussian_noise_5", "cifar10", "cifar100", "oxford_flowers102",
    "oxford_iiit_pet"])
def test_mock_tfds_batches_have_the_promised_shapes_and_ranges(name):
  config = ml_collections.ConfigDict(dict(dataset=name, image_size=16))
  with tfds.testing.mock_data(num_examples=5):
    info = input_pipeline.get_info(config)
    if catalog.spec(name).train_split:  # Not an evaluation-only dataset.
      batch = next(input_pipeline.train_iterator(config, local_batch_size=4, seed=0))
      assert set(batch) == {"image", "label"}
      assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == np.float32
      assert -1 <= batch["image"].min() and batch["image"].max() <= 1
      assert batch["label"].dtype == np.int32
      assert ((0 <= batch["label"]) & (batch["label"] < info.num_classes)).all()
    batches = list(input_pipeline.eval_iterator(config, local_batch_size=4))
  assert [b["mask"].tolist() for b in batches] == [[1] * 4, [1, 0, 0, 0]]
  for b in batches:
    assert b["image"].shape == (4, 16, 16, 3) and b["image"].dtype == np.float32
    assert -1 <= b["image"].min() and b["image"].max() <= 1
    assert b["label"].dtype == np.int32 and b["mask"].dtype == np.float32
  assert ("real_label" in batches[0]) == (name == "imagenet2012_real")


def test_real_labels_are_the_multi_hot_of_the_tfds_label_sets():
  real = [[3, 7], [], [999, 0, 3, 3]]
  jpeg = tf.io.encode_jpeg(tf.zeros([4, 4, 3], tf.uint8)).numpy()

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    """Stored examples as TFDS gives them with the image left encoded."""
    del self, split, decoders, read_config, shuffle_files
    return tf.data.Dataset.from_generator(
        lambda: ({"image": jpeg, "original_label": 10 * i, "real_label": np.array(r, np.int64)}
                 for i, r in enumerate(real)),
        output_signature={"image": tf.TensorSpec([], tf.string),
                          "original_label": tf.TensorSpec([], tf.int64),
                          "real_label": tf.TensorSpec([None], tf.int64)}).apply(
                              tf.data.experimental.assert_cardinality(len(real)))

  config = ml_collections.ConfigDict(dict(dataset="imagenet2012_real", image_size=16))
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    (batch,) = list(input_pipeline.eval_iterator(config, local_batch_size=4))
  assert batch["real_label"].shape == (4, 1000) and batch["real_label"].dtype == bool
  for row, labels in zip(batch["real_label"], real + [[]]):  # The padding has no labels.
    np.testing.assert_array_equal(np.flatnonzero(row), sorted(set(labels)))
  np.testing.assert_array_equal(batch["label"][:3], [0, 10, 20])
  np.testing.assert_array_equal(batch["mask"], [1, 1, 1, 0])


@pytest.mark.parametrize("local_batch_size,process_count", [
    (1, 1), (2, 1), (8, 1), (4, 2), (3, 2), (5, 3), (32, 2)])
def test_eval_sees_every_example_exactly_once(config, local_batch_size, process_count):
  per_process = [list(input_pipeline.eval_iterator(
      config, local_batch_size=local_batch_size, process_index=i, process_count=process_count))
                 for i in range(process_count)]
  assert len({len(batches) for batches in per_process}) == 1  # Same number of steps everywhere.
  labels = np.concatenate([_labels(batches) for batches in per_process])
  offset = NUM_TRAIN if config.dataset != "folder" else 0
  np.testing.assert_array_equal(np.sort(labels), np.arange(NUM_TEST) + offset)
  for batches in per_process:
    for b in batches:
      assert b["image"].shape == (local_batch_size, 8, 8, 3)
      assert set(np.unique(b["mask"])) <= {0.0, 1.0}


@pytest.mark.parametrize("start", [0, 2, 3, 7])
def test_epoch_stream_starts_anywhere(start):
  """Epoch e holds 10 e, 10 e + 1, 10 e + 2; position p is element p mod 3 of epoch p div 3."""
  epoch = lambda e: tf.data.Dataset.range(3).map(lambda i: 10 * e + i)
  stream = list(itertools.islice(epochs.stream_from(start, 3, epoch).as_numpy_iterator(), 5))
  expected = [10 * (p // 3) + p % 3 for p in range(start, start + 5)]
  assert [(int(p), int(v)) for p, v in stream] == list(zip(range(start, start + 5), expected))


def test_train_is_deterministic_and_resumes_exactly(config):
  for process_index, process_count in [(0, 1), (1, 2)]:
    kwargs = dict(local_batch_size=4, process_index=process_index, process_count=process_count)
    full = list(itertools.islice(input_pipeline.train_iterator(config, seed=3, **kwargs), 22))
    again = list(itertools.islice(input_pipeline.train_iterator(config, seed=3, **kwargs), 22))
    late = list(itertools.islice(
        input_pipeline.train_iterator(config, seed=3, start_step=13, **kwargs), 9))
    other = list(itertools.islice(input_pipeline.train_iterator(config, seed=4, **kwargs), 22))
    for a, b in zip(full, again):
      np.testing.assert_array_equal(a["image"], b["image"])
      np.testing.assert_array_equal(a["label"], b["label"])
    for a, b in zip(full[13:], late):  # Crosses epoch boundaries (9 or 18 examples per epoch).
      np.testing.assert_array_equal(a["image"], b["image"])
      np.testing.assert_array_equal(a["label"], b["label"])
    assert not all(np.array_equal(a["label"], b["label"]) for a, b in zip(full, other))


def test_train_epochs_permute_each_process_part(config):
  """P processes read disjoint parts covering the split; each epoch is a new permutation."""
  parts = []
  for process_index in range(3):
    batches = input_pipeline.train_iterator(config, local_batch_size=1, seed=0,
                                            process_index=process_index, process_count=3)
    stream = np.concatenate([b["label"] for b in itertools.islice(batches, 60)])
    n = len(set(stream.tolist()))
    assert n in (NUM_TRAIN // 3, NUM_TRAIN // 3 + 1)
    epochs = [stream[e * n:(e + 1) * n] for e in range(60 // n)]
    for epoch in epochs:
      assert sorted(epoch) == sorted(epochs[0])
    assert any(not np.array_equal(epochs[0], epoch) for epoch in epochs[1:])
    parts.append(sorted(epochs[0]))
  assert sorted(sum(parts, [])) == list(range(NUM_TRAIN))


def test_folder_labels_follow_the_sorted_training_classes(tmp_path):
  root = str(tmp_path)
  make_folder(root, "train", ["zebra", "ant", "moth"], 2)
  make_folder(root, "test", ["moth"], 3)  # A split may lack classes: same labels still.
  config = ml_collections.ConfigDict(dict(dataset="folder", data_dir=root, image_size=8,
                                          train_split="train", eval_split="test"))
  info = input_pipeline.get_info(config)
  assert (info.num_classes, info.eval_num_examples) == (3, 3)
  batch = next(input_pipeline.eval_iterator(config, local_batch_size=3))
  np.testing.assert_array_equal(batch["label"], [1, 1, 1])  # ant=0, moth=1, zebra=2.
  train = np.concatenate([b["label"] for b in itertools.islice(
      input_pipeline.train_iterator(config, local_batch_size=3, seed=0), 2)])
  np.testing.assert_array_equal(np.sort(train), [0, 0, 1, 1, 2, 2])
  make_folder(root, "val", ["moth", "wasp"], 1)
  with pytest.raises(ValueError, match="wasp"):
    list(input_pipeline.eval_iterator(config, local_batch_size=3, split="val"))


def test_a_per_class_split_is_the_first_images_of_each_class(tmp_path):
  root = str(tmp_path)
  make_folder(root, "train", ["ant", "moth", "zebra"], 5)
  make_folder(root, "test", ["ant", "moth", "zebra"], 1)
  config = ml_collections.ConfigDict(dict(dataset="folder", data_dir=root, image_size=8,
                                          train_split="train[:2/class]", eval_split="test"))
  from sam_jax.data import image_folder  # pylint: disable=g-import-not-at-top
  source = image_folder.ImageFolder(root, class_split="train[:2/class]")
  paths, labels = source.files("train[:2/class]")
  assert [os.path.relpath(os.path.splitext(p)[0], root) for p in paths] == [
      os.path.join("train", c, str(i)) for c in ("ant", "moth", "zebra") for i in (0, 1)]
  assert labels == (0, 0, 1, 1, 2, 2)
  # Training reads exactly the subset, each image once per epoch; evaluating it counts 6.
  train = [b["label"] for b in itertools.islice(
      input_pipeline.train_iterator(config, local_batch_size=3, seed=0), 4)]
  assert sorted(np.concatenate(train[:2]).tolist()) == [0, 0, 1, 1, 2, 2]
  evaluated = list(input_pipeline.eval_iterator(config, local_batch_size=4,
                                                split="train[:2/class]"))
  assert sum(int(b["mask"].sum()) for b in evaluated) == 6
  assert input_pipeline.get_info(config).num_classes == 3
  with pytest.raises(ValueError, match=r"6 images of each class.*'ant': 5"):
    source.files("train[:6/class]")
  for bad in ("train[:0/class]", "train[:2]", "train[2/class]"):
    with pytest.raises(ValueError, match=r"FOLDER\[:N/class\]"):
      source.files(bad)


def test_a_class_subset_reads_only_those_folders_labelled_in_the_given_order(tmp_path):
  root = str(tmp_path)
  make_folder(root, "train", ["ant", "moth", "wasp", "zebra"], 3)
  make_folder(root, "test", ["ant", "moth", "wasp", "zebra"], 2)
  config = ml_collections.ConfigDict(dict(
      dataset="folder", data_dir=root, image_size=8, train_split="train[:2/class]",
      eval_split="test", classes="zebra, ant"))
  assert input_pipeline.get_info(config).num_classes == 2
  assert input_pipeline.class_names(config) == ["zebra", "ant"]
  batch = next(input_pipeline.eval_iterator(config, local_batch_size=4))
  assert batch["mask"].sum() == 4 and batch["label"].tolist() == [0, 0, 1, 1]
  train = np.concatenate([b["label"] for b in itertools.islice(
      input_pipeline.train_iterator(config, local_batch_size=2, seed=0), 2)])
  assert sorted(train.tolist()) == [0, 0, 1, 1]  # One epoch: 2 images of each of 2 classes.
  # The images behind the labels are the named folders' (zebra is label 0).
  first = next(input_pipeline.eval_iterator(config, local_batch_size=1))["image"][0]
  whole = dict(config, classes="")
  zebra = list(input_pipeline.eval_iterator(ml_collections.ConfigDict(whole),
                                            local_batch_size=8))[0]
  np.testing.assert_array_equal(first, zebra["image"][6])  # ant, moth, wasp precede it.
  for bad, match in (("zebra,bee", r"\['bee'\].*valid: \['ant', 'moth', 'wasp', 'zebra'\]"),
                     ("ant,,moth", "comma-separated"), ("ant,ant", "distinct")):
    with pytest.raises(ValueError, match=match):
      input_pipeline.get_info(ml_collections.ConfigDict(dict(config, classes=bad)))
  with pytest.raises(ValueError, match="config.classes='ant' selects class folders"):
    input_pipeline.get_info(ml_collections.ConfigDict(dict(default.get_config(), classes="ant")))


def test_class_names_are_indexed_by_label(tmp_path):
  root = str(tmp_path)
  make_folder(root, "train", ["zebra", "ant", "moth"], 1)
  make_folder(root, "test", ["moth"], 2)
  config = ml_collections.ConfigDict(dict(dataset="folder", data_dir=root, image_size=8,
                                          train_split="train", eval_split="test"))
  names = input_pipeline.class_names(config)
  batch = next(input_pipeline.eval_iterator(config, local_batch_size=2))
  assert names == ["ant", "moth", "zebra"] and [names[i] for i in batch["label"]] == ["moth"] * 2
  assert input_pipeline.class_names(default.get_config()) == [str(i) for i in range(10)]
  # ReaL's label feature is "original_label"; TFDS names ImageNet classes by WordNet id (tench).
  imagenet = input_pipeline.class_names(config, "imagenet2012_real")
  assert len(imagenet) == 1000 and imagenet[0] == "n01440764"


def _corrupt_folder(root: str) -> tuple[str, str]:
  make_folder(root, "train", ["a", "b"], 5)
  truncated = os.path.join(root, "train", "a", "0.jpg")
  with open(truncated, "rb") as f:
    data = f.read()
  with open(truncated, "wb") as f:
    f.write(data[:len(data) // 3])
  garbage = os.path.join(root, "train", "b", "2.png")
  with open(garbage, "wb") as f:
    f.write(b"not an image")
  return truncated, garbage


def test_unreadable_images_are_named(tmp_path):
  truncated, garbage = _corrupt_folder(str(tmp_path))
  config = ml_collections.ConfigDict(dict(dataset="folder", data_dir=str(tmp_path), image_size=8,
                                          train_split="train", eval_split="train"))
  with pytest.raises(ValueError, match="2.png") as error:
    list(input_pipeline.eval_iterator(config, local_batch_size=10))
  assert garbage in str(error.value) and "skip_corrupt" in str(error.value)
  with pytest.raises(ValueError, match="Cannot read image") as error:
    list(itertools.islice(input_pipeline.train_iterator(config, local_batch_size=10, seed=0), 3))
  assert garbage in str(error.value) or truncated in str(error.value)


def test_skip_corrupt_drops_and_counts_unreadable_images(tmp_path):
  truncated, garbage = _corrupt_folder(str(tmp_path))
  config = ml_collections.ConfigDict(dict(
      dataset="folder", data_dir=str(tmp_path), image_size=8, train_split="train",
      eval_split="train", pp=dict(skip_corrupt=True)))
  info = input_pipeline.get_info(config)
  assert info.eval_num_examples == 8  # The eval split is train: every file is counted.
  labels = _labels(input_pipeline.eval_iterator(config, local_batch_size=3))
  np.testing.assert_array_equal(np.sort(labels), [0, 0, 0, 0, 1, 1, 1, 1])
  train = list(itertools.islice(input_pipeline.train_iterator(config, local_batch_size=4,
                                                              seed=0), 6))
  assert all(b["image"].shape == (4, 8, 8, 3) for b in train)
  from sam_jax.data import image_folder  # pylint: disable=g-import-not-at-top
  assert sorted(image_folder.unreadable(image_folder.ImageFolder(
      str(tmp_path), class_split="train").files("train")[0])) == sorted([truncated, garbage])


def test_missing_tfds_dataset_fails_fast_with_instructions(tmp_path):
  config = ml_collections.ConfigDict(dict(dataset="imagenet2012", data_dir=str(tmp_path),
                                          image_size=224))
  with pytest.raises(FileNotFoundError) as error:
    input_pipeline.get_info(config)
  message = str(error.value)
  for part in ("imagenet2012", str(tmp_path), "manual", os.path.join("downloads", "manual"),
               "ILSVRC2012_img_train.tar", "tfds build"):
    assert part in message
  config.dataset = "cifar10"
  with pytest.raises(FileNotFoundError, match=r"tfds build cifar10"):
    input_pipeline.train_iterator(config, local_batch_size=2, seed=0)


@pytest.mark.parametrize("data_dir,match", [
    (None, "config.data_dir"), ("/no/such/folder", "/no/such/folder")])
def test_missing_folder_is_named(data_dir, match):
  config = ml_collections.ConfigDict(dict(dataset="folder", data_dir=data_dir, image_size=8))
  with pytest.raises((ValueError, FileNotFoundError), match=match):
    input_pipeline.get_info(config)


def test_unknown_dataset_and_split_are_named(folder_config):
  config = ml_collections.ConfigDict(dict(dataset="no_such_dataset", image_size=8))
  with pytest.raises(ValueError, match="no_such_dataset"):
    input_pipeline.get_info(config)
  with pytest.raises(FileNotFoundError, match="'validation'"):
    input_pipeline.eval_iterator(folder_config, local_batch_size=2, split="validation")


def test_digits_are_dispatched_to_the_numpy_source():
  config = default.get_config()
  assert input_pipeline.get_info(config) == digits.get_info(config)
  a = next(input_pipeline.train_iterator(config, local_batch_size=8, seed=1, start_step=2))
  b = next(digits.train_iterator(config, local_batch_size=8, seed=1, start_step=2))
  np.testing.assert_array_equal(a["image"], b["image"])
  assert len(list(input_pipeline.eval_iterator(config, local_batch_size=120))) == 3
