"""Two real JAX processes (jax.distributed on 127.0.0.1) read an image folder.

Checks that the pipeline takes the process index and count from JAX, that the
two processes' eval batches hold every example exactly once, and that a fresh
program reproduces the training stream computed here (determinism across runs).
"""

import itertools
import json
import os
import socket
import subprocess
import sys

import ml_collections
import numpy as np
from PIL import Image

from sam_jax.data import input_pipeline

NUM_IMAGES = 13

_WORKER = r"""
import json, sys
import jax
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2,
                           process_id=int(sys.argv[2]))
import itertools, ml_collections
from sam_jax.data import input_pipeline
config = ml_collections.ConfigDict(json.loads(sys.argv[3]))
evals = list(input_pipeline.eval_iterator(config, local_batch_size=4))
train = itertools.islice(input_pipeline.train_iterator(config, local_batch_size=3, seed=7), 5)
print(json.dumps({
    "process": [jax.process_index(), jax.process_count()],
    "eval": [b["label"][b["mask"] > 0].tolist() for b in evals],
    "train": [b["label"].tolist() for b in train]}))
jax.distributed.shutdown()
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_split_eval_exactly_and_train_reproducibly(tmp_path):
  for i in range(NUM_IMAGES):  # One image per class: labels identify images.
    os.makedirs(tmp_path / "train" / f"c{i:02d}")
    Image.fromarray(np.full((6 + i, 9, 3), 20 * i, np.uint8)).save(
        tmp_path / "train" / f"c{i:02d}" / "x.png")
  config = dict(dataset="folder", data_dir=str(tmp_path), train_split="train",
                eval_split="train", image_size=8, pp=dict(eval_resize=8))
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
             PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
  address = f"127.0.0.1:{_free_port()}"
  workers = [subprocess.Popen([sys.executable, "-c", _WORKER, address, str(i), json.dumps(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
  outputs = []
  for worker in workers:
    stdout, stderr = worker.communicate(timeout=240)
    assert worker.returncode == 0, stderr[-3000:]
    outputs.append(json.loads(stdout.strip().splitlines()[-1]))

  assert [o["process"] for o in outputs] == [[0, 2], [1, 2]]
  assert len(outputs[0]["eval"]) == len(outputs[1]["eval"]) == 2  # ceil(ceil(13 / 2) / 4).
  seen = sorted(label for o in outputs for batch in o["eval"] for label in batch)
  assert seen == list(range(NUM_IMAGES))
  for process_index, output in enumerate(outputs):
    here = itertools.islice(input_pipeline.train_iterator(
        ml_collections.ConfigDict(config), local_batch_size=3, seed=7,
        process_index=process_index, process_count=2), 5)
    assert output["train"] == [b["label"].tolist() for b in here]
