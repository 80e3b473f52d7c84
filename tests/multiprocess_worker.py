"""One process of a multi-process run on 127.0.0.1 (started by test_multihost.py).

usage: multiprocess_worker.py PORT NUM_PROCESSES PROCESS_ID LOCAL_DEVICES WORKDIR OUT.npz
"""

import os
import sys

port, num_processes, process_id, local_devices, workdir, out = sys.argv[1:]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local_devices}"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from sam_jax.checkpoints import npz  # pylint: disable=wrong-import-position
from sam_jax.training import distributed, loop
from tests import tiny_digits_config  # pylint: disable=wrong-import-position

distributed.initialize("on", f"127.0.0.1:{port}", int(num_processes), int(process_id))
assert jax.process_count() == int(num_processes) and jax.device_count() == 8
state = loop.train_and_evaluate(tiny_digits_config.get_config(num_train_steps=5), workdir)
params = jax.tree.map(np.asarray, jax.device_get(state.params))
if jax.process_index() == 0:
  npz.export_npz(out, params)
