"""``training.setup.build``: the step it gives is the step training runs, for every config in
configs/; its abstract state and batch are those the steps take, on any device list (a TPU
topology's devices, which hold no memory, included)."""

import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from sam_jax import parallel
from sam_jax.config import defaults
from sam_jax.data import dataset_info, input_pipeline
from sam_jax.training import loop, setup
from tests import test_configs, tiny_digits_config

NUM_CLASSES = 10


class _Built(Exception):
  """Stops the loop once it has built its Setup (carried in ``setup``)."""

  def __init__(self, built: setup.Setup):
    super().__init__("built")
    self.setup = built


def _tiny(name: str, arg: str | None):
  """configs/``name`` shrunk as tests/test_configs.py shrinks it (8 examples, 32 px)."""
  config = test_configs.load(name, arg)
  config.image_size = test_configs.IMAGE_SIZE
  config.batch_size = config.eval_batch_size = jax.device_count()
  config.model.update(test_configs.TINY_MODEL[config.model.name])
  config.num_classes = NUM_CLASSES
  if config.get("sam", {}).get("m") is not None:
    config.sam.m = 1
  return config


def _texts(run: setup.Setup) -> dict[str, str]:
  """Each program's lowered StableHLO for the abstract state and batch."""
  return {name: program.lower(run.abstract_state(), run.abstract_batch(name != "eval")).as_text()
          for name, program in run.programs().items()}


@pytest.mark.parametrize("name, arg", test_configs.CASES)
def test_build_is_the_step_training_runs(name, arg, monkeypatch, tmp_path):
  """The Setup ``loop.train_and_evaluate`` builds (its data checks answered for the tiny
  config; it stops once built) lowers to the same programs as ``build`` of the completed
  config: same step arguments (groups, every k-th step, objective, attack, trainable...)."""
  config = _tiny(name, arg)
  monkeypatch.setattr(input_pipeline, "get_info",
                      lambda c: dataset_info.DatasetInfo(NUM_CLASSES, config.eval_batch_size))
  monkeypatch.setattr(input_pipeline, "check_readable", lambda c: None)
  real_build = setup.build

  def stop_once_built(*args, **kwargs):
    raise _Built(real_build(*args, **kwargs))

  monkeypatch.setattr(setup, "build", stop_once_built)
  with pytest.raises(_Built) as built:
    loop.train_and_evaluate(config, str(tmp_path))
  monkeypatch.undo()
  ours = setup.build(defaults.complete(config))
  assert built.value.setup.every_k_steps == ours.every_k_steps
  assert _texts(built.value.setup) == _texts(ours)


def test_abstract_state_and_batch_are_those_of_a_real_step():
  """LookSAM (two programs) on 8 devices: the abstract state is ``init_state``'s shapes,
  replicated, and each program lowers for it and the abstract batch."""
  config = tiny_digits_config.get_config(4)
  config.sam.kind = "looksam"
  config = defaults.complete(config)  # LookSAM's k = 5: two programs.
  run = setup.build(config, num_classes=NUM_CLASSES)
  assert set(run.programs()) == {"train_sam", "train_plain", "eval"}
  state = parallel.replicate(jax.jit(run.init_state)(jax.random.PRNGKey(config.seed)), run.mesh)
  abstract = run.abstract_state()
  assert jax.tree.structure(abstract) == jax.tree.structure(state)
  jax.tree.map(lambda a, x: (a.shape, a.dtype, a.sharding) == (x.shape, x.dtype, x.sharding)
               or pytest.fail(f"{a} != {x}"), abstract, state)
  batch = run.abstract_batch(train=True)
  assert {k: v.shape for k, v in batch.items()} == {
      "image": (16, 8, 8, 3), "label": (16,)}
  assert batch["image"].sharding.spec == jax.sharding.PartitionSpec(parallel.DATA)
  assert set(run.abstract_batch(train=False)) == {"image", "label", "mask"}
  assert len(set(map(str, _texts(run).values()))) == 3


def test_build_takes_a_device_sub_list_and_checks_it():
  config = defaults.complete(tiny_digits_config.get_config(4))
  run = setup.build(config, jax.devices()[:2], num_classes=NUM_CLASSES)
  assert run.mesh.devices.size == 2
  np.testing.assert_array_equal(run.mesh.devices.ravel(), jax.devices()[:2])
  with pytest.raises(ValueError, match="divisible by the number of devices"):
    setup.build(config, jax.devices()[:3], num_classes=NUM_CLASSES)


TOPOLOGY = """
from jax.experimental import topologies
from sam_jax.config import defaults
from sam_jax.training import setup
from tests import tiny_digits_config
topology = topologies.get_topology_desc(topology_name="v3:2x2", platform="tpu")
config = defaults.complete(tiny_digits_config.get_config(4))
run = setup.build(config, topology.devices, num_classes=10)
for name, program in run.programs().items():
  program.lower(run.abstract_state(), run.abstract_batch(name != "eval")).compile()
print("compiled", sorted(run.programs()), run.mesh.devices.size)
"""


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu")
def test_steps_compile_for_a_tpu_topology_without_its_devices():
  """A v3 2x2 slice (8 cores) described by libtpu, none attached: build allocates nothing."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root, ALLOW_MULTIPLE_LIBTPU_LOAD="1", JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", TOPOLOGY], capture_output=True, text=True,
                          env=env, cwd=root, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == "compiled ['eval', 'train'] 8"
