"""notebooks/evaluate_checkpoint.ipynb runs top to bottom on a tiny digits run.

The kernel is this interpreter (a kernelspec written for ``sys.executable``) with one CPU
device (the test session emulates 8); parameters are injected in a cell after the
``parameters`` cell, as papermill does.
"""

import json
import os
import pathlib
import sys

import ipykernel.kernelspec
import jax
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
import matplotlib.image
import nbclient
import nbformat
import numpy as np
import pytest

from sam_jax.analysis import curves
from sam_jax.checkpoints import npz
from sam_jax.training import loop
from tests import tiny_digits_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "evaluate_checkpoint.ipynb")
NUM_IMAGES = 3


def read_notebook() -> nbformat.NotebookNode:
  return nbformat.read(NOTEBOOK, as_version=4)


def with_parameters(nb: nbformat.NotebookNode, **params) -> nbformat.NotebookNode:
  """The notebook with a cell assigning ``params`` right after its ``parameters`` cell."""
  index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
  source = "\n".join(f"{name} = {value!r}" for name, value in params.items())
  injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
  nb.cells.insert(index + 1, injected)
  return nb


def run_notebook(nb: nbformat.NotebookNode, tmp_path: pathlib.Path) -> nbformat.NotebookNode:
  """Executes ``nb`` in ``notebooks/`` on a kernel of this interpreter; raises on a cell error."""
  kernels = tmp_path / "kernels"
  ipykernel.kernelspec.write_kernel_spec(kernels / "sam_jax_test")  # argv[0]: sys.executable.
  manager = AsyncKernelManager(kernel_name="sam_jax_test",
                               kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
  # The repository first on the path: this sam_jax, and configs/ for config files.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
  client = nbclient.NotebookClient(nb, km=manager, timeout=600,
                                   resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
  return client.execute(env=env)


def test_notebook_is_stored_without_outputs_and_starts_with_parameters():
  nb = read_notebook()
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code[0].metadata.get("tags") == ["parameters"]
  assert all(c.execution_count is None and c.outputs == [] for c in code)
  nbformat.validate(nb)


def test_notebook_runs_on_a_tiny_run(tmp_path: pathlib.Path):
  """On an .npz with its config file, the official checkpoints' way; a workdir differs only in
  ``loading.load`` reading its config.json (``CONFIG = None``, the default)."""
  workdir, npz_path, output_dir = (str(tmp_path / n) for n in ("run", "run.npz", "analysis"))
  state = loop.train_and_evaluate(tiny_digits_config.get_config(4), workdir)
  npz.export_npz(npz_path, jax.device_get(state.params))
  config_file = os.path.join(REPO, "tests", "tiny_digits_config.py")
  nb = with_parameters(read_notebook(), CHECKPOINT=npz_path, CONFIG=config_file,
                       NUM_IMAGES=NUM_IMAGES, NUM_BATCHES=1, HESSIAN_STEPS=4,
                       LANDSCAPE_POINTS=(5, 3), OUTPUT_DIR=output_dir)
  nb.cells.append(nbformat.v4.new_code_cell(
      "import json, sys\n"
      "print(json.dumps([sys.executable, jax.device_count(), accuracy['accuracy']]))"))
  nb = run_notebook(nb, tmp_path)

  executable, devices, accuracy = json.loads(nb.cells[-1].outputs[-1]["text"])
  assert executable == sys.executable and devices == 1
  _, eval_accuracy = curves.read_scalars(workdir)["eval/accuracy"]
  assert accuracy == pytest.approx(eval_accuracy[-1], abs=1e-6)
  top_k = next(c for c in nb.cells if "top_k(" in c.source)
  lines = "".join(o.get("text", "") for o in top_k.outputs).splitlines()
  assert [line.split(",")[0] for line in lines] == [f"image {i}" for i in range(NUM_IMAGES)]
  assert all(line.count("%") == 5 for line in lines)  # TOP_K = 5 classes with probabilities.
  with open(os.path.join(output_dir, "analysis.json")) as f:
    (results,) = json.load(f)["runs"].values()
  assert np.isfinite(results["hessian"]["lambda_max"])
  assert np.array(results["landscape"]["loss_2d"]).shape == (3, 3)
  assert np.array(results["attention"]["maps"]).shape == (NUM_IMAGES, 2, 2)
  for name in ("landscape_1d.png", "landscape_2d.png", "attention_rollout.png"):
    assert matplotlib.image.imread(os.path.join(output_dir, name)).std() > 0
