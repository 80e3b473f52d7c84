"""Every input the run reads is checked before the first step; an eval failure never costs
the step's checkpoint."""

import os

import pytest

from configs import cifar10_folder
from sam_jax.data import digits
from sam_jax.training import loop
from tests import tiny_digits_config
from tests.test_input_pipeline import make_folder, shrink_folder_config

CLASSES = ["a", "b"]


def _folder_config(root: str, **overrides):
  """configs/cifar10_folder.py shrunk to a few steps on a generated 2-class folder."""
  config = shrink_folder_config(cifar10_folder.get_config(), root, len(CLASSES), 8, 2)
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
  config.update(overrides)
  return config


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_corrupt_image_in_either_split_is_refused_before_training(tmp_path, split):
  root = str(tmp_path / "data")
  make_folder(root, "train", CLASSES, 4)
  make_folder(root, "test", CLASSES, 2)
  bad = os.path.join(root, split, "b", "1.png")
  with open(bad, "wb") as f:
    f.write(b"not an image")
  with pytest.raises(ValueError, match=f"Cannot read image.*{bad}"):
    loop.train_and_evaluate(_folder_config(root), str(tmp_path / "w"))
  assert os.listdir(tmp_path / "w") == []  # Refused before any step (the lock released).


def test_an_empty_class_folder_is_refused(tmp_path):
  root = str(tmp_path / "data")
  make_folder(root, "train", CLASSES, 4)
  make_folder(root, "test", CLASSES, 2)
  os.makedirs(os.path.join(root, "train", "c"))
  with pytest.raises(ValueError, match=r"class folder.*train/c.*have no images"):
    loop.train_and_evaluate(_folder_config(root, num_classes=3), str(tmp_path / "w"))


def test_an_eval_failure_still_saves_the_step_first(tmp_path, monkeypatch):
  def failing_eval(config, **kwargs):
    del config, kwargs
    raise OSError("eval data went away")
    yield  # pylint: disable=unreachable

  monkeypatch.setattr(digits, "eval_iterator", failing_eval)
  config = tiny_digits_config.get_config(4, eval_every_steps=2, checkpoint_every_steps=2)
  with pytest.raises(OSError, match="eval data went away"):
    loop.train_and_evaluate(config, str(tmp_path))
  assert os.listdir(tmp_path / "checkpoints") == ["2"]
