"""The analyses (``analysis.runner``, ``sam_jax.analyze``) end to end on a tiny digits run."""

import importlib
import json
import os
import re
import subprocess
import sys

import jax
import matplotlib.image
import ml_collections
import numpy as np
import pytest

from tests import tiny_digits_config
from sam_jax import models, parallel
from sam_jax.analysis import registry, runner
from sam_jax.checkpoints import loading
from sam_jax.config import defaults
from sam_jax.training import loop

STEPS = 4


def tiny_config(rho: float) -> ml_collections.ConfigDict:
  """A one-block ViT on 8x8 digits, with small analysis settings stored in its config.json."""
  config = tiny_digits_config.get_config(STEPS, eval_every_steps=2)
  config.optimizer.warmup_steps = 1
  config.sam.rho = rho
  config.analysis = ml_collections.ConfigDict(dict(
      batch_size=16, hessian=dict(num_batches=2, num_steps=8), ntk=dict(batch_size=8),
      neurons=dict(num_batches=1), landscape=dict(num_batches=1, points_1d=5, points_2d=3),
      attention=dict(num_images=3)))
  config.adversarial = ml_collections.ConfigDict(dict(epsilon=8.0, pgd_steps=3,
                                                      pgd_step_size=4.0))
  return config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("sam"))
  loop.train_and_evaluate(tiny_config(0.05), path)
  return path


def test_all_analyses_and_figures(workdir, tmp_path):
  loaded = {label: loading.load(workdir) for label in ("SAM", "again")}
  mesh = parallel.create_mesh(jax.devices()[:1])  # Multi-device: see test_hessian.
  summary = runner.run(loaded, None, str(tmp_path), mesh)
  assert json.load(open(tmp_path / "analysis.json")) == json.loads(json.dumps(summary))
  for result in summary["runs"].values():
    assert set(registry.ANALYSES) <= set(result) and result["step"] == STEPS
    assert list(result["block_hessian"]["lambda_max"]) == [
        "embedding", "block_0/attention", "block_0/mlp", "head"]
    assert np.isfinite(result["hessian"]["lambda_max"])
    assert result["ntk"]["init"]["kappa"] >= 1
    fractions = result["neurons"]["active_fraction"]
    assert list(fractions) == ["Transformer/encoderblock_0/MlpBlock_0"]
    assert all(0 < f < 1 for f in fractions.values())
    land = result["landscape"]
    assert land["loss_1d"][2] == pytest.approx(land["loss_2d"][1][1], rel=1e-6)  # Both at w.
    assert np.array(result["attention"]["maps"]).shape == (3, 2, 2)
    assert result["curves"]["train/loss"]["steps"] == [2, 4]
  first, second = summary["runs"].values()
  assert first["hessian"] == second["hessian"] and first["landscape"] == second["landscape"]
  assert len(summary["figures"]) == 9
  for name in summary["figures"]:
    image = matplotlib.image.imread(tmp_path / name)
    assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0


def _analyze(*flags: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "sam_jax.analyze", *flags], capture_output=True,
                        text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_command_line(workdir, tmp_path):
  done = _analyze(f"--run=SAM={workdir}", f"--run={workdir}", "--analyses=norms,curves",
                  f"--output_dir={tmp_path}")
  assert done.returncode == 0, done.stderr
  # The training loop's progress line (clu), one per analysis of both runs, with the ETA.
  lines = [line for line in done.stderr.splitlines() if "Setting work unit notes" in line]
  assert [re.search(r"steps/s, [\d.]+% \((\d/\d)\), ETA: \d+m$", line)[1]
          for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
  result = json.load(open(tmp_path / "analysis.json"))
  assert list(result["runs"]) == ["SAM", os.path.basename(workdir)]
  assert set(result["figures"]) == {"weight_norms.png", "activation_norms.png",
                                    "training_curves.png"}


def test_bad_analysis_name_fails_before_loading(tmp_path):
  """A missing run would fail the load: the name check comes first."""
  done = _analyze(f"--run={tmp_path / 'missing'}", "--analyses=hesian,norms")
  assert done.returncode == 2
  assert done.stderr.splitlines()[-1] == (
      f"sam_jax.analyze: analyze: unknown analyses ['hesian']; valid: {list(registry.ANALYSES)}.")
  assert "missing" not in done.stderr


def test_each_analysis_lives_in_the_module_named_after_it():
  for name, analysis in registry.ANALYSES.items():
    assert analysis.name == name
    assert analysis.run.__module__ == f"sam_jax.analysis.{name}"
    assert importlib.import_module(f"sam_jax.analysis.{name}").ANALYSIS is analysis


def test_bad_requests_fail_before_any_work(tmp_path):
  loaded = loading.initial(tiny_config(0.0))
  with pytest.raises(ValueError, match="unknown analyses.*'hessian'"):
    runner.run({"a": loaded}, ["hessain"], str(tmp_path))
  config = tiny_config(0.0)
  config.analysis.hessian.num_iters = 3
  with pytest.raises(ValueError, match="config.analysis has a key"):
    defaults.complete(config)
  config = tiny_config(0.0)
  config.analysis.hessian.method = "arnoldi"
  with pytest.raises(ValueError, match="hessian.method='arnoldi' must be one of"):
    loading.initial(config)
  config = tiny_config(0.0)
  config.adversarial.epsilon = -1.0
  with pytest.raises(ValueError, match="adversarial.epsilon=-1.0 must be >= 0"):
    loading.initial(config)
  mixer = models.create_model("mixer", "S/4", num_classes=10)
  with pytest.raises(ValueError, match="'attention' needs a ViT"):
    runner.check(loading.Loaded(config, mixer, {}, {}, None, "x"), ["attention"])
  with pytest.raises(ValueError, match="'curves' needs a training workdir"):
    runner.check(loaded, ["curves"])
  assert not any(tmp_path.iterdir())
