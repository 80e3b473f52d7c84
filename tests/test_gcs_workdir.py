"""``evaluate`` and ``analyze`` on a ``gs://`` workdir written by training, on a fake gs:// store.

The fake: ``etils.epath.testing.mock_epath`` serves every ``gs://B/P`` path from
``<bucket root>/B/P`` on the local disk (other paths unchanged), and Orbax's GCS hooks
(its TensorStore path normalisation, its GCS path test, the bucket API) are pointed at
the same files. The working directory is elsewhere, so code that treated ``gs://B/P`` as
a local path (``os.path``) would find nothing. A tiny run trained locally is copied into
the bucket byte for byte; the tools must give on ``gs://bucket/run`` what they give on
the local workdir, and write their outputs into the bucket.
"""

import json
import os
import shutil

from etils import epath
from etils.epath import gpath
from etils.epath import testing as epath_testing
import jax
import numpy as np
from orbax.checkpoint._src.path import gcs_utils
from orbax.checkpoint._src.serialization import tensorstore_utils
import pytest

from sam_jax import parallel
from sam_jax.analysis import runner as analysis_runner
from sam_jax.analysis import curves
from sam_jax.checkpoints import loading
from sam_jax.evaluation import runner as evaluation_runner
from sam_jax.training import loop
from tests.test_analyze import STEPS, tiny_config

WORKDIR = "gs://bucket/run"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("local"))
  loop.train_and_evaluate(tiny_config(0.05), path)
  return path


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
  """The bucket root: ``gs://B/P`` is ``<root>/B/P`` for epath and Orbax."""
  root = tmp_path / "buckets"
  root.mkdir()
  monkeypatch.chdir(tmp_path.parent)  # Not the bucket root: a gs:// path is not a local one.

  def local(path):
    text = os.fspath(path)
    return str(root / text.removeprefix("gs://")) if text.startswith("gs://") else text

  def on_path(original, path, *args, **kwargs):
    return original(local(path), *args, **kwargs)

  def on_two_paths(original, path, dst, *args, **kwargs):
    return original(local(path), local(dst), *args, **kwargs)

  def glob(original, pattern):
    return [f"gs://{os.path.relpath(p, root)}" if str(pattern).startswith("gs://") else p
            for p in original(local(pattern))]

  one = {name: on_path for name in ("exists", "isdir", "listdir", "makedirs", "mkdir", "open",
                                    "remove", "rmtree", "stat", "walk")}
  two = {name: on_two_paths for name in ("copy", "rename", "replace")}
  normalize = tensorstore_utils._normalize_path  # pylint: disable=protected-access
  monkeypatch.setattr(tensorstore_utils, "_normalize_path", lambda p: normalize(local(p)))
  monkeypatch.setattr(gcs_utils, "is_gcs_path", lambda p: False)
  monkeypatch.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda p: False)
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)  # Else gs:// skips the mock.
  with epath_testing.mock_epath(glob=glob, **one, **two):
    yield root


def test_evaluate_and_analyze_a_gs_workdir(local_run, fake_gcs):
  shutil.copytree(local_run, fake_gcs / "bucket" / "run")
  assert not os.path.exists(WORKDIR) and epath.Path(WORKDIR, "config.json").exists()
  mesh = parallel.create_mesh(jax.devices()[:1])

  runs, output_dir = loading.load_runs([f"SAM={WORKDIR}"], None, None, "")
  assert output_dir == WORKDIR and runs["SAM"].step == STEPS
  local = loading.load(local_run)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(runs["SAM"].params),
               jax.device_get(local.params))
  evaluation_runner.run(runs, ["digits:test"], output_dir, mesh)
  written = json.loads((fake_gcs / "bucket" / "run" / "evaluation.json").read_text())
  expected = evaluation_runner.evaluate(local, ["digits:test"], mesh)
  assert written["runs"]["SAM"]["eval"] == expected["eval"]
  assert written["runs"]["SAM"]["source"] == WORKDIR

  runs, output_dir = loading.load_runs([WORKDIR], None, None, "analysis")
  assert list(runs) == ["run"] and output_dir == f"{WORKDIR}/analysis"
  summary = analysis_runner.run(runs, ["norms", "curves"], output_dir, mesh)
  out = fake_gcs / "bucket" / "run" / "analysis"
  assert json.loads((out / "analysis.json").read_text()) == json.loads(json.dumps(summary))
  assert sorted(summary["figures"]) == ["activation_norms.png", "training_curves.png",
                                        "weight_norms.png"]
  assert all((out / name).stat().st_size > 0 for name in summary["figures"])
  steps, values = curves.read_scalars(local_run)["train/loss"]
  curve = summary["runs"]["run"]["curves"]["train/loss"]
  assert curve == {"steps": steps.tolist(), "values": values.tolist()}
