"""The paper configs' SAM group size m is the same on 1, 8 and 64 devices (docs/paper.md R23).

Each device count runs in a fresh interpreter with that many emulated CPU devices; there
the groups and the mesh of ``setup.build`` on all of them (as the training loop builds its
step; a one-layer model stands in, as they do not depend on it) give the examples per
perturbation group of every paper config.
"""

import json
import os
import subprocess
import sys

import pytest

PAPER_CONFIGS = ["vit_b16", "vit_b32", "vit_s16", "vit_s32", "vit_s8", "mixer_b16", "mixer_b32",
                 "mixer_s16", "mixer_s32", "mixer_s8", "resnet50", "resnet101", "resnet152"]
RESOLVE = """
import importlib, json, sys
import flax.linen as nn
import jax
from sam_jax.config import defaults
from sam_jax.training import setup

class Linear(nn.Module):
  @nn.compact
  def __call__(self, x, *, train):
    return nn.Dense(2)(x.reshape((x.shape[0], -1)))

out = {}
for name in sys.argv[1:]:
  config = defaults.complete(importlib.import_module(f"configs.{name}").get_config())
  run = setup.build(config, model=Linear())
  groups, per_device = run.groups, config.batch_size // jax.device_count()
  out[name] = {"devices": int(run.mesh.devices.size), "config_m": config.sam.m,
               "m": per_device // groups.groups_per_device * groups.devices_per_group}
print(json.dumps(out))
"""


def _resolve(num_devices: int) -> dict:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
  env = dict(os.environ, PYTHONPATH=path, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}")
  result = subprocess.run([sys.executable, "-c", RESOLVE, *PAPER_CONFIGS], capture_output=True,
                          text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("num_devices", [1, 8, 64])
def test_paper_configs_resolve_the_same_m_on_any_device_count(num_devices):
  resolved = _resolve(num_devices)
  for name in PAPER_CONFIGS:
    assert resolved[name] == {"devices": num_devices, "config_m": 32, "m": 32}, name
