"""2 processes x 4 devices on 127.0.0.1 train exactly like 1 process x 8 devices."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

from sam_jax.checkpoints import npz
from sam_jax.models import param_blocks
from sam_jax.training import loop
from tests import tiny_digits_config

WORKER = os.path.join(os.path.dirname(__file__), "multiprocess_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
  port, out = _free_port(), str(tmp_path / "two_processes.npz")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, WORKER, str(port), "2", str(i), "4",
                             str(tmp_path / "multi"), out], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]

  assert jax.device_count() == 8 and jax.process_count() == 1
  state = loop.train_and_evaluate(tiny_digits_config.get_config(num_train_steps=5),
                                   str(tmp_path / "single"))
  single = param_blocks.flatten(jax.device_get(state.params))
  multi = npz.to_linen_names(npz.read_npz(out))  # Exported with the released names.
  assert sorted(single) == sorted(multi)
  # Equal up to float summation order. (The attention key bias has an exactly zero
  # gradient in theory; Adam turns its ~1e-9 rounding noise into ~1e-6 steps.)
  for key in single:
    np.testing.assert_allclose(multi[key], single[key], rtol=1e-4, atol=1e-5, err_msg=key)
  # Both processes wrote one shared checkpoint directory, once.
  assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["2", "4", "5"]
