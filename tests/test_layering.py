"""The package's layers: which subpackage may import which, and configs that import no JAX.

``ALLOWED`` is the architecture (``docs/architecture.md``): the core (``models``,
``optim``) imports nothing of training, data, checkpoints, analysis or evaluation; no
library module imports a program (``main``, ``evaluate``, ``analyze``, ``cli``).
"""

import ast
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sam_jax"
PROGRAMS = {"main", "evaluate", "analyze", "preflight", "cli"}
# Layer (a subpackage or a top-level module of sam_jax) -> the layers it may import.
LIBRARY = {"checkpoints", "config", "data", "metrics", "models", "parallel"}
ALLOWED: dict[str, set[str]] = {
    "parallel": set(),
    "metrics": set(),
    "config": set(),
    "models": set(),
    "optim": {"parallel"},
    "objectives": {"metrics"},
    "data": {"config", "parallel"},
    "checkpoints": {"config", "data", "models", "parallel"},
    "training": {"checkpoints", "config", "data", "metrics", "models", "objectives", "optim",
                 "parallel"},
    "analysis": LIBRARY,
    "evaluation": LIBRARY | {"objectives"},
    "compilation": {"config", "data", "models", "objectives", "optim", "parallel", "training"},
    "cli": {"config", "models"},  # --config.KEY of keys the defaults and models know.
    "main": {"cli", "checkpoints", "training"},  # CheckpointSaveFailed: an exit code.
    "evaluate": {"cli", "checkpoints", "evaluation", "training"},  # training.cpu_runtime.
    "analyze": {"cli", "analysis", "checkpoints", "training"},  # training.cpu_runtime.
    "preflight": {"cli", "compilation"},
}


def _layer(module: str) -> str | None:
  """``sam_jax.a.b`` -> ``a``; None for ``sam_jax`` itself and for other packages."""
  parts = module.split(".")
  return parts[1] if parts[0] == "sam_jax" and len(parts) > 1 else None


def imports(path: pathlib.Path) -> set[str]:
  """The sam_jax modules a source file imports (anywhere in it, at any depth)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      found.update(f"{node.module}.{a.name}" if node.module == "sam_jax" else node.module
                   for a in node.names)
  return {m for m in found if m.split(".")[0] == "sam_jax"}


def violations(edges: dict[str, set[str]]) -> list[str]:
  """``"a -> b"`` for every layer edge that ``ALLOWED`` does not allow."""
  return sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                if b != a and b not in ALLOWED.get(a, set()))


def layer_edges() -> dict[str, set[str]]:
  """Layer -> the other layers its modules import."""
  edges: dict[str, set[str]] = {}
  for path in PACKAGE.rglob("*.py"):
    relative = path.relative_to(PACKAGE)
    if relative == pathlib.Path("__init__.py"):
      continue
    layer = relative.parts[0].removesuffix(".py")
    targets = {_layer(m) for m in imports(path)} - {None}
    edges.setdefault(layer, set()).update(targets)
  return edges


def test_every_layer_is_listed():
  assert set(layer_edges()) == set(ALLOWED)


def test_imports_follow_the_layers():
  assert violations(layer_edges()) == []


def test_no_library_module_imports_a_program():
  for layer, targets in layer_edges().items():
    if layer not in PROGRAMS - {"cli"}:
      assert not targets & (PROGRAMS - {"cli"}), layer
    if layer not in PROGRAMS:
      assert "cli" not in targets, layer


def families_named_outside_models() -> list[str]:
  """Modules outside ``models/`` (and the paper's recipes) that name a family in quotes."""
  from sam_jax import models  # pylint: disable=g-import-not-at-top
  quoted = re.compile("|".join(f"[\"']{re.escape(name)}[\"']" for name in models.MODELS))
  return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                if p.relative_to(PACKAGE).parts[0] != "models"
                and p.relative_to(PACKAGE) != pathlib.Path("config/recipes.py")
                and quoted.search(p.read_text()))


def test_only_models_name_a_family():
  # docs/architecture.md: a family's code (e.g. its .npz adaptations) is behind its
  # models.Family entry; nothing else names it.
  assert families_named_outside_models() == []


def test_a_wrong_arrow_is_caught():
  assert violations({"models": {"training"}, "optim": {"parallel"}}) == ["models -> training"]
  assert violations({"data": {"analyze"}}) == ["data -> analyze"]


_NO_JAX = r"""
import importlib.abc, importlib.util, pathlib, sys

class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("jax", "jaxlib", "flax", "optax", "tensorflow", "orbax", "clu"):
      raise ImportError(f"{name} is blocked in this test")
    return None

sys.meta_path.insert(0, Block())
import sam_jax.config.defaults, sam_jax.config.recipes, sam_jax.config.validation
loaded = 0
for path in sorted(pathlib.Path("configs").glob("*.py")):
  if path.stem == "__init__":
    continue
  spec = importlib.util.spec_from_file_location(f"configs.{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  sam_jax.config.validation.validate(sam_jax.config.defaults.complete(config), 1)
  loaded += 1
print(loaded, sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "optax")))
"""


def test_configs_load_complete_and_validate_without_jax():
  out = subprocess.run([sys.executable, "-c", _NO_JAX], capture_output=True, text=True,
                       cwd=ROOT, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  count, modules = out.stdout.split(" ", 1)
  assert int(count) == len([p for p in (ROOT / "configs").glob("*.py") if p.stem != "__init__"])
  assert modules.strip() == "[]"


def test_valid_choices_match_what_the_library_builds():
  # pylint: disable=g-import-not-at-top
  from sam_jax.analysis import hessian, ntk
  from sam_jax.config import defaults, validation
  from sam_jax.optim import masks, optimizer
  from sam_jax.optim.surrogate_gap_sam import DECOMPOSE
  from sam_jax.training import setup
  from sam_jax import metrics
  import jax
  assert set(defaults.SAM_KINDS) == set(optimizer.sam_builders())
  assert set(validation.OPTIMIZERS) == set(optimizer.BASE_OPTIMIZERS)
  assert set(validation.HESSIAN_METHODS) == set(hessian.METHODS)
  assert set(validation.GSAM_DECOMPOSE) == set(DECOMPOSE)
  assert set(validation.LOSSES) == set(metrics.LOSSES)
  assert set(ntk.WEIGHT_LEAVES) == set(masks.WEIGHT_LEAVES)
  from sam_jax.data import randaugment
  assert validation.MAX_RANDAUGMENT_MAGNITUDE == randaugment.MAX_MAGNITUDE
  config = defaults.complete(pytest.importorskip("configs.default").get_config())
  for decay in validation.DECAYS:
    config.optimizer.decay = decay
    assert optimizer.learning_rate_schedule(config.optimizer, 1000)(500) > 0
  config.model.update(hidden_size=8, mlp_dim=8, num_heads=1, num_layers=1)
  for kind in defaults.SAM_KINDS:  # Each kind's step builds with either base optimizer.
    for name in validation.OPTIMIZERS:
      config.sam.kind, config.optimizer.name = kind, name
      setup.build(config, jax.devices()[:1], num_classes=10)
