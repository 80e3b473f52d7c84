"""The core runs on machines with only JAX: importing it pulls in neither TensorFlow nor clu."""

import subprocess
import sys

_PROBE = r"""
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_datasets", "clu"):
      raise ImportError(f"{name} is blocked in this test")
    return None

sys.meta_path.insert(0, Block())
import sam_jax.models, sam_jax.optim, sam_jax.parallel, sam_jax.metrics
import sam_jax.training.train_step, sam_jax.checkpoints.npz
import sam_jax.data.digits, sam_jax.data.input_pipeline, sam_jax.data.eval_batches
import sam_jax.analysis.hessian, sam_jax.analysis.ntk, sam_jax.analysis.landscape
import sam_jax.analysis.block_stats, sam_jax.analysis.attention, sam_jax.analysis.curves
import sam_jax.analysis.model_functions
import sam_jax.analysis.plots, sam_jax.objectives.adversarial, sam_jax.objectives.contrastive
import sam_jax.config.defaults, sam_jax.config.recipes, sam_jax.config.validation
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "clu"))
assert not loaded, loaded
print("core imports without TensorFlow and clu")
"""


def test_core_imports_without_tensorflow_or_clu():
  out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  assert "core imports without TensorFlow and clu" in out.stdout
