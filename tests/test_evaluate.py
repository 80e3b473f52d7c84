"""Loading runs (checkpoints, .npz) and the evaluation (``evaluation.runner``, ``sam_jax.evaluate``)
on a tiny digits run."""

import importlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from sam_jax import cli
from sam_jax.analysis import curves
from sam_jax.checkpoints import loading, npz
from sam_jax.evaluation import eval_sets, runner
from sam_jax.training import loop
from tests.test_analyze import STEPS, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("run"))
  state = loop.train_and_evaluate(tiny_config(0.05), path)
  return path, jax.device_get(state.params)


def test_restore_from_workdir_and_npz(run, tmp_path):
  path, params = run
  loaded = loading.load(path)
  assert loaded.step == STEPS and loaded.source == path and loaded.model_state == {}
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(loaded.params), params)
  earlier = loading.from_workdir(path, step=2)
  assert not np.array_equal(earlier.params["head"]["kernel"], params["head"]["kernel"])
  with pytest.raises(ValueError, match=r"no checkpoint at step 3 .*steps: \[2, 4\]"):
    loading.from_workdir(path, step=3)
  with pytest.raises(ValueError, match="config.json does not exist"):
    loading.load(str(tmp_path))

  npz_path = str(tmp_path / "params.npz")
  npz.export_npz(npz_path, params)
  with pytest.raises(ValueError, match="holds no config"):
    loading.load(npz_path)
  from_npz = loading.load(npz_path, loaded.config)
  assert from_npz.step is None and from_npz.source == npz_path
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(from_npz.params), params)
  other = tiny_config(0.0)
  other.model.mlp_dim = 8
  with pytest.raises(ValueError, match="does not match"):
    loading.load(npz_path, other)


def test_parse_run():
  assert loading.parse_run("SAM=/tmp/a") == ("SAM", "/tmp/a")
  assert loading.parse_run("/tmp/runs/base/") == ("base", "/tmp/runs/base/")
  with pytest.raises(ValueError, match="LABEL="):
    loading.parse_run("SAM=")


def test_accuracy_matches_training_and_attacks_only_lower_it(run):
  path, _ = run
  loaded = loading.load(path)
  result = runner.evaluate(loaded)
  accuracy = result["eval"]["digits:test"]["accuracy"]
  steps, values = curves.read_scalars(path)["eval/accuracy"]
  assert steps[-1] == STEPS and accuracy == pytest.approx(values[-1], abs=1e-6)
  adv = result["adversarial"]
  assert adv["num_examples"] == 360 and adv["clean_accuracy"] == pytest.approx(accuracy)
  assert adv["pgd_accuracy"] <= adv["clean_accuracy"]
  assert adv["fgsm_accuracy"] <= adv["clean_accuracy"]
  with loaded.config.unlocked():
    loaded.config.adversarial.epsilon = 0.0  # No budget: no attack can change anything.
    loaded.config.adversarial.num_examples = 80
  adv = runner.evaluate(loaded, ["digits:test"])["adversarial"]
  assert adv["num_examples"] == 80
  assert adv["fgsm_accuracy"] == adv["pgd_accuracy"] == adv["clean_accuracy"]


def test_eval_set_names():
  config = tiny_config(0.0)
  sets = eval_sets.eval_sets(["imagenet_real", "imagenet_c", "digits:test", ":train"], config)
  assert sets["imagenet_real"] == ("imagenet2012_real", "validation")
  assert sets["imagenet_c/fog_3"] == ("imagenet2012_corrupted/fog_3", "validation")
  assert len([n for n in sets if n.startswith("imagenet_c/")]) == 95
  assert sets["digits:test"] == ("digits", "test") and sets[":train"] == ("digits", "train")


def test_command_line(run, tmp_path):
  path, _ = run
  subprocess.run([sys.executable, "-m", "sam_jax.evaluate", f"--run=SAM={path}",
                  f"--output_dir={tmp_path}"], check=True, capture_output=True,
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = json.load(open(tmp_path / "evaluation.json"))["runs"]["SAM"]
  assert result["step"] == STEPS and result["adversarial"]["epsilon"] == 8.0


def test_missing_data_fails_before_loading_weights(tmp_path):
  config = importlib.import_module("configs.vit_b16").get_config()
  config.data_dir = str(tmp_path)
  missing = str(tmp_path / "never_read.npz")  # Reading it would raise another error.
  with pytest.raises(FileNotFoundError, match="imagenet2012"):
    loading.load_runs([missing], config, str(tmp_path / "out"), "")
  done = subprocess.run([sys.executable, "-m", "sam_jax.evaluate", f"--run={missing}",
                         "--config=configs/vit_b16.py", f"--config.data_dir={tmp_path}",
                         f"--output_dir={tmp_path / 'out'}"], capture_output=True, text=True,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert done.returncode == cli.EXIT_USER_ERROR and "sam_jax.evaluate: " in done.stderr
  assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
